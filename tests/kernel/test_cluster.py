"""A cluster end to end through the `netsim` command: pods get IPs and reach each other."""

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cluster.kubelet import cgroups
from tests.conftest import host_snapshot

from tests.kernel.conftest import NETSIM, Cluster, pod


def _snapshot(name):
    """The host as a cluster NAME could change it: root-namespace links, routes and netfilter,
    the namespaces and cgroups named after the cluster (other tests may run beside this one)."""
    snap = host_snapshot()
    snap["netns"] = [n for n in snap["netns"] if n.split()[0].startswith((f"{name}-", f"{name}_"))]
    snap["cgroups"] = sorted(d for c in ("cpu", "memory") if os.path.isdir(f"/sys/fs/cgroup/{c}")
                             for d in os.listdir(f"/sys/fs/cgroup/{c}") if d == f"netsim_{name}")
    return snap


def _in(ip, cidr):
    return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    import secrets

    import yaml

    tmp = tmp_path_factory.mktemp("cluster")
    name = f"t{secrets.token_hex(3)}"
    lab = {"name": name, "nodes": 2, "loadBalancerPool": "172.18.200.0/29", "manifests": [
        pod("a", node="node-1"), pod("b", node="node-1"), pod("c", node="node-2"),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}},
        pod("hostnames", namespace="other", args=("serve-hostname", "--udp", "--http=false", "--port", "9376")),
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "shell"},
         "spec": {"containers": [{"name": "sh", "image": "debian:12",
                                  "command": ["sh", "-c", "echo started in $(hostname); exec sleep 3600"]}]}},
    ]}
    path = tmp / "lab.yaml"
    path.write_text(yaml.safe_dump(lab))
    c = Cluster(name, str(tmp / "state"), str(path))
    try:
        c.up()
        yield c
    finally:
        c.down()


def test_every_pod_runs_with_one_ip_from_its_nodes_pod_cidr(two_nodes):
    st = two_nodes.status()
    cidr = {n["name"]: n["podCIDR"] for n in st["nodes"]}
    ips = [p["ip"] for p in st["pods"]]
    assert all(p["phase"] == "Running" for p in st["pods"]), st["pods"]
    assert len(set(ips)) == len(ips)
    for p in st["pods"]:
        assert _in(p["ip"], cidr[p["node"]])
        out = two_nodes.exec(f"{p['namespace']}/{p['name']}", "ip", "-o", "-4", "addr", "show", "eth0").stdout
        assert p["ip"] in out
    assert {n["agent"] for n in st["nodes"]} == {"running"}


def test_pod_to_pod_on_one_node_and_across_nodes(two_nodes):
    for dst in ("default/b", "default/c"):
        r = two_nodes.probe("default/a", dst, "--port", "8080")
        assert r.returncode == 0, r.stdout
        r = two_nodes.probe("default/a", dst, "--proto", "icmp")
        assert r.returncode == 0, r.stdout


def test_netexec_sees_the_real_client_address_across_nodes(two_nodes):
    """host-gw routing: no NAT between pods, so the server sees the client pod's own IP."""
    a, c = two_nodes.pod("default/a"), two_nodes.pod("default/c")
    out = two_nodes.exec("default/a", "curl", "-s", "--max-time", "3", f"http://{c['ip']}:8080/clientip").stdout
    assert out.split(":")[0] == a["ip"]


def test_pod_to_node_and_node_to_pod(two_nodes):
    assert two_nodes.probe("default/a", "node-2", "--proto", "icmp").returncode == 0
    assert two_nodes.probe("node-2", "default/a", "--port", "8080").returncode == 0


def test_closed_port_is_refused_not_reachable(two_nodes):
    r = two_nodes.probe("default/a", "default/c", "--port", "9999")
    assert r.returncode == 1
    assert "refused" in r.stdout


