"""kube-proxy sync cost at scale, and network programming latency through the live agent.

Sync cost: N Services x 3 endpoints (ClusterIP, TCP, as the API serves them, with
resourceVersions) are rendered and written into a throwaway network namespace by the real
Syncer, exactly as a node's kube-proxy does. A "one-Service change" replaces one endpoint of one
Service's EndpointSlice (new resourceVersion), re-renders against the previous rendering and
syncs (partial: only the changed chains, one iptables-legacy-restore). Each sync's "breakdown"
says where the time went: rendering (Python), reading the tables back (full syncs), writing
the batch text, and the restore split by replaying its batch with `--test` against the same
kernel state: process start plus reading the current tables (--noflush reads whole tables),
parsing the batch, and the commit (building the table and the kernel replacing it); with the
restore's user and system CPU (kernel accounting ticks: coarse below ~10 ms). With --nft the
same batches are replayed through iptables-nft-restore --noflush in another throwaway namespace.

Network programming latency: an API server (SQLite, its own process) holds L Services x 3
endpoints and `python -m proxy.kubeproxy` (its own process, as on a node) programs a throwaway
node namespace that routes between a client namespace and a pod namespace (three addresses, a
server on port 8080, nothing on 8081). Measured from just before the API write to the first
TCP connection from the client that succeeds, polled every 0.5 ms (each failed attempt is
refused at once): an EndpointSlice update moving a Service's endpoints from port 8081 to 8080,
and the creation of a Service whose EndpointSlice already exists. Prints one JSON document.

    .venv/bin/python bench/kubeproxy.py [--services 1000 10000] [--changes 7] [--nft]
                                        [--latency-services 1000] [--latency-samples 100]
    (`--latency-services` with no number skips the latency runs)
"""

import argparse
import asyncio
import datetime
import json
import os
import resource
import secrets
import socket
import subprocess
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cluster.api.resources import by_kind  # noqa: E402
from cluster.client import Client  # noqa: E402
from netsim import netns  # noqa: E402
from proxy.kubeproxy import hashing  # noqa: E402
from proxy.kubeproxy.model import Node  # noqa: E402
from proxy.kubeproxy.render import ProxierConfig, render  # noqa: E402
from proxy.kubeproxy.sync import Syncer  # noqa: E402

NODE = Node("node-1", "172.18.0.2")
CONFIG = ProxierConfig(cluster_cidr="10.244.0.0/16")
RESTORE_TIMEOUT = 600  # a bound, far above iptables-nft-restore's 12 s for 10k Services here


def service(i):
    return {"metadata": {"namespace": f"ns{i % 50}", "name": f"svc{i}", "resourceVersion": "1"},
            "spec": {"type": "ClusterIP", "clusterIP": f"10.96.{i // 250}.{i % 250 + 1}",
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}}


def endpoint_slice(i, version=1):
    base = 3 * i + version * 7
    addresses = [f"10.{244 + (base + k) // 65000 % 8}.{(base + k) // 250 % 256}.{(base + k) % 250 + 1}"
                 for k in range(3)]
    return {"metadata": {"namespace": f"ns{i % 50}", "name": f"svc{i}-abcde", "resourceVersion": str(version),
                         "labels": {"kubernetes.io/service-name": f"svc{i}"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [a], "conditions": {"ready": True}, "nodeName": f"node-{k}"}
                          for k, a in enumerate(addresses)]}


def ms(seconds):
    return round(seconds * 1e3, 1)


def _restore(path, text, argv):
    """(wall, user CPU, system CPU) seconds of ARGV (an iptables-restore) reading TEXT, run in
    the namespace at PATH."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with netns.enter(path):
        proc = subprocess.run(argv, input=text, capture_output=True, text=True, timeout=RESTORE_TIMEOUT, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()[:500]}")
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def _tables_only(text):
    """TEXT with every table's content dropped: what a restore costs before it parses a rule."""
    return "".join(f"{line}\nCOMMIT\n" for line in text.splitlines() if line.startswith("*"))


