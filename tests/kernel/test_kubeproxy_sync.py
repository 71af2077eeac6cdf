"""kube-proxy's syncer in real namespaces: a rendered Service carries TCP from a client to a pod.

A throwaway "node" namespace routes between a client namespace and two pod namespaces (one
veth each), each pod running a real TCP server that answers with its name. The node's
netfilter is programmed only through render() + Syncer.sync(), as the agent will do.
"""

import secrets
import socket
import subprocess
import threading

import pytest

from netsim import netns
from proxy.kubeproxy.model import Node
from proxy.kubeproxy.render import ProxierConfig, render
from proxy.kubeproxy.sync import Syncer, parse_save

VIP = "10.96.0.10"
CONFIG = ProxierConfig(cluster_cidr="10.244.0.0/16")
LINKS = {"client": ("10.244.3.1", "10.244.3.2"), "pod1": ("10.244.1.1", "10.244.1.2"),
         "pod2": ("10.244.2.1", "10.244.2.2")}


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True)


class Lab:
    def __init__(self):
        self.tag = f"t{secrets.token_hex(3)}"
        self.names = []
        self.servers = []

    def ns(self, role):
        return netns.netns_path(f"{self.tag}{role}")

    def build(self):
        for role in ("node", *LINKS):
            netns.create(f"{self.tag}{role}")
            self.names.append(f"{self.tag}{role}")
        node = f"{self.tag}node"
        ip("-n", node, "link", "set", "lo", "up")
        # A real node has a default route (its uplink): without one, the Service IP is unroutable
        # and the kernel answers "network unreachable" before the REJECT rule is reached.
        ip("-n", node, "link", "add", "uplink", "type", "veth", "peer", "name", "uplink-peer")
        ip("-n", node, "link", "set", "uplink-peer", "up")
        ip("-n", node, "link", "set", "uplink", "up")
        ip("-n", node, "route", "add", "default", "dev", "uplink")
        for role, (node_ip, peer_ip) in LINKS.items():
            other = f"{self.tag}{role}"
            ip("-n", node, "link", "add", f"v{role}", "type", "veth", "peer", "name", "eth0", "netns", other)
            ip("-n", node, "addr", "add", f"{node_ip}/24", "dev", f"v{role}")
            ip("-n", node, "link", "set", f"v{role}", "up")
            ip("-n", other, "addr", "add", f"{peer_ip}/24", "dev", "eth0")
            ip("-n", other, "link", "set", "eth0", "up")
            ip("-n", other, "link", "set", "lo", "up")
            ip("-n", other, "route", "add", "default", "via", node_ip)
        with netns.enter(self.ns("node")), open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write("1")
        for role in ("pod1", "pod2"):
            self.serve(role, LINKS[role][1], 8080)

    def serve(self, role, addr, port):
        with netns.enter(self.ns(role)):
            srv = socket.create_server((addr, port))
        self.servers.append(srv)

        def loop():
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                with conn:
                    conn.sendall(role.encode())

        threading.Thread(target=loop, daemon=True).start()

    def connect(self, role, addr, port, timeout=2.0):
        """The name of the pod that answered a TCP connect from ROLE's namespace."""
        with netns.enter(self.ns(role)):
            sock = socket.socket()
        with sock:
            sock.settimeout(timeout)
            sock.connect((addr, port))
            return sock.recv(64).decode()

    def teardown(self):
        for srv in self.servers:
            srv.close()
        for name in self.names:
            netns.delete(name)


@pytest.fixture
def lab():
    lab = Lab()
    try:
        lab.build()
        yield lab
    finally:
        lab.teardown()


def service(node_port=None):
    p = {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}
    spec = {"type": "ClusterIP", "clusterIP": VIP, "ports": [p]}
    if node_port:
        p["nodePort"] = node_port
        spec["type"] = "NodePort"
    return {"metadata": {"namespace": "default", "name": "web"}, "spec": spec}


def endpoint_slice(*pods):
    return {"metadata": {"namespace": "default", "name": "web-x", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [LINKS[p][1]], "conditions": {"ready": True}, "nodeName": "node"}
                          for p in pods]}


@pytest.fixture
def syncer(lab):
    s = Syncer(lab.ns("node"))
    yield s
    s.flush()


