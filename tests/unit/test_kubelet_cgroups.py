"""Container limits as cgroup files, on a unified (v2) tree and on v1 hierarchies.

This machine mounts cgroup v1 with cpu and memory bound there, so a real v2 tree with those
controllers cannot be mounted here: a directory shaped like /sys/fs/cgroup stands in for it
(the kernel would create the interface files itself; the test pre-creates none of them and
checks what the kubelet writes). The v1 path runs against the real kernel in
tests/kernel/test_kubelet_containers.py.
"""

import os

import pytest

from cluster.kubelet.cgroups import Cgroups, available, limits_of
from cluster.kubelet.env import ConfigError

def read(path):
    with open(path) as f:
        return f.read()

@pytest.fixture
def unified(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    return tmp_path

def test_v2_container_gets_cpu_max_and_memory_max_with_controllers_enabled_down_the_path(unified):
    cg = Cgroups("netsim/lab", "node-1", mount=str(unified))
    assert cg.v2
    procs = cg.container("u1", "app", cpu_milli=250, memory=64 * 1024 * 1024)
    leaf = unified / "netsim" / "lab" / "node-1" / "podu1" / "app"
    assert procs == [str(leaf / "cgroup.procs")]
    assert read(leaf / "cpu.max") == "25000 100000"  # 250m: a quarter of each 100 ms period
    assert read(leaf / "memory.max") == str(64 * 1024 * 1024)
    # Every ancestor delegates cpu and memory to its children, or the leaf's files would not exist.
    for ancestor in (unified, unified / "netsim", unified / "netsim" / "lab", unified / "netsim" / "lab" / "node-1",
                     unified / "netsim" / "lab" / "node-1" / "podu1"):
        assert read(ancestor / "cgroup.subtree_control") == "+cpu +memory"

def test_v2_only_the_limits_set_are_written(unified):
    Cgroups("netsim", "n", mount=str(unified)).container("u2", "c", cpu_milli=None, memory=1 << 20)
    leaf = unified / "netsim" / "n" / "podu2" / "c"
    assert not (leaf / "cpu.max").exists() and read(leaf / "memory.max") == str(1 << 20)

def test_v1_splits_the_limits_over_the_cpu_and_memory_hierarchies(tmp_path):
    for c in ("cpu", "memory"):
        (tmp_path / c).mkdir()
    cg = Cgroups("netsim", "n", mount=str(tmp_path))
    assert not cg.v2
    procs = cg.container("u3", "c", cpu_milli=1500, memory=32 << 20)
    cpu, memory = (tmp_path / h / "netsim" / "n" / "podu3" / "c" for h in ("cpu", "memory"))
    assert procs == [str(cpu / "cgroup.procs"), str(memory / "cgroup.procs")]
    assert read(cpu / "cpu.cfs_quota_us") == "150000" and read(cpu / "cpu.cfs_period_us") == "100000"
    assert read(memory / "memory.limit_in_bytes") == str(32 << 20)
    assert cg.pod_dirs("u3", ["c"]) == [str(cpu), str(cpu.parent), str(memory), str(memory.parent)]

def test_oom_kill_is_read_from_memory_events_on_v2(unified):
    cg = Cgroups("netsim", "n", mount=str(unified))
    cg.container("u4", "c", cpu_milli=None, memory=1 << 20)
    leaf = unified / "netsim" / "n" / "podu4" / "c"
    (leaf / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert cg.oom_killed("u4", "c")
    assert not cg.oom_killed("u4", "other")

def test_limits_come_from_resources_limits_and_bad_quantities_are_config_errors():
    assert limits_of({"resources": {"limits": {"cpu": "1.5", "memory": "64Mi"}}}) == (1500, 64 << 20)
    assert limits_of({}) == (None, None)
    with pytest.raises(ConfigError, match="container 'c' resources.limits"):
        limits_of({"name": "c", "resources": {"limits": {"memory": "lots"}}})


def test_containers_started_at_once_share_the_node_and_pod_levels(unified):
    # The kubelet starts containers on several workers: two may both find the node's cgroup
    # missing, and the second mkdir must not fail its container (it did: StartError, EEXIST).
    import threading

    cg = Cgroups("netsim", "n", mount=str(unified))
    barrier, errors = threading.Barrier(8), []

    def start(i):
        barrier.wait()
        try:
            cg.container(f"u{i % 2}", f"c{i}", cpu_milli=100, memory=None)
        except OSError as e:
            errors.append(e)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(os.listdir(unified / "netsim" / "n")) == ["cgroup.subtree_control", "podu0", "podu1"]


def test_without_the_controllers_a_container_with_limits_is_refused_saying_why(tmp_path):
    # A chroot with /sys bound without its submounts, say: no v2 controllers, no v1 hierarchies.
    assert not available(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="has CPU or memory limits, but this host has no cgroup cpu"):
        Cgroups("netsim", "n", mount=str(tmp_path)).container("u", "app", cpu_milli=100, memory=None)
    (tmp_path / "cgroup.controllers").write_text("cpuset io pids\n")  # v2 without cpu and memory
    assert not available(str(tmp_path))