def restore_breakdown(path, batch, restore="iptables-legacy-restore"):
    """Where one restore of BATCH goes, replayed with --test (no commit) in the namespace at PATH,
    whose tables must be as they were when BATCH was written for real: the process start and
    the read of the current tables (--noflush reads whole tables from the kernel), parsing the
    batch, and the commit (the wall time of the real restore minus the --test run's)."""
    read = _restore(path, _tables_only(batch), [restore, "--test", "--noflush"])[0]
    parse = _restore(path, batch, [restore, "--test", "--noflush"])[0]
    return read, parse - read


def _sync_figures(render_seconds, result, read, parse):
    user, system = result.restore_cpu
    return {"render_ms": ms(render_seconds), "restore_ms": ms(result.restore_seconds),
            "sync_ms": ms(result.seconds), "total_ms": ms(render_seconds + result.seconds),
            "breakdown": {"render_ms": ms(render_seconds), "save_ms": ms(result.save_seconds),
                          "batch_text_ms": ms(result.batch_seconds),
                          "restore_start_and_read_tables_ms": ms(read), "restore_parse_ms": ms(parse),
                          "restore_commit_ms": ms(result.restore_seconds - read - parse),
                          "restore_user_cpu_ms": ms(user), "restore_system_cpu_ms": ms(system),
                          "batch_lines": result.batch.count("\n")}}


def _median_figures(samples):
    """The median of every figure over SAMPLES (dicts shaped as _sync_figures returns)."""
    def med(key, inner=None):
        return round(statistics.median(x[key] if inner is None else x[key][inner] for x in samples), 1)
    out = {k: med(k) for k in samples[0] if k != "breakdown"}
    out["breakdown"] = {k: med("breakdown", k) for k in samples[0]["breakdown"]}
    return out


def _one_chain(rendering, chain):
    """A batch that rewrites CHAIN of RENDERING's nat table as it is."""
    return "\n".join(["*nat", f":{chain} - [0:0]", *rendering.tables["nat"][chain], "COMMIT"]) + "\n"


def _restore_figures(path, batch, restore):
    """The restore of BATCH in the namespace at PATH, timed and broken down (see restore_breakdown)."""
    read, parse = restore_breakdown(path, batch, restore)
    wall, user, system = _restore(path, batch, [restore, "--noflush"])
    return {"restore_ms": ms(wall), "restore_start_and_read_tables_ms": ms(read), "restore_parse_ms": ms(parse),
            "restore_commit_ms": ms(wall - read - parse), "restore_user_cpu_ms": ms(user),
            "restore_system_cpu_ms": ms(system)}


def run(n, changes, nft=False):
    """Sync costs at N Services x 3 endpoints; with NFT, the same batches through iptables-nft too."""
    made = []
    try:
        name, check = f"b{secrets.token_hex(3)}", f"b{secrets.token_hex(3)}"
        path = netns.create(name)
        made.append(name)
        empty = netns.create(check)
        made.append(check)
        syncer = Syncer(path)
        services = [service(i) for i in range(n)]
        slices = [endpoint_slice(i) for i in range(n)]
        t0 = time.perf_counter()
        rendering = render(services, slices, NODE, CONFIG)
        render_full = time.perf_counter() - t0
        result = syncer.sync(rendering)
        batches = [result.batch]
        # The first load read empty tables: replay it where the tables are still empty.
        full = {**_sync_figures(render_full, result, *restore_breakdown(empty, result.batch)),
                "nat_rules": sum(len(r) for r in rendering.tables["nat"].values()),
                "nat_chains": len(rendering.tables["nat"])}
        one = []
        for k in range(changes):
            i = (k * 7919) % n
            slices[i] = endpoint_slice(i, version=k + 2)
            t0 = time.perf_counter()
            rendering = render(services, slices, NODE, CONFIG, previous=rendering)
            r = time.perf_counter() - t0
            # Replayed first: the batch deletes chains, which a replay after it could not find.
            replay = restore_breakdown(path, rendering.restore_input(rendering.changed, rendering.stale))
            result = syncer.sync(rendering)
            assert result.kind == "partial", result
            batches.append(result.batch)
            one.append(_sync_figures(r, result, *replay))
        # A periodic full resync of the same state, with the rules already in place.
        t0 = time.perf_counter()
        rendering = render(services, slices, NODE, CONFIG, previous=rendering)
        r = time.perf_counter() - t0
        resync = syncer.sync(rendering, full=True)
        resync_figures = _sync_figures(r, resync, *restore_breakdown(path, resync.batch))
        # The least a commit can be: one Service's chain (jumps to its endpoints) rewritten as it is.
        one_chain = _one_chain(rendering, hashing.service_chains("ns0/svc0:http", "tcp")[0])
        one_chain_figures = _restore_figures(path, one_chain, "iptables-legacy-restore")
        syncer.flush()
        change = _median_figures(one)
        change["max_total_ms"] = max(x["total_ms"] for x in one)
        change["samples"] = len(one)
        out = {"services": n, "endpoints": 3 * n, "full_sync": full, "one_service_change": change,
               "full_resync": resync_figures, "one_chain_rewrite": one_chain_figures}
        if nft:
            out["iptables_nft"] = run_nft(empty, batches, one_chain)
        return out
    finally:
        for made_name in made:
            netns.delete(made_name)


