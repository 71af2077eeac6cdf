"""`kubectl logs` through the API server: the pod's kubelet found through its Node, its answer
streamed back, and every refusal worded as upstream's. The kubelet is the real log endpoint of
cluster.kubelet.logs over log files this test writes (no root, no containers)."""

import http.client
import json
import os
import secrets
import ssl
import subprocess
import sys
import time
import urllib.parse

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from cluster.kubelet.logs import LogServer
from tests.support.apiserver import sqlite_apiserver  # noqa: F401  (fixture)

KUBECTL = os.path.join(os.path.dirname(sys.executable), "kubectl")
NODE = "node-1"


@pytest.fixture(scope="module")
def kubelet(sqlite_apiserver, tmp_path_factory):  # noqa: F811
    """A kubelet log endpoint for node-1, on the API server's loop; its Node announces it."""
    root = tmp_path_factory.mktemp("kubelet")
    server = LogServer(str(root / "kubelet.sock"), str(root))
    sqlite_apiserver.call(server.start())
    core = core_api(sqlite_apiserver)
    core.create_node({"metadata": {"name": NODE, "annotations": {"netsim.dev/kubelet-socket": server.socket_path}}})
    yield root
    sqlite_apiserver.call(server.stop())


def core_api(api):
    return client.CoreV1Api(config.new_client_from_config(config_file=api.kubeconfig))


@pytest.fixture
def core(sqlite_apiserver):  # noqa: F811
    return core_api(sqlite_apiserver)


def make_pod(core, *containers, node=NODE, init=()):
    name = f"web-{secrets.token_hex(3)}"
    spec = {"containers": [{"name": c, "image": "busybox"} for c in containers]}
    if init:
        spec["initContainers"] = [{"name": c, "image": "busybox"} for c in init]
    if node:
        spec["nodeName"] = node
    core.create_namespaced_pod("default", {"metadata": {"name": name}, "spec": spec})
    return name


def write_log(root, pod, container, text, instance=0):
    """The kubelet's layout: logs/<ns>_<pod>_<uid>/<container>/<n>.log, <container>.log -> current."""
    directory = root / "logs" / f"default_{pod}_uid1" / container
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{instance}.log"
    path.write_text(text)
    link = directory / f"{container}.log"
    if link.is_symlink():
        link.unlink()
    link.symlink_to(path.name)
    return path


def refused(call) -> tuple[int, str]:
    with pytest.raises(ApiException) as info:
        call()
    return info.value.status, json.loads(info.value.body)["message"]


def test_logs_of_a_container_with_upstreams_options(kubelet, core):
    name = make_pod(core, "app")
    write_log(kubelet, name, "app", "first run\n", instance=0)
    write_log(kubelet, name, "app", "one\ntwo\nthree\n", instance=1)
    assert core.read_namespaced_pod_log(name, "default") == "one\ntwo\nthree\n"
    assert core.read_namespaced_pod_log(name, "default", container="app", tail_lines=2) == "two\nthree\n"
    assert core.read_namespaced_pod_log(name, "default", limit_bytes=6) == "one\ntw"
    assert core.read_namespaced_pod_log(name, "default", previous=True) == "first run\n"


def test_the_container_must_be_named_when_the_pod_has_several(kubelet, core):
    name = make_pod(core, "a", "b", init=("setup",))
    assert refused(lambda: core.read_namespaced_pod_log(name, "default")) == (
        400, f"a container name must be specified for pod {name}, choose one of: [setup a b]")
    assert refused(lambda: core.read_namespaced_pod_log(name, "default", container="c")) == (
        400, f"container c is not valid for pod {name}")
    write_log(kubelet, name, "setup", "done\n")
    assert core.read_namespaced_pod_log(name, "default", container="setup") == "done\n"


def test_refusals_say_what_is_missing(kubelet, core):
    assert refused(lambda: core.read_namespaced_pod_log("nope", "default")) == (404, 'pods "nope" not found')
    pending = make_pod(core, "app", node=None)
    status, message = refused(lambda: core.read_namespaced_pod_log(pending, "default"))
    assert status == 400 and "is not scheduled to a node yet" in message
    # the kubelet's own 404 and 400 come through with its words
    silent = make_pod(core, "app")
    assert refused(lambda: core.read_namespaced_pod_log(silent, "default")) == (
        404, f'container "app" in pod "{silent}" (namespace default) has no logs on this node')
    write_log(kubelet, silent, "app", "only run\n")
    assert refused(lambda: core.read_namespaced_pod_log(silent, "default", previous=True)) == (
        400, f'previous terminated container "app" in pod "{silent}" not found')
    lost = make_pod(core, "app", node="node-9")
    status, message = refused(lambda: core.read_namespaced_pod_log(lost, "default"))
    assert status == 400 and 'node "node-9", which is not registered' in message


