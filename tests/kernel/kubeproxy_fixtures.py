"""A node with pods, an external client, an API server and a live kube-proxy, for kernel tests.

One API server (SQLite) and one `python -m proxy.kubeproxy` process serve each test module
that uses the `cluster` fixture. The node is a throwaway namespace with a bridge and four pod
namespaces (a client pod and three pods whose TCP and UDP servers answer with their name and
the client address they saw); the pods' bridge ports are in hairpin mode, as netsim's bridge
plugin sets them (`hairpinMode: true` in the conflist `netsim up` writes). An "external"
namespace sits on the node's network, as the outside world, and routes the load balancer and
external IP range (EXTERNAL_RANGE) to the node, as MetalLB in L2 mode or a cloud would.
Services (ClusterIP and NodePort allocated by the API server) and EndpointSlices are created
through the client, with no controllers: helpers wait for what the agent reports (the
programming latency count of the slice they wrote, or the rules of the Service) so tests can
assert what a user sees right after.
"""

import contextlib
import datetime
import os
import secrets
import socket
import subprocess
import sys
import threading
import time

import pytest

from cluster.api.errors import APIError
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
# Load balancer and external IPs: not on any link, routed by the outside world to the node.
EXTERNAL_RANGE = "192.0.2.0/24"
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
        self.made, self.sockets, self.threads = [], [], []

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
            # Hairpin, as the bridge plugin sets it with hairpinMode: a pod reaching itself through
            # its Service is DNATed back out of the bridge port it came in on.
            commands += [f"link add v{role} type veth peer name eth0 netns {self.name(role)}",
                         f"link set v{role} master cni0", f"link set v{role} type bridge_slave hairpin on",
                         f"link set v{role} up"]
        ip_batch(node, commands)
        ip_batch(ext, ["link set lo up", f"addr add {EXTERNAL_IP}/24 dev eth0", "link set eth0 up",
                       f"route add {EXTERNAL_RANGE} via {NODE_IP}"])
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

        self._start(loop)

    def serve_udp(self, role, port):
        srv = self._socket(role, socket.SOCK_DGRAM)
        srv.bind(("0.0.0.0", port))
        self.sockets.append(srv)

        def loop():
            while True:
                try:
                    _, peer = srv.recvfrom(64)
                    if peer is None:  # shut down by teardown
                        return
                    srv.sendto(role.encode(), peer)
                except OSError:
                    return

        self._start(loop)

    def _start(self, loop):
        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        self.threads.append(thread)

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
        # Stop the servers before closing their sockets. A thread left blocked in accept() or
        # recvfrom() on a closed descriptor has the call restarted by any SA_RESTART signal on
        # the same number, which the next module's lab reuses: it then answers that lab's
        # connections with its own pod's name (seen as Local policies reaching remote pods).
        for sock in self.sockets:
            with contextlib.suppress(OSError):  # ENOTCONN for UDP, whose reader still wakes
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self.threads:
            thread.join(5)
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
        # Open for the agent's whole life; stop_agent closes it.
        self.log = open(os.path.join(self.directory, "kube-proxy.log"), "w")  # noqa: SIM115
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
        [(pod, nodeName)] or [(pod, nodeName, conditions)] (ready by default); stamped with a
        trigger time of now, as the EndpointSlice controller does."""
        now = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
        body = {"metadata": {"name": f"{service}-abc", "namespace": NS,
                             "labels": {"kubernetes.io/service-name": service},
                             "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": now}},
                "addressType": "IPv4", "ports": [{"name": port_name, "port": port, "protocol": protocol}],
                "endpoints": [{"addresses": [PODS[p]], "conditions": rest[0] if rest else {"ready": True},
                               "nodeName": node} for p, node, *rest in pods]}
        if update is not None:
            body["metadata"]["resourceVersion"] = update["metadata"]["resourceVersion"]
            return self.programmed(lambda: self.call(self.client.update(SLICES, body)))
        return self.programmed(lambda: self.call(self.client.create(SLICES, body)))

    def rewritten(self, write, rule):
        """Run WRITE (a Service change) and return its result once the node's rules hold RULE
        (a substring only the changed Service's rules contain)."""
        result = write()
        eventually(lambda: rule in self.lab.rules(), what=f"a rule with {rule!r}")
        return result

    def remove(self, name):
        for resource, obj in ((SLICES, f"{name}-abc"), (SERVICES, name)):
            try:
                self.call(self.client.delete(resource, obj, NS))
            except APIError as e:
                if e.code != 404:  # the test may not have created both
                    raise
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
    cluster.remove(name)