NODE = Node("node", "10.244.3.1")


def test_cluster_ip_reaches_the_endpoint_and_follows_endpoint_changes(lab, syncer):
    first = render([service()], [endpoint_slice("pod1")], NODE, CONFIG)
    assert syncer.sync(first).kind == "full"
    assert lab.connect("client", VIP, 80) == "pod1"

    second = render([service()], [endpoint_slice("pod2")], NODE, CONFIG, previous=first)
    result = syncer.sync(second)
    assert result.kind == "partial" and result.chains_deleted == 1
    assert lab.connect("client", VIP, 80) == "pod2"

    # Unchanged inputs: nothing to write, no iptables-restore at all.
    third = render([service()], [endpoint_slice("pod2")], NODE, CONFIG, previous=second)
    assert syncer.sync(third).kind == "none"


def test_no_endpoints_rejects_at_once(lab, syncer):
    syncer.sync(render([service()], [], NODE, CONFIG))
    with pytest.raises(ConnectionRefusedError):
        lab.connect("client", VIP, 80, timeout=1.0)


def test_node_port_on_localhost_from_the_node(lab, syncer):
    syncer.sync(render([service(node_port=30080)], [endpoint_slice("pod1")], NODE, CONFIG))
    assert lab.connect("node", "127.0.0.1", 30080) == "pod1"
    assert lab.connect("client", LINKS["client"][0], 30080) == "pod1"


def test_spread_over_endpoints(lab, syncer):
    syncer.sync(render([service()], [endpoint_slice("pod1", "pod2")], NODE, CONFIG))
    answers = [lab.connect("client", VIP, 80) for _ in range(60)]
    assert 10 <= answers.count("pod1") <= 50, answers


def test_flushed_tables_are_noticed_and_rewritten(lab, syncer):
    first = render([service()], [endpoint_slice("pod1")], NODE, CONFIG)
    syncer.sync(first)
    assert syncer.canary_present()
    with netns.enter(lab.ns("node")):
        for table in ("mangle", "nat", "filter"):
            subprocess.run(["iptables-legacy", "-t", table, "-F"], check=True)
            subprocess.run(["iptables-legacy", "-t", table, "-X"], check=True)
    assert not syncer.canary_present()
    second = render([service()], [endpoint_slice("pod1")], NODE, CONFIG, previous=first)
    assert syncer.sync(second, full=True).kind == "full"
    assert lab.connect("client", VIP, 80) == "pod1"


def test_flush_removes_every_chain_and_jump(lab):
    s = Syncer(lab.ns("node"))
    s.sync(render([service(node_port=30080)], [endpoint_slice("pod1")], NODE, CONFIG))
    s.flush()
    tables = parse_save(s.save())
    for table in tables.values():
        assert not [c for c in table["chains"] if c.startswith("KUBE-")]
        assert not [r for r in table["rules"] if "KUBE-" in r]
    with netns.enter(lab.ns("node")), open("/proc/sys/net/ipv4/conf/all/route_localnet") as f:
        assert f.read().strip() == "0"
    with pytest.raises(TimeoutError):  # no DNAT any more: the SYN leaves by the uplink, unanswered
        lab.connect("client", VIP, 80, timeout=0.5)


def test_udp_endpoint_change_flushes_stale_conntrack_entries(lab, syncer):
    def udp_service():
        svc = service()
        svc["spec"]["ports"][0]["protocol"] = "UDP"
        return svc

    def udp_slice(pod):
        es = endpoint_slice(pod)
        es["ports"][0]["protocol"] = "UDP"
        return es

    def entries():
        with netns.enter(lab.ns("node")):
            out = subprocess.run(["conntrack", "-L", "-p", "udp", "--orig-dst", VIP], capture_output=True, text=True)
        return [line for line in out.stdout.splitlines() if VIP in line]

    first = render([udp_service()], [udp_slice("pod1")], NODE, CONFIG)
    syncer.sync(first)
    with netns.enter(lab.ns("client")):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.sendto(b"ping", (VIP, 80))
    assert entries(), "the datagram should have created a conntrack entry to the Service IP"
    result = syncer.sync(render([udp_service()], [udp_slice("pod2")], NODE, CONFIG, previous=first))
    assert result.conntrack_flushes == 1
    assert entries() == []
