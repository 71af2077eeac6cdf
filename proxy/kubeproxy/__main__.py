"""`python -m proxy.kubeproxy`: the kube-proxy of one node, flags named as upstream's.

    python -m proxy.kubeproxy --kubeconfig PATH --hostname-override NODE --netns NAME \\
        --cluster-cidr 10.244.0.0/16 [--metrics-bind-address unix:PATH|HOST:PORT] \\
        [--healthz-bind-address HOST:PORT|unix:PATH] [--sync-period 30s] [--min-sync-period 0s]
    python -m proxy.kubeproxy --cleanup --netns NAME

The process stays in the namespace it is started in (it must reach the API server from there)
and programs the node's namespace, `--netns` (default: its own). SIGTERM or SIGINT stop it and
leave the rules in place, as upstream does; `--cleanup` removes every rule kube-proxy wrote and
exits. `--min-sync-period` defaults to 0s (upstream: 1s): a one-Service sync takes ~40 ms at 1k
Services here, and changes that arrive during a sync are coalesced into the next one anyway.
Every bind address serves every route (/metrics, /healthz, /livez, /proxyMode).
"""

import argparse
import asyncio
import ipaddress
import logging
import os
import re
import signal
import sys

from cluster.client import Client, KubeconfigError, SharedInformerFactory
from netsim import netns

from . import agent, server
from .render import ProxierConfig
from .sync import SyncError, Syncer

DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text):
    """Seconds in a Go duration ("30s", "500ms", "1m30s", "0")."""
    if text == "0":
        return 0.0
    parts = DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a duration such as 30s, 500ms or 1m30s")
    return sum(float(n) * UNITS[u] for n, u in parts)


def parser():
    ap = argparse.ArgumentParser(prog="python -m proxy.kubeproxy", description=__doc__.splitlines()[0])
    ap.add_argument("--kubeconfig", help="kubeconfig to reach the API server")
    ap.add_argument("--hostname-override", default=os.uname().nodename,
                    help="the node's name (default: the host name)")
    ap.add_argument("--netns", default=None,
                    help="the node's network namespace, a name in /run/netns or a path (default: our own)")
    ap.add_argument("--cluster-cidr", default=None,
                    help="the pods' CIDR: Service traffic from outside it is masqueraded")
    ap.add_argument("--metrics-bind-address", default=f"127.0.0.1:{server.METRICS_PORT}",
                    help="HOST:PORT (inside --netns) or unix:PATH serving /metrics; '' turns it off")
    ap.add_argument("--healthz-bind-address", default=f"0.0.0.0:{server.HEALTHZ_PORT}",
                    help="HOST:PORT (inside --netns) or unix:PATH serving /healthz; '' turns it off")
    ap.add_argument("--sync-period", "--iptables-sync-period", dest="sync_period", type=duration, default=30.0,
                    help="how often the rules are synced and the canary checked even without changes")
    ap.add_argument("--min-sync-period", "--iptables-min-sync-period", dest="min_sync_period", type=duration,
                    default=0.0, help="the shortest time between two syncs")
    ap.add_argument("--masquerade-all", action="store_true", help="SNAT all traffic sent to Service IPs")
    ap.add_argument("--iptables-masquerade-bit", type=int, default=14, choices=range(32), metavar="0-31",
                    help="the fwmark bit that marks packets to SNAT")
    ap.add_argument("--cleanup", action="store_true", help="remove kube-proxy's rules from --netns and exit")
    ap.add_argument("-v", "--v", dest="verbosity", type=int, default=0)
    return ap


def _netns_path(ap, name):
    if name is None:
        return f"/proc/{os.getpid()}/ns/net"
    path = name if "/" in name else netns.netns_path(name)
    if not os.path.exists(path):
        ap.error(f"--netns {name}: no network namespace at {path}")
    return path


def _cidr(ap, text):
    try:
        return str(ipaddress.IPv4Network(text, strict=False))
    except ValueError:
        ap.error(f"--cluster-cidr {text}: expected an IPv4 CIDR such as 10.244.0.0/16")


def _addresses(ap, args):
    out = []
    for flag, text, port in (("--metrics-bind-address", args.metrics_bind_address, server.METRICS_PORT),
                             ("--healthz-bind-address", args.healthz_bind_address, server.HEALTHZ_PORT)):
        if not text:
            continue
        try:
            address = server.parse_bind_address(text, flag, port)
        except server.BindAddressError as e:
            ap.error(str(e))
        if address not in out:
            out.append(address)
    return out


async def _run(agent_, client, addresses):
    endpoints = server.HTTPEndpoints(agent_.metrics, agent_.health, agent_.config.netns_path)
    await endpoints.start(addresses)
    try:
        async with client:
            factory = SharedInformerFactory(client)
            task = asyncio.create_task(agent_.run(factory))
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, task.cancel)
            try:
                await task
            except asyncio.CancelledError:
                pass  # the rules stay, as upstream's: traffic keeps flowing while we are away
            finally:
                await factory.shutdown()
    finally:
        await endpoints.stop()


def main(argv=None):
    ap = parser()
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbosity > 2 else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    path = _netns_path(ap, args.netns)
    if args.cleanup:
        try:
            Syncer(path).flush()
        except SyncError as e:
            print(f"kube-proxy --cleanup: {e}", file=sys.stderr)
            return 1
        return 0
    if not args.kubeconfig:
        ap.error("--kubeconfig: required (the API server to watch), unless --cleanup")
    config = agent.AgentConfig(
        node_name=args.hostname_override, netns_path=path,
        proxier=ProxierConfig(cluster_cidr=_cidr(ap, args.cluster_cidr) if args.cluster_cidr else None,
                              masquerade_all=args.masquerade_all, masquerade_bit=args.iptables_masquerade_bit),
        sync_period=args.sync_period, min_sync_period=args.min_sync_period)
    addresses = _addresses(ap, args)
    try:
        client = Client.from_kubeconfig(args.kubeconfig)
        asyncio.run(_run(agent.Agent(config), client, addresses))
    except (OSError, KubeconfigError) as e:
        print(f"kube-proxy: {e}", file=sys.stderr)
        return 1
    return 0

if __name__ == "__main__":
    sys.exit(main())