def test_udp_serve_hostname_answers_with_the_pod_name(two_nodes):
    r = two_nodes.probe("default/a", "other/hostnames", "--port", "9376", "--proto", "udp")
    assert r.returncode == 0, r.stdout
    assert '"reply": "hostnames"' in r.stdout


def test_pod_hostname_is_its_name_and_logs_show_container_output(two_nodes):
    assert two_nodes.exec("other/hostnames", "hostname").stdout.strip() == "hostnames"
    deadline = time.time() + 5
    while time.time() < deadline:
        logs = two_nodes.run("logs", "--name", two_nodes.name, "default/shell").stdout
        if "started in shell" in logs:
            break
        time.sleep(0.1)
    assert "started in shell" in logs


def test_nodes_route_other_pod_cidrs_via_node_ips(two_nodes):
    st = two_nodes.status()
    n1, n2 = st["nodes"]
    routes = two_nodes.exec("node-1", "ip", "route").stdout
    assert f"{n2['podCIDR']} via {n2['ip']} dev eth0" in routes
    assert two_nodes.exec("node-1", "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"


def test_exec_into_unknown_pod_is_a_clear_error(two_nodes):
    r = two_nodes.exec("default/nope", "true", check=False)
    assert r.returncode == 1
    assert "No pod default/nope" in r.stderr


def test_external_client_reaches_the_nodes_and_routes_the_pool_to_them(make_cluster):
    c = make_cluster({"nodes": 2, "loadBalancerPool": "172.18.200.0/24", "manifests": [pod("p", node="node-2")]})
    st = c.status()
    assert st["external"]["ip"] == "172.18.255.254"
    assert c.probe("external", "node-1", "--proto", "icmp").returncode == 0
    assert c.probe("node-2", "external", "--proto", "icmp").returncode == 0
    routes = c.exec("external", "ip", "route").stdout
    assert "172.18.200.0/24" in routes
    assert all(f"via {n['ip']} dev eth0" in routes for n in st["nodes"])
    # Pods are not routable from outside the cluster, as on a real one without a route to pods.
    assert c.probe("external", "default/p", "--port", "8080", "--timeout", "0.3").returncode == 1


def test_reference_plugins_wire_the_same_cluster(make_cluster):
    c = make_cluster({"nodes": 2, "cni": "reference", "manifests": [pod("x", node="node-1"), pod("y", node="node-2")]})
    st = c.status()
    assert st["cni"] == "reference"
    assert all(p["phase"] == "Running" for p in st["pods"])
    assert c.probe("default/x", "default/y", "--port", "8080").returncode == 0
    # The reference plugin keeps host-local's layout under the same dataDir.
    y = c.pod("default/y")
    assert os.path.exists(os.path.join(c.state_dir, c.name, "nodes", "node-2", "ipam", "netsim", y["ip"]))


def test_two_clusters_are_up_at_once(make_cluster):
    one = make_cluster({"nodes": 1, "manifests": [pod("p")]})
    two = make_cluster({"nodes": 1, "manifests": [pod("p")]})
    assert one.pod("default/p")["ip"] == two.pod("default/p")["ip"]  # same plan, separate worlds
    assert one.probe("default/p", "node-1", "--proto", "icmp").returncode == 0
    one.down()
    assert two.probe("default/p", "node-1", "--proto", "icmp").returncode == 0


def test_invalid_lab_is_rejected_before_anything_is_made(make_cluster):
    c = make_cluster({"nodes": 2, "manifests": [pod("p", node="node-7")]}, up=False)
    before = _snapshot(c.name)
    r = c.run("up", "-f", c.lab_path, check=False)
    assert r.returncode == 1
    assert "spec.nodeName: node 'node-7' is not in the lab" in r.stderr
    assert not os.path.exists(os.path.join(c.state_dir, c.name))
    assert _snapshot(c.name) == before


def test_down_after_sigkill_midway_leaves_nothing(make_cluster):
    # Process containers with limits where the host has the cgroup controllers (a chroot with
    # /sys bound without its mounts has none, and the kubelet refuses limits there).
    limits = cgroups.available()
    limited = {"containers": [{"name": "sh", "image": "debian:12", "command": ["sleep", "3600"]}]}
    if limits:
        limited["containers"][0]["resources"] = {"limits": {"memory": "32Mi", "cpu": "100m"}}
    manifests = [pod(f"p{i}") for i in range(15)] + [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"l{i}"}, "spec": limited} for i in range(15)]
    c = make_cluster({"nodes": 3, "manifests": manifests}, up=False)
    before = _snapshot(c.name)
    proc = subprocess.Popen(NETSIM + ["up", "-f", c.lab_path], env=c.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ledger = os.path.join(c.state_dir, c.name, "ledger.jsonl")
    deadline = time.time() + 30
    # Killed once pods are being made (and the first container cgroups exist).
    marker = '"cgroup"' if limits else '"role": "container '
    while time.time() < deadline and not (os.path.exists(ledger) and marker in open(ledger).read()):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The control plane and the kubelets outlive the CLI; kill them too, as a crash of the
    # whole machine would.
    for line in open(ledger):
        if '"process"' in line:
            pid = int(line.split('"pid": ')[1].split(",")[0])
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    c.down()
    assert _snapshot(c.name) == before
    assert not os.path.exists(os.path.join(c.state_dir, c.name))


# -- the cluster through its API: kubectl, controllers, scheduler, kubelets --------------------

KUBECTL = os.path.join(os.path.dirname(sys.executable), "kubectl")
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"


def _kubectl(cluster, tmp_path):
    """kubectl against `netsim kubeconfig --name` of CLUSTER, as a user points it there."""
    path = tmp_path / f"{cluster.name}.kubeconfig"
    path.write_text(cluster.run("kubeconfig", "--name", cluster.name).stdout)

    def run(*args, check=True, input=None):
        proc = subprocess.run([KUBECTL, "--kubeconfig", str(path), *args], capture_output=True, text=True,
                              input=input, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc
    return run


def _deployment(name, namespace, replicas, **container):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         "terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "web", "image": AGNHOST, "args": ["netexec", "--http-port=8080"],
                                         "ports": [{"name": "http", "containerPort": 8080}], **container}]}}}}


