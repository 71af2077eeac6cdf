"""A cluster end to end through the `netsim` command: pods get IPs and reach each other."""

import ipaddress
import os
import signal
import subprocess
import time

import pytest

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
    lab = {"name": name, "nodes": 2, "manifests": [
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
    limited = {"containers": [{"name": "sh", "image": "debian:12", "command": ["sleep", "3600"],
                               "resources": {"limits": {"memory": "32Mi", "cpu": "100m"}}}]}
    manifests = [pod(f"p{i}") for i in range(15)] + [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"l{i}"}, "spec": limited} for i in range(15)]
    c = make_cluster({"nodes": 3, "manifests": manifests}, up=False)
    before = _snapshot(c.name)
    proc = subprocess.Popen(NETSIM + ["up", "-f", c.lab_path], env=c.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ledger = os.path.join(c.state_dir, c.name, "ledger.jsonl")
    deadline = time.time() + 30
    # Killed once pods are being made and the first container cgroups exist.
    while time.time() < deadline and not (os.path.exists(ledger) and '"cgroup"' in open(ledger).read()):
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
