"""A kubelet SIGKILLed in the middle of making a pod: the next one finishes the job without a
duplicate container, a stuck pod or a leaked process. The kill points are re-created on disk as
the killed kubelet leaves them (a kill lands there by chance in a churn run; here, every time)."""

import json
import os
import signal
import time

from cluster.kubelet.sandboxes import SandboxRecord, netns_name, read_record, sandbox_id
from netsim import netns
from tests.kernel.kubelet_fixtures import kubelet_api, node  # noqa: F401


def sleeper():
    return {"containers": [{"name": "sleep", "image": "debian:12", "command": ["sleep", "300"]}]}


def alive(pid):
    """Whether PID runs (a zombie has ended: its new parent, init, reaps it in its own time)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False


def sessions_in(path):
    """Session leaders (container processes) in the namespace bound at PATH."""
    return sorted(p for p in netns.processes_in(path) if alive(p) and os.getsid(p) == p)


def test_a_container_forked_but_not_recorded_is_not_left_running_beside_its_restart(node):
    name = node.create(sleeper())
    uid = node.running(name)["metadata"]["uid"]
    path = os.path.join(node.root, "pods", uid, "sandbox.json")
    node.stop(signal.SIGKILL)
    # As a kubelet killed after the fork but before it saved the PID leaves the record.
    record = read_record(path)
    [forked] = sessions_in(netns.netns_path(record["netns"]))
    record["containers"]["sleep"].update(state="waiting", reason="ContainerCreating", pid=None, start=None,
                                         started_at=None, spawning=True)
    with open(path, "w") as f:
        json.dump(record, f)
    node.start()
    deadline = time.monotonic() + 10
    while sessions_in(netns.netns_path(record["netns"])) in ([], [forked]) and time.monotonic() < deadline:
        time.sleep(0.05)
    # One container process, started by the new kubelet; the unrecorded one is gone.
    [running] = sessions_in(netns.netns_path(record["netns"]))
    assert running != forked and not alive(forked)
    node.running(name)
    node.delete(name)
    node.gone(name)
    assert node.pod_namespaces() == [] and node.ipam_leases() == []
    assert not alive(running)


def test_a_namespace_mount_point_left_without_its_mount_does_not_hold_the_pod_pending(node):
    node.stop(signal.SIGKILL)
    name = node.create(sleeper())
    uid = node.pod(name)["metadata"]["uid"]
    # As a kubelet killed between creating the mount point and binding the namespace leaves it.
    record = SandboxRecord(uid=uid, namespace="default", name=name,
                           netns=netns_name(node.netns, "default", name, uid),
                           dir=os.path.join(node.root, "pods", uid),
                           log_dir=os.path.join(node.root, "logs", f"default_{name}_{uid}"), id=sandbox_id(uid))
    record.save()
    try:
        open(netns.netns_path(record.netns), "x").close()
        node.start()
        node.running(name)
        node.delete(name)
        node.gone(name)
        assert node.pod_namespaces() == [] and node.ipam_leases() == []
    finally:
        netns.delete(record.netns)


def test_a_pod_directory_left_without_its_record_is_removed(node):
    node.stop(signal.SIGKILL)
    # As a kubelet killed while writing a first record, or while removing a pod's directory,
    # leaves them: files that name nothing in the kernel.
    writing = os.path.join(node.root, "pods", "0f6e3c1a-writing")
    removing = os.path.join(node.root, "pods", "0f6e3c1a-removing")
    os.makedirs(os.path.join(removing, "scratch", "c"))
    os.makedirs(writing)
    open(os.path.join(writing, ".sandbox-x1y2"), "w").close()
    node.start()
    node.wait_registered()
    name = node.create(sleeper())
    node.running(name)
    assert not os.path.exists(writing) and not os.path.exists(removing)
    node.delete(name)
    node.gone(name)
    assert os.listdir(os.path.join(node.root, "pods")) == []


def test_a_record_save_cut_short_leaves_the_previous_record(node):
    name = node.create(sleeper())
    uid = node.running(name)["metadata"]["uid"]
    node.stop(signal.SIGKILL)
    # As a kubelet killed in the middle of appending a save leaves the record's log.
    with open(os.path.join(node.root, "pods", uid, "sandbox.json"), "a") as f:
        f.write('\n{"uid": "' + uid + '", "namespace": "default", "na')
    node.start()
    node.running(name)
    node.delete(name)
    node.gone(name)
    assert node.pod_namespaces() == [] and node.ipam_leases() == []
    assert os.listdir(os.path.join(node.root, "pods")) == []