def _service(name, namespace):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": "http"}]}}


def _yaml(*docs):
    import yaml

    return yaml.safe_dump_all(docs)


def _until(what, fn, timeout=20):
    """FN() until it returns something truthy; fails naming WHAT and the last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached in {timeout}s; last: {last!r}")


def _pods(kubectl, namespace, selector=None):
    args = ["get", "pods", "-n", namespace, "-o", "json"] + (["-l", selector] if selector else [])
    return json.loads(kubectl(*args).stdout)["items"]


def _ready_pods(kubectl, namespace, count, selector=None):
    """Exactly COUNT pods, none terminating, every one Running, Ready and with an IP."""
    def check():
        pods = [p for p in _pods(kubectl, namespace, selector) if not p["metadata"].get("deletionTimestamp")]
        ok = len(pods) == count and all(
            p["status"].get("podIP") and any(c["type"] == "Ready" and c["status"] == "True"
                                             for c in p["status"].get("conditions", [])) for p in pods)
        total = len(_pods(kubectl, namespace, selector))
        return pods if ok and total == count else None
    return _until(f"{count} ready pods in {namespace}", check, timeout=30)


def _slice_ips(kubectl, namespace, service):
    slices = json.loads(kubectl("get", "endpointslices", "-n", namespace, "-l",
                                f"kubernetes.io/service-name={service}", "-o", "json").stdout)["items"]
    return sorted(a for s in slices for e in s.get("endpoints") or []
                  if (e.get("conditions") or {}).get("ready") for a in e["addresses"])


def _pod_netns(cluster, namespace=None):
    """The cluster's pod namespaces in `ip netns list` (<cluster>_<ns>_<pod>_<uid>)."""
    names = [line.split()[0] for line in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                          text=True).stdout.splitlines()]
    return sorted(n for n in names if n.startswith(cluster.name + "_") and n.count("_") >= 3
                  and (namespace is None or n.split("_")[1] == namespace))