def test_options_the_kubelet_cannot_honour_are_refused_not_ignored(kubelet, core):
    name = make_pod(core, "app")
    write_log(kubelet, name, "app", "x\n")
    status, message = refused(lambda: core.read_namespaced_pod_log(name, "default", timestamps=True))
    assert status == 400 and "timestamps are not supported" in message
    status, message = refused(lambda: core.read_namespaced_pod_log(name, "default", since_seconds=60))
    assert status == 400 and "sinceSeconds: not supported" in message
    assert refused(lambda: core.read_namespaced_pod_log(name, "default", tail_lines=-1)) == (
        422, f'PodLogOptions "{name}" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0')
    assert refused(lambda: core.read_namespaced_pod_log(name, "default", since_seconds=0)) == (
        422, f'PodLogOptions "{name}" is invalid: sinceSeconds: Invalid value: 0: must be greater than 0')


def test_a_node_whose_kubelet_does_not_answer(sqlite_apiserver, core, tmp_path):  # noqa: F811
    core.create_node({"metadata": {"name": "node-gone", "annotations": {
        "netsim.dev/kubelet-socket": str(tmp_path / "none.sock")}}})
    name = make_pod(core, "app", node="node-gone")
    status, message = refused(lambda: core.read_namespaced_pod_log(name, "default"))
    assert status == 500 and f'the kubelet of node "node-gone" does not answer on {tmp_path}/none.sock' in message


def test_follow_streams_what_the_container_writes(sqlite_apiserver, kubelet, core):  # noqa: F811
    name = make_pod(core, "app")
    path = write_log(kubelet, name, "app", "started\n")
    url = urllib.parse.urlparse(sqlite_apiserver.url)
    conn = http.client.HTTPSConnection(url.hostname, url.port, timeout=10,
                                       context=ssl.create_default_context(cafile=sqlite_apiserver.server.cert))
    conn.request("GET", f"/api/v1/namespaces/default/pods/{name}/log?follow=true",
                 headers={"Authorization": f"Bearer {sqlite_apiserver.token}"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/plain")
    assert resp.read1() == b"started\n"
    with open(path, "a") as f:
        f.write("request 1\n")
    assert resp.read1() == b"request 1\n"
    path.unlink()  # the pod is gone from the node: the kubelet ends the stream, and so do we
    deadline = time.monotonic() + 5
    while resp.read1() and time.monotonic() < deadline:
        pass
    assert resp.isclosed() or resp.read1() == b""
    conn.close()


def test_kubectl_logs(sqlite_apiserver, kubelet, core):  # noqa: F811
    name = make_pod(core, "app", "sidecar")
    write_log(kubelet, name, "app", "one\ntwo\n")

    def kubectl(*args):
        return subprocess.run([KUBECTL, "--kubeconfig", sqlite_apiserver.kubeconfig, "logs", *args],
                              capture_output=True, text=True, timeout=30)

    done = kubectl(name, "--tail=1")
    # kubectl picks the first container itself and says so
    assert (done.returncode, done.stdout) == (0, "two\n")
    assert 'Defaulted container "app" out of: app, sidecar' in done.stderr
    done = kubectl(name, "-c", "sidecar")
    assert done.returncode == 1
    assert done.stderr.strip() == (f'Error from server (NotFound): container "sidecar" in pod "{name}" '
                                   "(namespace default) has no logs on this node")


def test_kubectl_logs_follow_ends_with_the_container(sqlite_apiserver, kubelet, core):  # noqa: F811
    name = make_pod(core, "app")
    path = write_log(kubelet, name, "app", "one\n")
    follow = subprocess.Popen([KUBECTL, "--kubeconfig", sqlite_apiserver.kubeconfig, "logs", "-f", name],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert follow.stdout.readline() == "one\n"
        with open(path, "a") as f:
            f.write("two\n")
        assert follow.stdout.readline() == "two\n"
        path.unlink()
        assert follow.wait(10) == 0
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
