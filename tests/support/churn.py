"""Pod churn against a running netsim cluster, and the leak check around it.

A cycle creates pods through the API (no nodeName: the scheduler spreads them), waits until a
watch shows every one Running, deletes them all, waits until the watch shows every one gone
and the nodes hold nothing more of them. A `Footprint` counts what a cluster holds for its
pods, read from where each piece lives (the plan names the paths):

- per node: host-local leases (`<ipam dataDir>/<network>/<ip>`), veths enslaved to `cni0` and
  the permanent neighbour entries on it (bridge plugin), other links in the node's namespace, the
  kubelet's sandbox records (`<kubeletDir>/pods/<uid>`) and log directories
  (`<kubeletDir>/logs/...`), UTS namespaces bound under the kubelet's directory, pod cgroups
  (`<cgroupRoot>/<node>/pod<uid>` in each hierarchy), the kubelet's zombie children;
- for the cluster: pod network namespaces in /run/netns (by the kubelets' name prefix) and their
  bind mounts, libcni result cache entries, container processes recorded in the ledger that
  still run;
- per kubelet, to show growth rather than to compare: RSS, open fds, threads; and the node's
  conntrack entry count, which expire on their own timers and so are no leak by themselves.

`leaks(before, after)` is every counted difference; a cluster that cleans up gives all zeros.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import time

from cluster.api.resources import lookup
from cluster.client import Client
from netsim import ledger as ledgermod
from netsim import netns

PODS = lookup("", "v1", "pods")
NAMESPACE = "default"
LABEL = "netsim.dev/churn"
IN_FLIGHT = 8
CGROUP_MOUNT = "/sys/fs/cgroup"
NETNS_DIR = "/run/netns"
# Counted per node / per cluster and compared; anything else in a snapshot is information.
NODE_COUNTS = ("ipam_leases", "veths", "bridge_neighbours", "links", "sandbox_records", "log_dirs",
               "uts_mounts", "cgroups", "zombie_children")
CLUSTER_COUNTS = ("pod_netns", "netns_mounts", "cni_cache_results", "container_processes")


def pod(name, run, process=False, limits=True):
    """A pod of the default image (netsim's echo server on its containerPort, on the kubelet's
    resident server), or with PROCESS a real process container (a ledger entry), with LIMITS
    also CPU and memory limits (its own cgroups): both kubelet paths churn."""
    if process:
        container = {"name": "sleep", "image": "debian:12", "command": ["sleep", "3600"]}
        if limits:
            container["resources"] = {"limits": {"cpu": "50m", "memory": "32Mi"}}
    else:
        container = {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {LABEL: run}},
            "spec": {"containers": [container]}}


@dataclasses.dataclass
class Node:
    name: str
    netns: str
    kubelet_dir: str
    ipam_dir: str


class Footprint:
    """What the cluster whose state directory is ROOT holds for its pods, counted."""

    def __init__(self, root):
        self.root = root
        with open(os.path.join(root, "plan.json")) as f:
            plan = json.load(f)
        self.cluster = plan["cluster"]
        self.kubeconfig = plan["controlPlane"]["kubeconfig"]
        self.ledger = ledgermod.Ledger(os.path.join(root, "ledger.jsonl"))
        self.netns_prefix = plan["controlPlane"]["podNetnsPrefix"] + "_"
        self.cgroup_root = plan["controlPlane"]["cgroupRoot"]
        self.cni_results = os.path.join(plan["cni"]["cacheDir"], "results")
        self.nodes = []
        for n in plan["nodes"]:
            conflist = n["conflist"]
            ipam = conflist["plugins"][0]["ipam"]
            self.nodes.append(Node(n["name"], n["netns"], n["kubeletDir"],
                                   os.path.join(ipam["dataDir"], conflist["name"])))

    def snapshot(self) -> dict:
        mounts = _mount_points()
        procs = _processes()
        kubelets = self._kubelets()
        nodes = {}
        for node in self.nodes:
            counts = {"ipam_leases": _count(node.ipam_dir, _is_lease),
                      "sandbox_records": _count(os.path.join(node.kubelet_dir, "pods")),
                      "log_dirs": _count(os.path.join(node.kubelet_dir, "logs")),
                      "uts_mounts": sum(1 for m in mounts if m.startswith(node.kubelet_dir + os.sep)),
                      "cgroups": self._cgroups(node.name)}
            counts.update(_node_links(node.netns))
            pid = kubelets.get(node.name)
            children = [p for p in procs.values() if pid and p["ppid"] == pid]
            counts["zombie_children"] = sum(1 for p in children if p["state"] == "Z")
            counts["conntrack"] = _conntrack(node.netns)
            counts["kubelet"] = _usage(pid) if pid else None
            nodes[node.name] = counts
        node_netns = {n.netns for n in self.nodes}
        pod_netns = [e for e in _listdir(NETNS_DIR) if e.startswith(self.netns_prefix) and e not in node_netns]
        pod_mounts = [m for m in mounts if m.startswith(os.path.join(NETNS_DIR, self.netns_prefix))
                      and os.path.basename(m) not in node_netns]
        entries = self.ledger.entries()
        containers = [e for e in entries if e["kind"] == "process" and e.get("role", "").startswith("container ")]
        return {"at": time.time(), "nodes": nodes,
                "cluster": {"pod_netns": len(pod_netns), "netns_mounts": len(pod_mounts),
                            "cni_cache_results": _count(self.cni_results),
                            "container_processes": sum(1 for e in containers if ledgermod.alive_as_recorded(e)),
                            "ledger_entries": len(entries)}}

    def _kubelets(self):
        """{node: pid} of the kubelets running as the ledger records them (newest per node)."""
        newest = {}
        for e in self.ledger.entries():
            role = e.get("role", "")
            if e["kind"] == "process" and role.startswith("kubelet "):
                newest[role.split(" ", 1)[1]] = e
        return {node: e["pid"] for node, e in newest.items() if ledgermod.alive_as_recorded(e)}

    def _cgroups(self, node):
        """Pod and container cgroup directories of NODE, in every hierarchy the kubelet uses."""
        if os.path.exists(os.path.join(CGROUP_MOUNT, "cgroup.controllers")):
            bases = [CGROUP_MOUNT]
        else:
            bases = [os.path.join(CGROUP_MOUNT, c) for c in ("cpu", "memory")]
        total = 0
        for base in bases:
            node_dir = os.path.join(base, self.cgroup_root, node)
            for pod_dir in _listdir(node_dir):
                path = os.path.join(node_dir, pod_dir)
                if pod_dir.startswith("pod") and os.path.isdir(path):
                    total += 1 + _count(path, lambda p: os.path.isdir(p))
        return total


def _listdir(path):
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _count(directory, keep=None):
    names = _listdir(directory)
    if keep is None:
        return len(names)
    return sum(1 for n in names if keep(os.path.join(directory, n)))


def _is_lease(path):
    # host-local's directory also holds `lock` and `last_reserved_ip.<n>`; leases are named
    # after the address they hold.
    name = os.path.basename(path)
    return name != "lock" and not name.startswith("last_reserved_ip.")


def _mount_points():
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4].replace("\\040", " ") for line in f]


def _processes():
    """{pid: {"ppid", "state"}} of every process, from one scan of /proc."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        out[int(entry)] = {"state": fields[0].decode(), "ppid": int(fields[1])}
    return out


