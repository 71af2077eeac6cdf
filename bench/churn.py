#!/usr/bin/env python3
"""Pod churn: create and delete pods in cycles and show that nothing of them is left behind.

Prints one JSON document. Brings a cluster up with `netsim up` (no pods, in a throwaway state
directory), counts what its nodes hold for pods (tests/support/churn.py says what and where:
IPAM leases, pod namespaces and their mounts, veths and neighbour entries on cni0, sandbox
records, logs, cgroups, CNI cache entries, container processes, zombie children), then runs
--cycles cycles of: create --pods pods through the API (the scheduler spreads them; the default
image runs netsim's echo server, --process-pods of them are process containers with CPU and
memory limits so that cgroups and processes churn too), wait until a watch shows all Running,
delete them all, wait until they are gone from the API and the nodes are clean. Reports per
cycle the times create → all Running and delete → all gone, `leaks` (the counts after the last
cycle minus those before the first: all zero when nothing leaked) and each kubelet's RSS, fds
and threads before, after the first and after the last cycle. Then `netsim down`.

Exits 1 if anything leaked.

    bench/churn.py                                   # 10 cycles of 100 pods on 5 nodes
    bench/churn.py --nodes 2 --pods 30 --cycles 3
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench._cluster import running_cluster  # noqa: E402
from cluster.kubelet import cgroups  # noqa: E402
from tests.support.churn import Footprint, churn, leaked  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=5, help="nodes (default 5)")
    ap.add_argument("--pods", type=int, default=100, help="pods per cycle (default 100)")
    ap.add_argument("--cycles", type=int, default=10, help="create/delete cycles (default 10)")
    ap.add_argument("--process-pods", type=int, default=10,
                    help="of the pods, how many run a process container, with CPU and memory limits "
                         "where the host has the cgroup controllers (default 10)")
    args = ap.parse_args()
    if not 0 <= args.process_pods <= args.pods:
        ap.error(f"--process-pods {args.process_pods}: expected 0 to --pods ({args.pods})")
    limits = cgroups.available()  # without the controllers, process containers run unlimited
    with tempfile.TemporaryDirectory(prefix="netsim-bench-") as tmp, \
            running_cluster("churn", args.nodes, tmp) as cluster:
        report = asyncio.run(churn(Footprint(cluster.root), args.cycles, args.pods, args.process_pods,
                                   limits=limits))
    result = {"benchmark": "churn", "target": f"no leaks after {args.cycles} create/delete cycles of {args.pods} pods",
              "nodes": args.nodes, "pods": args.pods, "process_pods": args.process_pods, "limits": limits,
              "cycles": report["cycles"], "leaks": report["leaks"], "kubelets": report["kubelets"],
              "final": report["final"]}
    print(json.dumps(result, indent=2))
    return 1 if leaked(report["leaks"]) else 0


if __name__ == "__main__":
    sys.exit(main())
