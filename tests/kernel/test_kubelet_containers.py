"""Sidecars, liveness restarts and cgroup limits, as a user of the kubelet sees them."""

import os

import pytest

from tests.kernel.kubelet_fixtures import kubelet_api, node  # noqa: F401

CGROUP = "/sys/fs/cgroup"


def sh(name, script, **extra):
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script], **extra}


def test_sidecar_starts_first_and_keeps_running(node):
    name = node.create({"initContainers": [sh("proxy", "sleep 300", restartPolicy="Always"), sh("setup", "sleep 0.2")],
                        "containers": [sh("app", "sleep 300")]})
    pod = node.running(name)
    proxy, setup = pod["status"]["initContainerStatuses"]
    assert "running" in proxy["state"] and proxy["started"]
    assert setup["state"]["terminated"]["reason"] == "Completed"
    assert proxy["state"]["running"]["startedAt"] <= setup["state"]["terminated"]["startedAt"]
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Initialized"] == "True"
    node.delete(name)
    node.gone(name)


def test_failing_liveness_probe_restarts_the_container(node, tmp_path):
    flag = tmp_path / "alive"
    flag.write_text("")
    probe = {"exec": {"command": ["test", "-e", str(flag)]}, "periodSeconds": 1, "failureThreshold": 1}
    name = node.create({"containers": [sh("app", "sleep 300", livenessProbe=probe)]})
    node.running(name)
    flag.unlink()
    pod = node.wait(name, lambda p: p["status"]["containerStatuses"][0]["restartCount"] >= 1, 10, "a restart")
    last = pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 143 and last["reason"] == "Error"  # SIGTERM ended it
    flag.write_text("")
    node.delete(name)
    node.gone(name)


def test_a_built_in_killed_by_liveness_reports_its_own_exit_code_and_restarts_on_failure_policy(node):
    # netexec exits 0 on SIGTERM; OnFailure restarts it anyway, as upstream restarts a container
    # its liveness probe killed under any policy but Never.
    probe = {"tcpSocket": {"port": 9999}, "periodSeconds": 1, "failureThreshold": 1}
    name = node.create({"restartPolicy": "OnFailure", "terminationGracePeriodSeconds": 5,
                        "containers": [{"name": "web", "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                                        "args": ["netexec"], "livenessProbe": probe}]})
    pod = node.wait(name, lambda p: (p["status"].get("containerStatuses") or [{}])[0].get("restartCount", 0) >= 1,
                    15, "a restart")
    last = pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 0 and last["reason"] == "Completed"
    node.delete(name, grace_period_seconds=0)
    node.gone(name)


# cgroup v1 hierarchies, as this kind of machine mounts them; a v2-only host (Debian 12 with
# systemd) is not covered by this test yet.
@pytest.mark.skipif(not os.path.isdir(os.path.join(CGROUP, "memory")),
                    reason="needs the cgroup v1 cpu and memory hierarchies mounted at /sys/fs/cgroup")
def test_limits_become_the_container_cgroup(node):
    name = node.create({"containers": [sh("app", "exec sleep 300",
                                          resources={"limits": {"cpu": "100m", "memory": "32Mi"}})]})
    pod = node.running(name)
    uid = pod["metadata"]["uid"]
    memory = os.path.join(CGROUP, "memory", "netsim", node.name, f"pod{uid}", "app")
    cpu = os.path.join(CGROUP, "cpu", "netsim", node.name, f"pod{uid}", "app")
    with open(os.path.join(memory, "memory.limit_in_bytes")) as f:
        assert int(f.read()) == 32 * 1024 * 1024
    with open(os.path.join(cpu, "cpu.cfs_quota_us")) as f:
        assert int(f.read()) == 10_000
    with open(os.path.join(memory, "cgroup.procs")) as f:
        assert len(f.read().split()) == 1  # the container's process is in it
    node.delete(name)
    node.gone(name)
    assert not os.path.exists(os.path.dirname(memory)) and not os.path.exists(os.path.dirname(cpu))