def _node_links(node_netns):
    """Veths on the node's cni0, its permanent neighbour entries, and the node's other links."""
    from pyroute2 import IPRoute

    with netns.enter(node_netns):
        ipr = IPRoute()
    try:
        links = ipr.get_links()
        bridge = next((link["index"] for link in links if link.get_attr("IFLA_IFNAME") == "cni0"), None)
        veths = sum(1 for link in links if bridge is not None and link.get_attr("IFLA_MASTER") == bridge)
        neighbours = len(ipr.get_neighbours(ifindex=bridge, state=0x80)) if bridge is not None else 0
        # cni0 itself is made by the first ADD and stays, as the reference bridge plugin keeps it.
        return {"veths": veths, "bridge_neighbours": neighbours,
                "links": sum(1 for link in links if link["index"] != bridge)}
    finally:
        ipr.close()


def _conntrack(node_netns):
    """Conntrack entries of the node's namespace (sysctls under /proc/sys/net are looked up in
    the netns of the thread that opens them); None without nf_conntrack there."""
    with netns.enter(node_netns):
        try:
            with open("/proc/sys/net/netfilter/nf_conntrack_count") as f:
                return int(f.read())
        except OSError:
            return None


def _usage(pid):
    """RSS (KiB), open fds and threads of PID."""
    try:
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    return {"pid": pid, "rss_kb": int(status["VmRSS"].split()[0]), "fds": fds,
            "threads": int(status["Threads"])}