def run_nft(path, batches, one_chain):
    """The batches legacy kube-proxy wrote (a full load, then one-Service changes) and then
    ONE_CHAIN, replayed in order through `iptables-nft-restore --noflush` in the empty namespace
    at PATH: the same rules in the nf_tables backend, for the backend decision. The full load
    carries the jumps from the built-in chains, as on a node: without them nf_tables has no
    jump graph to validate on each commit and a change measured ~6x cheaper than it is."""
    restore = "iptables-nft-restore"
    full_wall, full_user, full_sys = _restore(path, batches[0], [restore, "--noflush"])
    changes = [_restore_figures(path, batch, restore) for batch in batches[1:]]
    one_chain_figures = _restore_figures(path, one_chain, restore)
    with netns.enter(path):
        rules = subprocess.run(["iptables-nft-save", "-t", "nat"], capture_output=True, text=True,
                               check=True).stdout.count("\n-A ")
    return {"backend": f"{restore} --noflush", "nat_rules_loaded": rules,
            "full_load": {"restore_ms": ms(full_wall), "restore_user_cpu_ms": ms(full_user),
                          "restore_system_cpu_ms": ms(full_sys)},
            "one_service_change": {k: round(statistics.median(c[k] for c in changes), 1) for k in changes[0]}
            if changes else None,
            "one_chain_rewrite": one_chain_figures}


SERVICES = by_kind("v1", "Service")
SLICES = by_kind("discovery.k8s.io/v1", "EndpointSlice")
LAT_NS = "bench"
POD_IPS = ("10.244.1.2", "10.244.1.3", "10.244.1.4")
APISERVER = """
import sys
from cluster.apiserver.serve import serve
serve(sys.argv[1], "127.0.0.1:0", sys.argv[2] + "/kubeconfig", sys.argv[2] + "/tokens.csv",
      ready=lambda s: print(s.url, flush=True))
"""


def _ip(ns, commands):
    subprocess.run(["ip", "-n", ns, "-batch", "-"], input="\n".join(commands) + "\n", text=True,
                   check=True, capture_output=True)


