"""Pods created and deleted in cycles leave nothing behind (issue 5's target: no leaks after
10 create/delete cycles of 100 pods): no IPAM lease, pod namespace or its mount, veth or
neighbour entry on cni0, sandbox record, log directory, cgroup, CNI cache entry, container
process or zombie. The same cycles as bench/churn.py, through tests/support/churn.py."""

import asyncio
import os

from cluster.kubelet import cgroups
from tests.support.churn import Footprint, churn, leaked

CYCLES = 10
PODS = 100
PROCESS_PODS = 10  # of the pods: process containers (ledger), with CPU and memory limits (cgroups)
# where the host has the controllers (a chroot with /sys bound without its mounts has none)
LIMITS = cgroups.available()


def test_ten_cycles_of_a_hundred_pods_leave_nothing_behind(make_cluster):
    c = make_cluster({"nodes": 3})
    report = asyncio.run(churn(Footprint(os.path.join(c.state_dir, c.name)), CYCLES, PODS, PROCESS_PODS,
                               timeout=60, limits=LIMITS))

    assert not leaked(report["leaks"]), report["leaks"]
    # The counts saw every pod while it ran: a zero after the cycles is a cleanup, not a miss.
    for cycle in report["cycles"]:
        peak = cycle["peak"]
        for count in ("ipam_leases", "veths", "bridge_neighbours", "sandbox_records", "log_dirs",
                      "uts_mounts", "pod_netns", "netns_mounts", "cni_cache_results"):
            assert peak[count] == PODS, (cycle["cycle"], count, peak)
        assert peak["container_processes"] == PROCESS_PODS, peak
        if LIMITS:
            assert peak["cgroups"] >= 2 * PROCESS_PODS, peak  # a pod and a container cgroup each
    # The kubelets ran throughout: a restarted kubelet would have dropped whatever it held.
    assert all(report["kubelets"].values()), report["kubelets"]