def totals(snapshot: dict) -> dict:
    """The compared counts of SNAPSHOT, summed over its nodes."""
    out = {k: sum(counts[k] for counts in snapshot["nodes"].values()) for k in NODE_COUNTS}
    out.update((k, snapshot["cluster"][k]) for k in CLUSTER_COUNTS)
    return out


def leaks(before: dict, after: dict) -> dict:
    """{count: after - before} of every compared count, summed over the nodes, and under
    "by_node" the nodes whose counts differ; all zeros when nothing leaked."""
    first, last = totals(before), totals(after)
    by_node = {}
    for node, counts in after["nodes"].items():
        diff = {k: counts[k] - before["nodes"][node][k] for k in NODE_COUNTS}
        if any(diff.values()):
            by_node[node] = {k: v for k, v in diff.items() if v}
    return {**{k: last[k] - first[k] for k in last}, "by_node": by_node}


def leaked(report: dict) -> bool:
    return any(v for k, v in report.items() if k != "by_node")


def kubelet_growth(snapshots: list[dict]) -> dict:
    """Per kubelet: RSS and fds before the first cycle, after it and after the last, and the
    growth from after the first cycle to after the last (the first cycle warms pools and
    allocator arenas; steady growth after it is what a leak looks like)."""
    out = {}
    for node in snapshots[0]["nodes"]:
        series = [s["nodes"][node]["kubelet"] for s in snapshots]
        if any(u is None for u in series):
            out[node] = None  # a kubelet that restarted has no growth to speak of
            continue
        out[node] = {k: {"before": series[0][k], "after_first": series[1][k], "after_last": series[-1][k],
                         "growth_after_first": series[-1][k] - series[1][k]}
                     for k in ("rss_kb", "fds", "threads")}
    return out


def _clean(footprint, baseline):
    return not leaked(leaks(baseline, footprint.snapshot()))


async def _bounded(fn, items):
    sem = asyncio.Semaphore(IN_FLIGHT)

    async def one(item):
        async with sem:
            await fn(item)

    await asyncio.gather(*(one(i) for i in items))


