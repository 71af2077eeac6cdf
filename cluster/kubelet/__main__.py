"""`python -m cluster.kubelet`: one kubelet for one node, flags named as upstream's where they exist.

The process stays in the network namespace it was started in (it must reach the API server
from there); `--netns` names the node's namespace, where CNI plugins run and probes connect
from. SIGTERM or SIGINT stop it; process containers keep running and a restarted kubelet
adopts them.

`--cni-agent-socket PATH` also serves netsim's CNI agent (cni.agent) from this process, as the
node agent before it did: a netsim plugin executable (the shim) run by any runtime of the node
is answered by the plugins already loaded here (`NETSIM_CNI_AGENT`); with
`NETSIM_CNI_EXEC=always` the kubelet's runtime executes the shim too, for comparison, instead of
calling the plugins in-process.
"""

import argparse
import asyncio
import logging
import os
import signal
import sys

from cluster.client import Client

from .kubelet import Kubelet, KubeletConfig


def _labels(text):
    labels = {}
    for item in filter(None, (text or "").split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise argparse.ArgumentTypeError(f"--node-labels: {item!r}: expected key=value[,key=value...]")
        labels[key] = value
    return labels


def _list(text):
    return [x for x in (text or "").split(",") if x]


def parser():
    ap = argparse.ArgumentParser(prog="python -m cluster.kubelet", description=__doc__.splitlines()[0])
    ap.add_argument("--kubeconfig", required=True, help="kubeconfig to reach the API server")
    ap.add_argument("--hostname-override", "--node", dest="node", required=True, help="the node's name")
    ap.add_argument("--root-dir", "--state-dir", dest="root_dir", required=True,
                    help="the kubelet's directory: pod records, volumes, logs, CNI cache")
    ap.add_argument("--netns", default=None, help="the node's network namespace (name in /run/netns)")
    ap.add_argument("--pod-netns-prefix", default=None,
                    help="prefix of pod network namespace names (default: --netns, else the node name)")
    ap.add_argument("--cni-conf", "--conflist", dest="conflist", required=True,
                    help="the node's CNI network configuration list")
    ap.add_argument("--cni-bin-dir", "--cni-path", dest="cni_bin_dir", action="append", required=True,
                    help="directory of CNI plugin executables (repeat, or separate with ':')")
    ap.add_argument("--cni-cache-dir", default=None, help="libcni result cache (default ROOT/cni-cache)")
    ap.add_argument("--ledger", default=None, help="the cluster's ledger (default ROOT/ledger.jsonl)")
    ap.add_argument("--node-ip", type=_list, default=[], help="the node's IP(s), comma separated "
                    "(default: the global IPv4 addresses in --netns)")
    ap.add_argument("--pod-cidr", type=_list, default=[], help="the node's pod CIDR(s), comma separated")
    ap.add_argument("--node-labels", type=_labels, default={}, help="key=value[,key=value...]")
    ap.add_argument("--max-pods", type=int, default=110)
    ap.add_argument("--node-lease-renew-interval", type=float, default=10.0, help="seconds")
    ap.add_argument("--node-status-report-frequency", type=float, default=60.0, help="seconds")
    ap.add_argument("--crash-loop-backoff-initial", type=float, default=10.0, help="seconds")
    ap.add_argument("--crash-loop-backoff-max", type=float, default=300.0, help="seconds")
    ap.add_argument("--cgroup-root", default="netsim", help="parent cgroup of the pods' cgroups")
    ap.add_argument("--logs-socket", default=None,
                    help="unix socket serving /containerLogs (default ROOT/kubelet.sock)")
    ap.add_argument("--cni-agent-socket", default=None,
                    help="serve netsim's CNI agent on this unix socket (for netsim's plugin executables)")
    ap.add_argument("--workers", type=int, default=8, help="pods synced at once")
    ap.add_argument("-v", "--v", dest="verbosity", type=int, default=0)
    return ap


def config_from(args):
    bins = [d for entry in args.cni_bin_dir for d in entry.split(":") if d]
    return KubeletConfig(
        node_name=args.node, root_dir=os.path.abspath(args.root_dir), conflist=args.conflist,
        cni_bin_dirs=bins, node_netns=args.netns, netns_prefix=args.pod_netns_prefix,
        cni_cache_dir=args.cni_cache_dir, ledger=args.ledger, node_ips=args.node_ip,
        pod_cidrs=args.pod_cidr, node_labels=args.node_labels, max_pods=args.max_pods,
        lease_seconds=args.node_lease_renew_interval,
        status_report_seconds=args.node_status_report_frequency,
        backoff_initial=args.crash_loop_backoff_initial, backoff_max=args.crash_loop_backoff_max,
        cgroup_root=args.cgroup_root,
        logs_socket=args.logs_socket or os.path.join(os.path.abspath(args.root_dir), "kubelet.sock"),
        workers=args.workers)


def _serve_cni_agent(kubelet, socket_path):
    from cni.agent import CNIAgent

    agent = CNIAgent(socket_path).start()
    kubelet.cni.env["NETSIM_CNI_AGENT"] = socket_path
    if os.environ.get("NETSIM_CNI_EXEC") == "always":
        kubelet.cni.exec = kubelet.cni.run_executable
    return agent


async def _main(config, kubeconfig, cni_agent_socket=None):
    async with Client.from_kubeconfig(kubeconfig) as client:
        kubelet = Kubelet(client, config)
        agent = _serve_cni_agent(kubelet, cni_agent_socket) if cni_agent_socket else None
        task = asyncio.create_task(kubelet.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass
        finally:
            if agent:
                agent.stop()


def main(argv=None):
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbosity > 2 else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_main(config_from(args), args.kubeconfig, args.cni_agent_socket))
    return 0


if __name__ == "__main__":
    sys.exit(main())