class LatencyLab:
    """Node, client and pod namespaces; the pod serves on 8080 and refuses 8081."""

    def __init__(self):
        tag = f"b{secrets.token_hex(3)}"
        self.node, self.client, self.pod = f"{tag}node", f"{tag}client", f"{tag}pod"
        self.made, self.server = [], None

    def build(self):
        for name in (self.node, self.client, self.pod):
            netns.create(name)
            self.made.append(name)
        _ip(self.node, ["link set lo up",
                        f"link add vclient type veth peer name eth0 netns {self.client}",
                        "addr add 10.244.3.1/24 dev vclient", "link set vclient up",
                        f"link add vpod type veth peer name eth0 netns {self.pod}",
                        "addr add 10.244.1.1/24 dev vpod", "link set vpod up",
                        # The node's uplink: without a route, a Service IP not yet programmed
                        # would be unroutable and its SYN dropped silently (rate-limited ICMP).
                        "link add uplink type veth peer name uplink-peer", "link set uplink-peer up",
                        "link set uplink up", "route add default dev uplink"])
        _ip(self.client, ["link set lo up", "addr add 10.244.3.2/24 dev eth0", "link set eth0 up",
                          "route add default via 10.244.3.1"])
        _ip(self.pod, ["link set lo up", *(f"addr add {a}/24 dev eth0" for a in POD_IPS), "link set eth0 up",
                       "route add default via 10.244.1.1"])
        with netns.enter(netns.netns_path(self.node)):
            with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
                f.write("1")
            # A Service IP without rules yet is refused at once (a TCP reset: ICMP errors are
            # rate-limited), so the client can poll without waiting for timeouts.
            subprocess.run(["iptables-legacy", "-A", "FORWARD", "-d", "10.96.0.0/12", "-p", "tcp",
                            "-j", "REJECT", "--reject-with", "tcp-reset"], check=True)
        with netns.enter(netns.netns_path(self.pod)):
            self.server = socket.create_server(("0.0.0.0", 8080), backlog=512)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            conn.close()

    def first_connection(self, ip, port=80, timeout=10.0):
        """perf_counter() of the first TCP connect from the client to IP:PORT that succeeds."""
        deadline = time.perf_counter() + timeout
        with netns.enter(netns.netns_path(self.client)):
            while time.perf_counter() < deadline:
                with socket.socket() as s:
                    s.settimeout(1.0)
                    try:
                        s.connect((ip, port))
                        return time.perf_counter()
                    except OSError:
                        pass
                time.sleep(0.0005)
        raise TimeoutError(f"no connection to {ip}:{port} within {timeout}s")

    def teardown(self):
        if self.server is not None:
            self.server.close()
        for name in self.made:
            netns.delete(name)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def api_slice(service, port, endpoints=POD_IPS):
    return {"metadata": {"name": f"{service}-abc", "namespace": LAT_NS,
                         "labels": {"kubernetes.io/service-name": service},
                         "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": _now()}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [a], "conditions": {"ready": True}, "nodeName": "node-1"}
                          for a in endpoints]}


def api_service(name):
    return {"metadata": {"name": name, "namespace": LAT_NS},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}


