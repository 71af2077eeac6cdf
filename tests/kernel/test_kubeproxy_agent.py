"""The kube-proxy agent, live: objects written to a real API server become traffic in a node.

One API server (SQLite) and one `python -m proxy.kubeproxy` process serve the module. The node
is a throwaway namespace with a bridge and four pod namespaces (a client pod and three pods
whose TCP and UDP servers answer with their name and the client address they saw); an
"external" namespace sits on the node's network, as the outside world. Services (ClusterIP and
NodePort allocated by the API server) and EndpointSlices are created through the client, with
no controllers: each test waits for what the agent reports (the programming latency count of the
slice it wrote, or the rules of the Service it created) and then asserts what a user sees.
"""

import asyncio
import datetime
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time

import pytest

from cluster.api.resources import by_kind
from cluster.client import Client
from netsim import netns
from tests.support.apiserver import running_apiserver

SERVICES = by_kind("v1", "Service")
SLICES = by_kind("discovery.k8s.io/v1", "EndpointSlice")
NODES = by_kind("v1", "Node")
NAMESPACES = by_kind("v1", "Namespace")

NODE = "node-a"
NODE_IP, EXTERNAL_IP, BRIDGE_IP = "172.18.0.2", "172.18.0.100", "10.244.1.1"
CLUSTER_CIDR = "10.244.0.0/16"
PODS = {"client": "10.244.1.10", "pod1": "10.244.1.11", "pod2": "10.244.1.12", "pod3": "10.244.1.13"}
SERVERS = ("pod1", "pod2", "pod3")
NS = "kp"


def ip_batch(ns, commands):
    subprocess.run(["ip", "-n", ns, "-batch", "-"], input="\n".join(commands) + "\n", text=True,
                   check=True, capture_output=True)


