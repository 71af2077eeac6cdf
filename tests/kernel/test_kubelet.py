"""The kubelet against a real API server and a real node namespace: pods become Running with an
IP and serve, are deleted gracefully without leaving a namespace, veth or IP lease, and the
kubelet registers its Node and renews its Lease."""

import time

from cluster.api.errors import APIError
from cluster.api.resources import lookup
from netsim import netns
from tests.kernel.kubelet_fixtures import AGNHOST, http_get, kubelet_api, node  # noqa: F401

NODES = lookup("", "v1", "nodes")
LEASES = lookup("coordination.k8s.io", "v1", "leases")


def netexec(**extra):
    return {"containers": [{"name": "web", "image": AGNHOST, "args": ["netexec", "--http-port=8080"], **extra}]}


def test_node_registers_and_renews_its_lease(node):
    n = node.call(node.client.get(NODES, node.name))
    assert n["spec"]["podCIDR"] == "10.244.7.0/24"
    assert {"type": "InternalIP", "address": "192.168.77.2"} in n["status"]["addresses"]
    ready = next(c for c in n["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "KubeletReady"
    assert int(n["status"]["allocatable"]["pods"]) == 110
    # The first heartbeat creates the Lease just after the Node is registered.
    deadline = time.monotonic() + 10
    while True:
        try:
            first = node.call(node.client.get(LEASES, node.name, "kube-node-lease"))["spec"]["renewTime"]
            break
        except APIError as e:
            if e.code != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    time.sleep(2.2)
    assert node.call(node.client.get(LEASES, node.name, "kube-node-lease"))["spec"]["renewTime"] != first


def test_pod_runs_serves_and_is_deleted_without_traces(node):
    name = node.create(netexec())
    pod = node.running(name)
    st = pod["status"]
    ip = st["podIP"]
    assert st["hostIP"] == "192.168.77.2" and st["podIPs"] == [{"ip": ip}]
    assert {c["type"]: c["status"] for c in st["conditions"]} == {
        "PodReadyToStartContainers": "True", "Initialized": "True", "ContainersReady": "True",
        "Ready": "True", "PodScheduled": "True"}
    cs = st["containerStatuses"][0]
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0 and "running" in cs["state"]
    assert cs["containerID"].startswith("netsim://") and cs["image"] == AGNHOST
    assert http_get(node, ip, "/hostname") == name
    assert len(node.pod_namespaces()) == 1 and node.ipam_leases() == [ip]

    node.delete(name)
    node.gone(name)
    assert node.pod_namespaces() == []
    assert node.ipam_leases() == []
    links = node.run_in_node("ip", "-o", "link", "show", "type", "veth").stdout
    assert links.strip() == ""


def test_process_container_gets_sigterm_then_the_pod_goes(node):
    name = node.create({"containers": [{"name": "sh", "image": "busybox", "command": [
        "sh", "-c", "trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done"]}]})
    node.running(name)
    started = time.monotonic()
    node.delete(name)
    node.gone(name)
    assert time.monotonic() - started < 2  # SIGTERM ended it: the 2 s grace was not waited out
    assert node.pod_namespaces() == [] and node.ipam_leases() == []