async def cycle(client: Client, footprint: Footprint, baseline: dict, run: str, pods: int,
                process_pods: int, timeout: float, limits: bool = True) -> dict:
    """Create PODS pods (PROCESS_PODS of them process containers, with LIMITS CPU and memory
    limits), wait until all are Running and Ready (a crash-looping container leaves its pod
    Running, not Ready),
    delete them, wait until the API has none and the nodes are as in BASELINE (or TIMEOUT).
    Returns the cycle's timings in seconds and the counts while all pods ran (`peak`)."""
    names = [f"{run}-{i}" for i in range(pods)]
    process = set(names[:process_pods])
    selector = f"{LABEL}={run}"
    rv = (await client.list(PODS, NAMESPACE, label_selector=selector, limit=1))["metadata"]["resourceVersion"]
    phase, gone = {}, set()
    all_running, all_gone = asyncio.Event(), asyncio.Event()

    async def watch():
        async with client.watch(PODS, NAMESPACE, resource_version=rv, label_selector=selector) as events:
            async for type_, obj in events:
                name = (obj.get("metadata") or {}).get("name")
                if type_ == "DELETED":
                    gone.add(name)
                elif type_ in ("ADDED", "MODIFIED"):
                    phase[name] = _state(obj)
                if sum(1 for n in names if phase.get(n) == READY) == pods:
                    all_running.set()
                if len(gone) == pods:
                    all_gone.set()
                    return

    watcher = asyncio.create_task(watch())
    try:
        start = time.perf_counter()
        await _bounded(lambda n: client.create(PODS, pod(n, run, n in process, limits), NAMESPACE), names)
        await _wait(all_running, timeout, lambda: "not Running and Ready: " + _pending(names, phase))
        running_s = time.perf_counter() - start
        # What the running pods hold: the counts a leak would leave, so a reader (and a test)
        # sees that the leak check counts something.
        peak = totals(await asyncio.to_thread(footprint.snapshot))
        start = time.perf_counter()
        await _bounded(lambda n: client.delete(PODS, n, NAMESPACE), names)
        await _wait(all_gone, timeout, lambda: "still in the API: " + ", ".join(sorted(set(names) - gone)[:5]))
        gone_s = time.perf_counter() - start
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    # The kubelet tears a pod down before it deletes it from the API, so the nodes are clean by
    # now; this wait only bounds a leak's cost (and shows a slow teardown in the timing).
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(_clean, footprint, baseline) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return {"create_to_all_running_s": round(running_s, 3), "delete_to_all_gone_s": round(gone_s, 3),
            "delete_to_nodes_clean_s": round(time.perf_counter() - start, 3), "peak": peak}


READY = "Running, Ready"


def _state(pod):
    """READY, or the pod's phase with why a container waits (and what its last run said)."""
    status = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    if status.get("phase") == "Running" and ready:
        return READY
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting:
            last = (cs.get("lastState") or {}).get("terminated") or {}
            return ", ".join(filter(None, [status.get("phase"), waiting.get("reason"), last.get("message")]))
    return status.get("phase") or "no status"


def _pending(names, phase):
    missing = [f"{n} ({phase.get(n) or 'no status'})" for n in names if phase.get(n) != READY]
    return f"{len(missing)} pods, e.g. " + ", ".join(missing[:5])


async def _wait(event, timeout, what):
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:  # asyncio's is the builtin since 3.11
        raise TimeoutError(f"churn: after {timeout:.0f}s, {what()}") from None


async def churn(footprint: Footprint, cycles: int, pods: int, process_pods: int = 0,
                timeout: float = 120.0, limits: bool = True) -> dict:
    """Run CYCLES create/delete cycles of PODS pods (PROCESS_PODS of them process containers,
    with LIMITS CPU and memory limits). The report: per cycle its timings, the
    counts while its pods ran (`peak`), what it left behind against the baseline (nothing:
    {}) and the kubelets' usage; `leaks` (after the last cycle against before the first),
    `kubelets` (RSS/fd growth), the `baseline` and `final` snapshots."""
    # pyroute2's IPRoute cannot be opened on a thread whose event loop runs: snapshots run on another.
    baseline = await asyncio.to_thread(footprint.snapshot)
    snapshots, results = [baseline], []
    async with Client.from_kubeconfig(footprint.kubeconfig) as client:
        for i in range(cycles):
            timings = await cycle(client, footprint, baseline, f"churn{i + 1}", pods, process_pods, timeout,
                                  limits)
            snap = await asyncio.to_thread(footprint.snapshot)
            snapshots.append(snap)
            left = {k: v for k, v in leaks(baseline, snap).items() if v}
            results.append({"cycle": i + 1, **timings, "left_behind": left,
                            "kubelets": {n: c["kubelet"] for n, c in snap["nodes"].items()}})
    return {"cycles": results, "baseline": baseline, "final": snapshots[-1],
            "leaks": leaks(baseline, snapshots[-1]), "kubelets": kubelet_growth(snapshots)}
