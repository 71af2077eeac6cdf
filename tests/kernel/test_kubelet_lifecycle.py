"""Container lifecycle under the kubelet: restarts with backoff, init containers in order,
readiness from probes, the environment and volumes a process sees, logs served on the kubelet's
socket, and a kubelet killed with SIGKILL that converges when started again."""

import os
import signal
import socket
import time

from cluster.api.resources import lookup
from tests.kernel.kubelet_fixtures import AGNHOST, http_get, kubelet_api, node  # noqa: F401

CONFIGMAPS = lookup("", "v1", "configmaps")


def sh(name, script, **extra):
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script], **extra}


def container_logs(node, pod, container, query=""):
    """GET /containerLogs from the kubelet's unix socket, as the API server's pods/log would."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(os.path.join(node.root, "kubelet.sock"))
    s.sendall(f"GET /containerLogs/default/{pod}/{container}{query} HTTP/1.0\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def test_crashing_container_restarts_with_growing_count(node):
    name = node.create({"containers": [sh("crash", "echo started; exit 3")]})
    pod = node.wait(name, lambda p: p["status"].get("containerStatuses")
                    and p["status"]["containerStatuses"][0]["restartCount"] >= 3, 15, "3 restarts")
    cs = pod["status"]["containerStatuses"][0]
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert pod["status"]["phase"] == "Running"  # restartPolicy Always: restarting, not failed
    status, previous = container_logs(node, name, "crash", "?previous=true")
    assert status == 200 and previous == "started\n"
    node.delete(name)
    node.gone(name)


def test_never_restarting_pod_succeeds_and_releases_its_ip(node):
    name = node.create({"restartPolicy": "Never", "containers": [sh("once", "exit 0")]})
    pod = node.wait(name, lambda p: p["status"].get("phase") == "Succeeded", 10, "Succeeded")
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    deadline = time.monotonic() + 5
    while node.ipam_leases() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert node.ipam_leases() == []  # a finished pod's sandbox is torn down, as upstream
    node.delete(name)
    node.gone(name)


def test_init_containers_run_in_order_before_the_containers(node):
    name = node.create({
        "volumes": [{"name": "work", "emptyDir": {}}],
        "initContainers": [sh("first", "echo first >> /mnt/work/order", volumeMounts=[{"name": "work", "mountPath": "/mnt/work"}]),
                           sh("second", "sleep 0.3; echo second >> /mnt/work/order",
                              volumeMounts=[{"name": "work", "mountPath": "/mnt/work"}])],
        "containers": [sh("main", "cat /mnt/work/order; sleep 30", volumeMounts=[{"name": "work", "mountPath": "/mnt/work"}])]})
    pod = node.running(name)
    inits = pod["status"]["initContainerStatuses"]
    assert [c["state"]["terminated"]["reason"] for c in inits] == ["Completed", "Completed"]
    assert inits[0]["state"]["terminated"]["finishedAt"] <= inits[1]["state"]["terminated"]["startedAt"]
    deadline = time.monotonic() + 5
    while container_logs(node, name, "main")[1] != "first\nsecond\n" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert container_logs(node, name, "main") == (200, "first\nsecond\n")
    assert not os.path.exists("/mnt/work")  # the volume was mounted in the pod's mount table only
    node.delete(name)
    node.gone(name)


def test_readiness_probe_drives_the_ready_condition(node, tmp_path):
    flag = tmp_path / "ready"
    flag.write_text("")
    probe = {"exec": {"command": ["test", "-e", str(flag)]}, "periodSeconds": 1, "failureThreshold": 1}
    name = node.create({"containers": [{"name": "web", "image": AGNHOST, "args": ["netexec"],
                                        "readinessProbe": probe}]})

    def ready(p):
        return next(c["status"] for c in p["status"].get("conditions", []) if c["type"] == "Ready")

    node.wait(name, lambda p: p["status"].get("conditions") and ready(p) == "True", 10, "Ready")
    flag.unlink()
    pod = node.wait(name, lambda p: ready(p) == "False", 10, "NotReady")
    assert pod["status"]["containerStatuses"][0]["ready"] is False
    assert pod["status"]["phase"] == "Running"
    flag.write_text("")
    node.wait(name, lambda p: ready(p) == "True", 10, "Ready again")
    node.delete(name)
    node.gone(name)


def test_environment_from_configmap_and_downward_api(node):
    node.call(node.client.create(CONFIGMAPS, {"metadata": {"name": "greeting", "namespace": "default"},
                                              "data": {"GREETING": "hello", "COLOR": "blue"}}, "default"))
    name = node.create({"containers": [sh(
        "env", 'echo "$GREETING $FAV $MY_NAME $MY_IP $MY_NODE"; echo "$(FAV)-x"; sleep 30',
        envFrom=[{"configMapRef": {"name": "greeting"}}],
        env=[{"name": "FAV", "valueFrom": {"configMapKeyRef": {"name": "greeting", "key": "COLOR"}}},
             {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
             {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
             {"name": "MY_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        args=[])]})
    pod = node.running(name)
    expected = f"hello blue {name} {pod['status']['podIP']} {node.name}\nblue-x\n"  # $(FAV) expanded in command, as Kubernetes does
    deadline = time.monotonic() + 5
    while container_logs(node, name, "env")[1] != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert container_logs(node, name, "env")[1] == expected
    node.delete(name)
    node.gone(name)


def test_missing_configmap_holds_the_container_waiting(node):
    name = node.create({"containers": [sh("env", "sleep 30", envFrom=[{"configMapRef": {"name": "absent"}}])]})
    pod = node.wait(name, lambda p: p["status"].get("containerStatuses"), 10, "a container status")
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting == {"reason": "CreateContainerConfigError", "message": 'configmap "absent" not found'}
    assert pod["status"]["phase"] == "Pending"
    node.delete(name)
    node.gone(name)


def test_kubelet_killed_and_restarted_converges(node):
    keep = node.create({"containers": [{"name": "web", "image": AGNHOST, "args": ["netexec"]},
                                       sh("side", "sleep 300")]})
    drop = node.create({"containers": [sh("side", "sleep 300")]})
    kept = node.running(keep)
    node.running(drop)
    ip = kept["status"]["podIP"]
    record_pids = {c["name"]: c for c in kept["status"]["containerStatuses"]}
    node.stop(signal.SIGKILL)
    node.delete(drop, grace_period_seconds=0)  # gone from the API while the kubelet is down
    node.gone(drop)
    node.start()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (len(node.pod_namespaces()) != 1 or len(node.ipam_leases()) != 1):
        time.sleep(0.1)
    assert len(node.pod_namespaces()) == 1 and node.ipam_leases() == [ip]
    deadline = time.monotonic() + 10
    while http_get(node, ip, "/hostname") != keep and time.monotonic() < deadline:
        time.sleep(0.2)
    assert http_get(node, ip, "/hostname") == keep  # the built-in serves again
    pod = node.running(keep)
    after = {c["name"]: c for c in pod["status"]["containerStatuses"]}
    assert after["side"]["containerID"] == record_pids["side"]["containerID"]  # adopted, not restarted
    assert after["side"]["restartCount"] == 0 and after["web"]["restartCount"] == 0
    node.delete(keep)
    node.gone(keep)
    assert node.pod_namespaces() == [] and node.ipam_leases() == []