def _leases(cluster):
    """Addresses host-local holds on every node of CLUSTER."""
    base = os.path.join(cluster.state_dir, cluster.name, "nodes")
    out = []
    for node in os.listdir(base):
        d = os.path.join(base, node, "ipam", "netsim")
        out += [f for f in os.listdir(d) if f[0].isdigit()] if os.path.isdir(d) else []
    return sorted(out)


@pytest.fixture(scope="module")
def kubectl(two_nodes, tmp_path_factory):
    return _kubectl(two_nodes, tmp_path_factory.mktemp("kubectl"))


@pytest.fixture(scope="module")
def web(two_nodes, kubectl):
    """A Deployment of 4 netexec replicas and its Service, applied with kubectl in namespace web."""
    out = kubectl("apply", "-f", "-", input=_yaml(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}},
        _deployment("web", "web", 4), _service("web", "web"))).stdout
    assert "deployment.apps/web created" in out and "service/web created" in out
    return "web"


def test_kubectl_deployment_runs_ready_pods_on_every_node_behind_an_endpointslice(two_nodes, kubectl, web):
    pods = _ready_pods(kubectl, web, 4)
    assert {p["spec"]["nodeName"] for p in pods} == {"node-1", "node-2"}
    ips = sorted(p["status"]["podIP"] for p in pods)
    assert _until("the EndpointSlice lists the 4 pods", lambda: _slice_ips(kubectl, web, "web") == ips)
    # netsim sees the same pods, each in its own namespace, and they answer.
    status = {f"{p['namespace']}/{p['name']}": p for p in two_nodes.status()["pods"]}
    ref = f"web/{pods[0]['metadata']['name']}"
    assert status[ref]["netns"] in _pod_netns(two_nodes, "web")
    assert two_nodes.probe("default/a", ref, "--port", "8080").returncode == 0
    table = two_nodes.run("get", "--name", two_nodes.name, "deploy", "-n", "web").stdout.splitlines()
    assert table[1].split()[:2] == ["web", "4/4"]


def test_services_carry_traffic_through_kube_proxy_from_pods_nodes_and_outside(two_nodes, kubectl, web):
    """ClusterIP from a pod and from a node, NodePort and LoadBalancer from the external client:
    every answer comes from one of the Service's pods, through each node's kube-proxy rules."""
    names = {p["metadata"]["name"] for p in _ready_pods(kubectl, web, 4)}
    kubectl("patch", "service/web", "-n", web, "-p", '{"spec": {"type": "LoadBalancer"}}')

    def svc():
        return json.loads(kubectl("get", "service/web", "-n", web, "-o", "json").stdout)

    assert _until("a LoadBalancer IP", lambda: svc()["status"].get("loadBalancer", {}).get("ingress"))
    s = svc()
    cluster_ip, node_port = s["spec"]["clusterIP"], s["spec"]["ports"][0]["nodePort"]
    lb_ip = s["status"]["loadBalancer"]["ingress"][0]["ip"]
    node_ip = two_nodes.status()["nodes"][1]["ip"]
    for who, url in (("default/a", f"http://{cluster_ip}/hostname"), ("node-1", f"http://{cluster_ip}/hostname"),
                     ("external", f"http://{node_ip}:{node_port}/hostname"), ("external", f"http://{lb_ip}/hostname")):
        assert _until(f"{who} reaches {url}", lambda: two_nodes.exec(
            who, "curl", "-s", "--max-time", "2", url, check=False).stdout.strip() in names), url
    # The rules are where a user looks for them, in the backend kube-proxy writes.
    assert "KUBE-SVC-" in two_nodes.run("iptables", "--name", two_nodes.name, "node-1", "-t", "nat").stdout