class Lab:
    """The node, its pods and the external client, as namespaces named t<random><role>."""

    def __init__(self):
        self.tag = f"t{secrets.token_hex(3)}"
        self.made, self.sockets = [], []

    def name(self, role):
        return f"{self.tag}{role}"

    def path(self, role):
        return netns.netns_path(self.name(role))

    def build(self):
        for role in ("node", "ext", *PODS):
            netns.create(self.name(role))
            self.made.append(self.name(role))
        node, ext = self.name("node"), self.name("ext")
        commands = ["link set lo up",
                    "link add cni0 type bridge", f"addr add {BRIDGE_IP}/24 dev cni0", "link set cni0 up",
                    f"link add eth0 type veth peer name eth0 netns {ext}",
                    f"addr add {NODE_IP}/24 dev eth0", "link set eth0 up",
                    # The node's uplink: Service IPs without rules leave here, as on a real node.
                    f"route add default via {EXTERNAL_IP}"]
        for role in PODS:
            commands += [f"link add v{role} type veth peer name eth0 netns {self.name(role)}",
                         f"link set v{role} master cni0", f"link set v{role} up"]
        ip_batch(node, commands)
        ip_batch(ext, ["link set lo up", f"addr add {EXTERNAL_IP}/24 dev eth0", "link set eth0 up"])
        for role, addr in PODS.items():
            ip_batch(self.name(role), ["link set lo up", f"addr add {addr}/24 dev eth0", "link set eth0 up",
                                       f"route add default via {BRIDGE_IP}"])
        with netns.enter(self.path("node")):
            for key in ("net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"):
                with open(f"/proc/sys/{key}", "w") as f:
                    f.write("1")
        for role in SERVERS:
            self.serve_tcp(role, 8080)
            self.serve_udp(role, 8081)

    def _socket(self, role, kind):
        with netns.enter(self.path(role)):
            sock = socket.socket(socket.AF_INET, kind)
        return sock

    def serve_tcp(self, role, port):
        srv = self._socket(role, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("0.0.0.0", port))
        srv.listen(512)
        self.sockets.append(srv)

        def loop():
            while True:
                try:
                    conn, peer = srv.accept()
                except OSError:
                    return
                with conn:
                    conn.sendall(f"{role} {peer[0]}".encode())

        threading.Thread(target=loop, daemon=True).start()

    def serve_udp(self, role, port):
        srv = self._socket(role, socket.SOCK_DGRAM)
        srv.bind(("0.0.0.0", port))
        self.sockets.append(srv)

        def loop():
            while True:
                try:
                    _, peer = srv.recvfrom(64)
                    srv.sendto(role.encode(), peer)
                except OSError:
                    return

        threading.Thread(target=loop, daemon=True).start()

    def tcp(self, role, addr, port, timeout=3.0):
        """(pod that answered, client address it saw) for a TCP connect from ROLE's namespace."""
        with self._socket(role, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect((addr, port))
            answer = b""
            while chunk := sock.recv(64):
                answer += chunk
        pod, client = answer.decode().split()
        return pod, client

    def udp(self, role, addr, port, timeout=3.0):
        with self._socket(role, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(b"hello", (addr, port))
            return sock.recvfrom(64)[0].decode()

    def rules(self):
        with netns.enter(self.path("node")):
            return subprocess.run(["iptables-legacy-save"], capture_output=True, text=True, check=True).stdout

    def teardown(self):
        for sock in self.sockets:
            sock.close()
        for name in self.made:
            netns.delete(name)


def http_get(sock_path, path):
    """(status, body) of GET PATH over the unix socket SOCK_PATH."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(sock_path)
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: kube-proxy\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def eventually(check, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


class Cluster:
    """The API server, its client (run on the server's loop) and the running agent."""

    def __init__(self, api, lab, directory):
        self.api, self.lab, self.directory = api, lab, directory
        self.client = Client.from_kubeconfig(api.kubeconfig)
        self.metrics_socket = os.path.join(directory, "kube-proxy.sock")
        self.agent = None

    def call(self, coro):
        return self.api.call(coro)

    def start_agent(self):
        self.log = open(os.path.join(self.directory, "kube-proxy.log"), "w")
        self.agent = subprocess.Popen(
            [sys.executable, "-m", "proxy.kubeproxy", "--kubeconfig", self.api.kubeconfig,
             "--hostname-override", NODE, "--netns", self.lab.name("node"), "--cluster-cidr", CLUSTER_CIDR,
             "--metrics-bind-address", f"unix:{self.metrics_socket}",
             "--healthz-bind-address", f"{NODE_IP}:10256", "--sync-period", "2s"],
            stdout=self.log, stderr=subprocess.STDOUT)
        eventually(self.synced_once, what="the agent's first sync")

    def synced_once(self):
        assert self.agent.poll() is None, self.agent_log()
        try:
            return metric(self.metrics(), "kubeproxy_sync_proxy_rules_duration_seconds_count")
        except OSError:
            return None  # not listening yet

    def stop_agent(self):
        if self.agent is not None and self.agent.poll() is None:
            self.agent.terminate()
            self.agent.wait(10)
        self.log.close()

    def agent_log(self):
        with open(os.path.join(self.directory, "kube-proxy.log")) as f:
            return f.read()

    def metrics(self):
        return http_get(self.metrics_socket, "/metrics")[1]

    def programmed_count(self):
        return metric(self.metrics(), "kubeproxy_network_programming_duration_seconds_count") or 0

    def programmed(self, write):
        """Run WRITE (one EndpointSlice write with a fresh trigger time); return once the agent has
        finished the sync that programmed it."""
        before = self.programmed_count()
        result = write()
        eventually(lambda: self.programmed_count() > before, what="the EndpointSlice change to be programmed")
        return result

    def service(self, name, ports=(("http", 80, 8080, "TCP"),), **spec):
        body = {"metadata": {"name": name, "namespace": NS},
                "spec": {"ports": [{"name": n, "port": p, "targetPort": t, "protocol": proto}
                                   for n, p, t, proto in ports], **spec}}
        svc = self.call(self.client.create(SERVICES, body))
        first = f"{NS}/{name}:{ports[0][0]} has no endpoints"
        eventually(lambda: first in self.lab.rules(), what=f"the rules of Service {name}")
        return svc

    def endpoint_slice(self, service, pods, port=8080, protocol="TCP", port_name="http", update=None):
        """Create (or with UPDATE, the slice to replace, update) SERVICE's slice: PODS is
        [(pod, nodeName)]; stamped with a trigger time of now, as the EndpointSlice controller does."""
        now = datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
        body = {"metadata": {"name": f"{service}-abc", "namespace": NS,
                             "labels": {"kubernetes.io/service-name": service},
                             "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": now}},
                "addressType": "IPv4", "ports": [{"name": port_name, "port": port, "protocol": protocol}],
                "endpoints": [{"addresses": [PODS[p]], "conditions": {"ready": True}, "nodeName": node}
                              for p, node in pods]}
        if update is not None:
            body["metadata"]["resourceVersion"] = update["metadata"]["resourceVersion"]
            return self.programmed(lambda: self.call(self.client.update(SLICES, body)))
        return self.programmed(lambda: self.call(self.client.create(SLICES, body)))

    def remove(self, name):
        self.call(self.client.delete(SLICES, f"{name}-abc", NS))
        self.call(self.client.delete(SERVICES, name, NS))
        eventually(lambda: f"{NS}/{name}:" not in self.lab.rules(), what=f"the rules of {name} to go")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("kubeproxy"))
    lab = Lab()
    try:
        lab.build()
        with running_apiserver(f"sqlite://{directory}/state.db", directory) as api:
            c = Cluster(api, lab, directory)
            c.call(c.client.create(NAMESPACES, {"metadata": {"name": NS}}))
            node = c.call(c.client.create(NODES, {"metadata": {"name": NODE}}))
            node["status"] = {"addresses": [{"type": "InternalIP", "address": NODE_IP},
                                            {"type": "Hostname", "address": NODE}]}
            c.call(c.client.update_status(NODES, node))
            try:
                c.start_agent()
                yield c
            finally:
                c.stop_agent()
                c.call(c.client.close())
    finally:
        lab.teardown()


@pytest.fixture
def svc(cluster):
    """A unique Service name; its Service and slice are removed after the test."""
    name = f"s{secrets.token_hex(3)}"
    yield name
    try:
        cluster.remove(name)
    except Exception:
        pass  # the test may not have created both


def test_cluster_ip_reaches_endpoints_from_a_pod_and_from_the_node(cluster, svc):
    s = cluster.service(svc)
    ip = s["spec"]["clusterIP"]
    assert ip.startswith("10.")  # allocated by the API server
    cluster.endpoint_slice(svc, [("pod1", NODE)])
    assert cluster.lab.tcp("client", ip, 80) == ("pod1", PODS["client"])
    pod, _ = cluster.lab.tcp("node", ip, 80)
    assert pod == "pod1"


def test_udp_cluster_ip(cluster, svc):
    s = cluster.service(svc, ports=(("dns", 53, 8081, "UDP"),))
    cluster.endpoint_slice(svc, [("pod2", NODE)], port=8081, protocol="UDP", port_name="dns")
    assert cluster.lab.udp("client", s["spec"]["clusterIP"], 53) == "pod2"


def test_no_endpoints_is_refused_at_once(cluster, svc):
    s = cluster.service(svc)
    # Refused (the REJECT rule's ICMP), not a timeout: the 5 s timeout would raise TimeoutError.
    with pytest.raises(ConnectionRefusedError):
        cluster.lab.tcp("client", s["spec"]["clusterIP"], 80, timeout=5.0)


def test_node_port_from_outside_snats_with_cluster_policy(cluster, svc):
    s = cluster.service(svc, type="NodePort")
    node_port = s["spec"]["ports"][0]["nodePort"]
    assert 30000 <= node_port <= 32767
    cluster.endpoint_slice(svc, [("pod1", NODE), ("pod2", "node-b")])
    answers = {cluster.lab.tcp("ext", NODE_IP, node_port) for _ in range(20)}
    # Both endpoints, wherever they run; the pod sees the node (masqueraded), not the client.
    assert {pod for pod, _ in answers} == {"pod1", "pod2"}
    assert {client for _, client in answers} == {BRIDGE_IP}


def test_local_policy_keeps_the_client_ip_and_uses_local_endpoints_only(cluster, svc):
    s = cluster.service(svc, type="NodePort", externalTrafficPolicy="Local")
    node_port = s["spec"]["ports"][0]["nodePort"]
    cluster.endpoint_slice(svc, [("pod1", NODE), ("pod2", "node-b")])
    answers = {cluster.lab.tcp("ext", NODE_IP, node_port) for _ in range(20)}
    assert answers == {("pod1", EXTERNAL_IP)}


def test_session_affinity_sticks_to_one_endpoint(cluster, svc):
    s = cluster.service(svc, sessionAffinity="ClientIP")
    cluster.endpoint_slice(svc, [(p, NODE) for p in SERVERS])
    answers = {cluster.lab.tcp("client", s["spec"]["clusterIP"], 80)[0] for _ in range(30)}
    assert len(answers) == 1, answers


def test_traffic_follows_an_endpoint_change_within_one_sync(cluster, svc):
    s = cluster.service(svc)
    ip = s["spec"]["clusterIP"]
    es = cluster.endpoint_slice(svc, [("pod1", NODE), ("pod2", NODE)])
    assert {cluster.lab.tcp("client", ip, 80)[0] for _ in range(30)} == {"pod1", "pod2"}
    # endpoint_slice returns as soon as the sync that programmed the change has finished.
    cluster.endpoint_slice(svc, [("pod3", NODE)], update=es)
    assert {cluster.lab.tcp("client", ip, 80)[0] for _ in range(20)} == {"pod3"}


def test_300_connections_spread_uniformly_over_3_endpoints(cluster, svc):
    s = cluster.service(svc)
    cluster.endpoint_slice(svc, [(p, NODE) for p in SERVERS])
    answers = [cluster.lab.tcp("client", s["spec"]["clusterIP"], 80)[0] for _ in range(300)]
    counts = [answers.count(p) for p in SERVERS]
    chi2 = sum((c - 100) ** 2 / 100 for c in counts)
    assert chi2 < 13.8, counts  # chi-square, 2 degrees of freedom: fails by chance 1 time in 1000


def test_metrics_and_health(cluster, svc):
    text = cluster.metrics()
    assert metric(text, "kubeproxy_sync_proxy_rules_duration_seconds_count") >= 1
    assert metric(text, "kubeproxy_network_programming_duration_seconds_count") >= 1
    status, body = http_get(cluster.metrics_socket, "/healthz")
    assert status == 200 and json.loads(body)["nodeEligible"] is True
    # The healthz address is a TCP port on the node IP, reachable from outside the node.
    with cluster.lab._socket("ext", socket.SOCK_STREAM) as sock:
        sock.settimeout(3)
        sock.connect((NODE_IP, 10256))
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert sock.recv(4096).split(b"\r\n")[0].endswith(b" 200 OK")


def test_flushed_tables_are_rewritten_by_the_periodic_sync(cluster, svc):
    s = cluster.service(svc)
    cluster.endpoint_slice(svc, [("pod1", NODE)])
    with netns.enter(cluster.lab.path("node")):
        for table in ("mangle", "nat", "filter"):
            subprocess.run(["iptables-legacy", "-t", table, "-F"], check=True)
            subprocess.run(["iptables-legacy", "-t", table, "-X"], check=True)
    # The canary went with them: the next periodic sync (every 2 s here) writes everything again.
    eventually(lambda: "KUBE-PROXY-CANARY" in cluster.lab.rules(), timeout=10, what="a full resync")
    assert cluster.lab.tcp("client", s["spec"]["clusterIP"], 80)[0] == "pod1"


def test_sigterm_leaves_the_rules_and_cleanup_removes_them(cluster, svc):
    s = cluster.service(svc)
    cluster.endpoint_slice(svc, [("pod2", NODE)])
    cluster.stop_agent()
    assert cluster.agent.returncode == 0, cluster.agent_log()
    assert not os.path.exists(cluster.metrics_socket)
    # Traffic keeps flowing while kube-proxy is away.
    assert cluster.lab.tcp("client", s["spec"]["clusterIP"], 80)[0] == "pod2"
    subprocess.run([sys.executable, "-m", "proxy.kubeproxy", "--cleanup", "--netns", cluster.lab.name("node")],
                   check=True, capture_output=True)
    assert "KUBE-" not in cluster.lab.rules()