def _summary(values):
    values = sorted(values)
    return {"p50_ms": ms(values[len(values) // 2]), "p99_ms": ms(values[min(len(values) - 1, int(0.99 * len(values)))]),
            "max_ms": ms(values[-1]), "samples": len(values)}


async def _gather_bounded(coros, limit=16):
    sem = asyncio.Semaphore(limit)

    async def one(c):
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


async def _latency_samples(lab, client, n, samples, mark):
    await client.create(by_kind("v1", "Namespace"), {"metadata": {"name": LAT_NS}})
    updated = [f"upd{i}" for i in range(samples)]
    created = [f"new{i}" for i in range(samples // 2)]
    fillers = [f"svc{i}" for i in range(n - len(updated))]

    def fake(i):
        return [f"10.{245 + (3 * i + k) // 62500}.{(3 * i + k) // 250 % 250}.{(3 * i + k) % 250 + 1}" for k in range(3)]

    services = await _gather_bounded([client.create(SERVICES, api_service(s)) for s in fillers + updated])
    ips = {svc["metadata"]["name"]: svc["spec"]["clusterIP"] for svc in services}
    await _gather_bounded([client.create(SLICES, api_slice(s, 8080, fake(i))) for i, s in enumerate(fillers)])
    slices = {s: await client.create(SLICES, api_slice(s, 8081)) for s in updated}
    for s in created:  # slices waiting for their Service
        await client.create(SLICES, api_slice(s, 8080))
    # Caught up once the last Service's endpoints refuse (port 8081) instead of the catch-all reset.
    last = ips[updated[-1]]
    deadline = time.monotonic() + 120
    while f"-d {last}/32" not in _save(lab.node) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)
    mark()

    slice_updates = []
    for s in updated:
        body = slices[s]
        body.update({k: v for k, v in api_slice(s, 8080).items() if k != "metadata"})
        body["metadata"]["annotations"] = {"endpoints.kubernetes.io/last-change-trigger-time": _now()}
        t0 = time.perf_counter()
        await client.update(SLICES, body)
        slice_updates.append(await asyncio.to_thread(lab.first_connection, ips[s]) - t0)
    service_creates = []
    for s in created:
        t0 = time.perf_counter()
        svc = await client.create(SERVICES, api_service(s))
        service_creates.append(await asyncio.to_thread(lab.first_connection, svc["spec"]["clusterIP"]) - t0)
    return slice_updates, service_creates


def _save(node):
    with netns.enter(netns.netns_path(node)):
        return subprocess.run(["iptables-legacy-save", "-t", "nat"], capture_output=True, text=True).stdout


def _agent_metric(sock_path, name):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(sock_path)
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    for line in data.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def run_latency(n, samples, min_sync_period):
    lab = LatencyLab()
    api = agent = None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            lab.build()
            api = subprocess.Popen([sys.executable, "-c", APISERVER, f"sqlite://{tmp}/state.db", tmp],
                                   stdout=subprocess.PIPE, text=True)
            api.stdout.readline()
            sock = f"{tmp}/kube-proxy.sock"
            agent = subprocess.Popen([sys.executable, "-m", "proxy.kubeproxy", "--kubeconfig", f"{tmp}/kubeconfig",
                                      "--hostname-override", "node-1", "--netns", lab.node,
                                      "--cluster-cidr", "10.244.0.0/16", "--metrics-bind-address", f"unix:{sock}",
                                      "--healthz-bind-address", "", "--min-sync-period", min_sync_period],
                                     stderr=subprocess.DEVNULL)

            names = ("kubeproxy_network_programming_duration_seconds_count",
                     "kubeproxy_network_programming_duration_seconds_sum",
                     "kubeproxy_sync_partial_proxy_rules_duration_seconds_count",
                     "kubeproxy_sync_partial_proxy_rules_duration_seconds_sum")
            before = []

            async def main():
                async with Client.from_kubeconfig(f"{tmp}/kubeconfig") as client:
                    return await _latency_samples(lab, client, n, samples,
                                                  lambda: before.extend(_agent_metric(sock, m) for m in names))

            updates, creates = asyncio.run(main())
            # The agent's own figures over the measured changes only (not the initial load).
            count, total, partials, partial_sum = (_agent_metric(sock, m) - b for m, b in zip(names, before))
            return {"services": n, "endpoints": 3 * n, "min_sync_period": min_sync_period,
                    "endpointslice_update_to_first_connection": _summary(updates),
                    "service_create_to_first_connection": _summary(creates),
                    "agent_reported": {"programming_latency_mean_ms": ms(total / count) if count else None,
                                       "programming_latency_observations": count,
                                       "partial_sync_mean_ms": ms(partial_sum / partials) if partials else None}}
        finally:
            for proc in (agent, api):
                if proc is not None:
                    proc.terminate()
                    proc.wait(30)
            lab.teardown()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, nargs="*", default=[1000, 10000])
    ap.add_argument("--changes", type=int, default=7)
    ap.add_argument("--latency-services", type=int, nargs="*", default=[1000])
    ap.add_argument("--latency-samples", type=int, default=100)
    ap.add_argument("--min-sync-period", default="0s", help="passed to the agent for the latency runs")
    ap.add_argument("--nft", action="store_true",
                    help="also replay the same batches through iptables-nft-restore (slow: minutes at 10k)")
    args = ap.parse_args()
    results = [run(n, args.changes, args.nft) for n in args.services]
    latency = [run_latency(n, args.latency_samples, args.min_sync_period) for n in args.latency_services]
    print(json.dumps({"bench": "kubeproxy", "backend": "iptables-legacy-restore --noflush",
                      "targets": {"one_service_change_at_10k_ms": 50, "full_sync_at_10k_ms": 1000,
                                  "programming_latency_p99_at_1k_ms": 100},
                      "results": results, "programming_latency": latency}, indent=2))


if __name__ == "__main__":
    main()