def test_scaling_up_and_down_adds_and_removes_pods_and_their_namespaces(two_nodes, kubectl, web):
    _ready_pods(kubectl, web, 4)
    kubectl("scale", "deployment/web", "-n", web, "--replicas=6")
    pods = _ready_pods(kubectl, web, 6)
    ips = sorted(p["status"]["podIP"] for p in pods)
    _until("the EndpointSlice lists 6 pods", lambda: _slice_ips(kubectl, web, "web") == ips)
    kubectl("scale", "deployment/web", "-n", web, "--replicas=1")
    pods = _ready_pods(kubectl, web, 1)
    _until("one pod namespace left in web", lambda: len(_pod_netns(two_nodes, web)) == 1)
    _until("the EndpointSlice lists the one pod",
           lambda: _slice_ips(kubectl, web, "web") == [pods[0]["status"]["podIP"]])


def test_deleting_a_namespace_deletes_its_pods_and_their_kernel_objects(two_nodes, kubectl):
    kubectl("apply", "-f", "-", input=_yaml(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}}, _deployment("d", "doomed", 2)))
    _ready_pods(kubectl, "doomed", 2)
    assert len(_pod_netns(two_nodes, "doomed")) == 2
    kubectl("delete", "namespace", "doomed", "--wait=false")
    _until("namespace doomed gone",
           lambda: "NotFound" in kubectl("get", "namespace", "doomed", check=False).stderr, timeout=30)
    # A pod the namespace controller force-deletes is torn down by its kubelet just after.
    _until("the pods' namespaces gone", lambda: _pod_netns(two_nodes, "doomed") == [], timeout=10)


def test_failing_readiness_probe_turns_a_pod_not_ready_and_back(two_nodes, kubectl, tmp_path):
    flag = tmp_path / "ready"
    flag.write_text("ok")
    probe = {"exec": {"command": ["cat", str(flag)]}, "periodSeconds": 1, "failureThreshold": 1}
    kubectl("apply", "-f", "-", input=_yaml(_deployment("probed", "default", 1, readinessProbe=probe),
                                          _service("probed", "default")))
    (pod,) = _ready_pods(kubectl, "default", 1, "app=probed")
    ip = pod["status"]["podIP"]

    def ready():
        p = json.loads(kubectl("get", "pod", pod["metadata"]["name"], "-o", "json").stdout)
        return next(c["status"] for c in p["status"]["conditions"] if c["type"] == "Ready")

    _until("the slice lists the ready pod", lambda: _slice_ips(kubectl, "default", "probed") == [ip])
    flag.unlink()
    _until("Ready False", lambda: ready() == "False", timeout=10)
    _until("the slice drops the pod", lambda: _slice_ips(kubectl, "default", "probed") == [], timeout=10)
    flag.write_text("ok")
    _until("Ready True again", lambda: ready() == "True", timeout=10)
    _until("the slice lists it again", lambda: _slice_ips(kubectl, "default", "probed") == [ip], timeout=10)


def test_netsim_apply_get_and_delete(two_nodes, tmp_path):
    path = tmp_path / "cm.yaml"
    path.write_text(_yaml({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                           "data": {"mode": "lab"}}))
    assert two_nodes.run("apply", "--name", two_nodes.name, "-f", str(path)).stdout.strip() == \
        "configmap/settings created"
    assert "configured" in two_nodes.run("apply", "--name", two_nodes.name, "-f", str(path)).stdout
    table = two_nodes.run("get", "--name", two_nodes.name, "cm", "settings").stdout.splitlines()
    assert table[0].split() == ["NAME", "DATA", "AGE"] and table[1].split()[:2] == ["settings", "1"]
    doc = json.loads(two_nodes.run("get", "--name", two_nodes.name, "configmap", "settings", "-o", "json").stdout)
    assert doc["kind"] == "ConfigMap" and doc["data"] == {"mode": "lab"}
    wide = two_nodes.run("get", "--name", two_nodes.name, "pods", "-A", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[:2] == ["NAMESPACE", "NAME"] and "NODE" in wide[0].split()
    assert two_nodes.run("delete", "--name", two_nodes.name, "-f", str(path)).stdout.strip() == \
        'configmap "settings" deleted'
    again = two_nodes.run("delete", "--name", two_nodes.name, "-f", str(path), check=False)
    assert again.returncode == 1 and "NotFound" in again.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(_yaml({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                          "spec": {"ports": [{"port": 70000}]}}))
    r = two_nodes.run("apply", "--name", two_nodes.name, "-f", str(bad), check=False)
    assert r.returncode == 1 and f"{bad}: document 1: the API server refused Service default/s" in r.stderr


@pytest.fixture(scope="module")
def crashy(tmp_path_factory):
    """A cluster of its own for killing processes: 2 nodes, a Deployment of 4 and its Service."""
    import secrets

    import yaml

    tmp = tmp_path_factory.mktemp("crashy")
    name = f"t{secrets.token_hex(3)}"
    path = tmp / "lab.yaml"
    path.write_text(yaml.safe_dump({"name": name, "nodes": 2, "manifests": [
        _deployment("web", "default", 4), _service("web", "default")]}))
    c = Cluster(name, str(tmp / "state"), str(path))
    try:
        c.up()
        yield c
    finally:
        c.down()


def _kill(cluster, *roles):
    ledger = os.path.join(cluster.state_dir, cluster.name, "ledger.jsonl")
    for line in open(ledger):
        e = json.loads(line)
        if e["kind"] == "process" and e.get("role") in roles:
            try:
                os.kill(e["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass


def _converged(cluster, kubectl, replicas):
    pods = _ready_pods(kubectl, "default", replicas, "app=web")
    _until("one pod namespace per pod", lambda: len(_pod_netns(cluster, "default")) == replicas, timeout=30)
    _until("one address per pod", lambda: _leases(cluster) == sorted(p["status"]["podIP"] for p in pods), timeout=30)
    return pods


def test_killed_control_plane_comes_back_with_up_and_converges(crashy, tmp_path):
    kubectl = _kubectl(crashy, tmp_path)
    before = {p["metadata"]["uid"] for p in _converged(crashy, kubectl, 4)}
    _kill(crashy, "apiserver", "controller-manager", "scheduler")
    st = crashy.status()
    assert st["controlPlane"] == {"apiserver": "stopped", "controller-manager": "stopped", "scheduler": "stopped"}
    assert "netsim up" in st["error"]
    assert "starting again" in crashy.up().stdout
    assert {p["metadata"]["uid"] for p in _converged(crashy, kubectl, 4)} == before
    kubectl("scale", "deployment/web", "--replicas=5")
    _converged(crashy, kubectl, 5)


def test_killed_kubelet_comes_back_adopts_its_pods_and_cleans_up_what_was_deleted(crashy, tmp_path):
    kubectl = _kubectl(crashy, tmp_path)
    pods = _converged(crashy, kubectl, len(_pods(kubectl, "default", "app=web")))
    replicas = len(pods)
    _kill(crashy, "kubelet node-1")
    assert {n["name"]: n["agent"] for n in crashy.status()["nodes"]} == {"node-1": "stopped", "node-2": "running"}
    victim = next(p for p in pods if p["spec"]["nodeName"] == "node-1")
    kubectl("delete", "pod", victim["metadata"]["name"], "--wait=false")
    crashy.up()
    after = _converged(crashy, kubectl, replicas)
    assert victim["metadata"]["uid"] not in {p["metadata"]["uid"] for p in after}
    survivors = {p["metadata"]["uid"] for p in pods} - {victim["metadata"]["uid"]}
    assert survivors <= {p["metadata"]["uid"] for p in after}
    assert crashy.probe(f"default/{after[0]['metadata']['name']}", f"default/{after[-1]['metadata']['name']}",
                        "--port", "8080").returncode == 0
