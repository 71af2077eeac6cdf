"""The kube-proxy agent on the wire: what tcpdump on a pod's or the outside world's eth0 shows.

The node, pods, external client, API server and agent come from
`tests.kernel.kubeproxy_fixtures` (one agent per module). Packets are captured with AF_PACKET
sockets and crafted with scapy, both opened inside the namespace they belong to: a socket
stays bound to the namespace it was opened in, whereas scapy's own sockets look interfaces and
routes up in the namespace of the process, the host's. Here: the REJECT of a Service without
endpoints (ICMP port unreachable quoting the packet), DNAT and un-DNAT as the endpoint and the
client see them, NodePort masquerading with both external traffic policies, and a UDP flow
moving to a replaced endpoint because the agent deleted its stale conntrack entry, and an
SCTP INIT DNATed to its endpoint (this kernel has SCTP in netfilter but no SCTP sockets).
"""
# ruff: noqa: F811 (test arguments name the fixtures imported below)

import contextlib
import random
import select
import socket
import time

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
from scapy.layers.l2 import Ether
from scapy.layers.sctp import SCTP, SCTPChunkInit

from netsim import netns
from tests.kernel.kubeproxy_fixtures import (  # noqa: F401 (cluster and svc are fixtures)
    BRIDGE_IP,
    EXTERNAL_IP,
    NODE,
    NODE_IP,
    NS,
    PODS,
    cluster,
    svc,
)

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4  # sll_pkttype of a frame the interface sent
SNIFF = 1.0  # longest wait for a captured packet: a lost TCP SYN is only retried after 1 s


class Capture:
    """Frames on eth0 of ROLE's namespace from creation on, in both directions, as
    `tcpdump -i eth0` inside that namespace shows them."""

    def __init__(self, lab, role):
        with netns.enter(lab.path(role)):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self.sock.bind(("eth0", ETH_P_ALL))
        self.seen = []  # (direction, packet)

    def _read(self, timeout):
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return False
        frame, (ifname, _, pkttype, *_) = self.sock.recvfrom(65535)
        # Frames from before bind() may come from lo.
        if ifname == "eth0":
            self.seen.append(("out" if pkttype == PACKET_OUTGOING else "in", Ether(frame)))
        return True

    def first(self, direction, match, timeout=SNIFF):
        """The first packet going DIRECTION ("in" or "out") that MATCH accepts."""
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            for d, pkt in self.seen[checked:]:
                if d == direction and match(pkt):
                    return pkt
            checked = len(self.seen)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {direction}bound packet matched within {timeout}s; saw:\n"
                                     + "\n".join(f"{d} {p.summary()}" for d, p in self.seen))
            self._read(left)

    def queued(self):
        """Every packet captured so far, without waiting for more."""
        while self._read(0):
            pass
        return [pkt for _, pkt in self.seen]

    def close(self):
        self.sock.close()


@contextlib.contextmanager
def capturing(lab, *roles):
    captures = []
    try:
        for role in roles:
            captures.append(Capture(lab, role))
        yield captures
    finally:
        for c in captures:
            c.close()


def send_crafted(lab, role, packet):
    """Send the IP PACKET (scapy, header included) from ROLE's namespace; the namespace's own
    routing and ARP take it to its gateway."""
    with netns.enter(lab.path(role)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    with sock:
        sock.sendto(bytes(packet), (packet[IP].dst, 0))


def is_tcp(flags, **fields):
    def match(pkt):
        return (TCP in pkt and pkt[TCP].flags == flags
                and all(getattr(pkt[IP] if k in ("src", "dst") else pkt[TCP], k) == v for k, v in fields.items()))
    return match


def connect(lab, role, addr, port):
    """(local address, local port) of one TCP connection from ROLE to ADDR:PORT, read to its end."""
    with lab._socket(role, socket.SOCK_STREAM) as sock:
        sock.settimeout(3)
        sock.connect((addr, port))
        local = sock.getsockname()
        while sock.recv(64):
            pass
    return local


@pytest.mark.parametrize("proto", ["TCP", "UDP"])
def test_no_endpoints_answers_the_first_packet_with_icmp_port_unreachable(cluster, svc, proto):
    ip = cluster.service(svc, ports=(("p", 80, 8080, proto),))["spec"]["clusterIP"]
    # What iptables-save shows for the renderer's bare "-j REJECT": the default reject-with.
    rule = next(line for line in cluster.lab.rules().splitlines() if f'"{NS}/{svc}:p has no endpoints"' in line)
    assert rule.startswith("-A KUBE-SERVICES ") and f"-d {ip}/32 " in rule
    assert rule.endswith("-j REJECT --reject-with icmp-port-unreachable"), rule

    sport = random.randint(20000, 60000)
    layer4 = TCP(sport=sport, dport=80, flags="S", seq=0x1234567) if proto == "TCP" else UDP(sport=sport, dport=80)
    with capturing(cluster.lab, "client") as (at_client,):
        send_crafted(cluster.lab, "client", IP(src=PODS["client"], dst=ip) / layer4 / b"probe")
        # At once: within SNIFF, before a TCP client would even retry its SYN.
        reply = at_client.first("in", lambda p: ICMP in p)
    assert (reply[ICMP].type, reply[ICMP].code) == (3, 3)  # destination unreachable, port unreachable
    # The node answers for the Service (from its address towards the pod), not the Service IP.
    assert (reply[IP].src, reply[IP].dst) == (BRIDGE_IP, PODS["client"])
    # It quotes the packet as sent: no DNAT happened.
    assert (reply[IPerror].src, reply[IPerror].dst) == (PODS["client"], ip)
    if proto == "TCP":
        assert (reply[TCPerror].sport, reply[TCPerror].dport, reply[TCPerror].seq) == (sport, 80, 0x1234567)
    else:
        assert (reply[UDPerror].sport, reply[UDPerror].dport) == (sport, 80)


def test_cluster_ip_is_dnated_to_the_endpoint_and_back_without_masquerade(cluster, svc):
    ip = cluster.service(svc)["spec"]["clusterIP"]
    cluster.endpoint_slice(svc, [("pod1", NODE)])
    client, pod1 = PODS["client"], PODS["pod1"]
    with capturing(cluster.lab, "client", "pod1") as (at_client, at_pod):
        _, sport = connect(cluster.lab, "client", ip, 80)
        # The client addresses the Service...
        at_client.first("out", is_tcp("S", src=client, dst=ip, sport=sport, dport=80))
        # ...the endpoint receives it addressed to itself at the targetPort, from the pod as it is,
        # and answers the pod directly...
        at_pod.first("in", is_tcp("S", src=client, dst=pod1, sport=sport, dport=8080))
        at_pod.first("out", is_tcp("SA", src=pod1, dst=client, sport=8080, dport=sport))
        # ...and the node rewrites the answer back to the Service before the client sees it.
        at_client.first("in", is_tcp("SA", src=ip, dst=client, sport=80, dport=sport))
        assert not [p for p in at_client.queued() if IP in p and p[IP].src == pod1], \
            "the endpoint's own address reached the client"


@pytest.mark.parametrize("policy", ["Cluster", "Local"])
def test_node_port_source_at_the_endpoint_follows_the_external_traffic_policy(cluster, svc, policy):
    s = cluster.service(svc, type="NodePort", externalTrafficPolicy=policy)
    node_port = s["spec"]["ports"][0]["nodePort"]
    cluster.endpoint_slice(svc, [("pod2", NODE)])
    with capturing(cluster.lab, "ext", "pod2") as (at_ext, at_pod):
        _, sport = connect(cluster.lab, "ext", NODE_IP, node_port)
        syn = at_pod.first("in", is_tcp("S", dst=PODS["pod2"], dport=8080))
        at_ext.first("in", is_tcp("SA", src=NODE_IP, dst=EXTERNAL_IP, sport=node_port, dport=sport))
    if policy == "Cluster":
        # KUBE-EXT- marked it 0x4000 and KUBE-POSTROUTING masqueraded it to the node's address
        # on the way to the pod: the endpoint cannot tell who the client is.
        assert syn[IP].src == BRIDGE_IP
    else:
        assert (syn[IP].src, syn[TCP].sport) == (EXTERNAL_IP, sport)


def test_udp_flow_follows_a_replaced_endpoint_at_once(cluster, svc):
    ip = cluster.service(svc, ports=(("dns", 53, 8081, "UDP"),))["spec"]["clusterIP"]
    es = cluster.endpoint_slice(svc, [("pod1", NODE)], port=8081, protocol="UDP", port_name="dns")
    with cluster.lab._socket("client", socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.bind(("0.0.0.0", 0))
        sport = sock.getsockname()[1]
        sock.sendto(b"one", (ip, 53))
        assert sock.recvfrom(64)[0] == b"pod1"
        # The conntrack entry of this flow still says pod1 (UDP entries live 30 s and more);
        # only its deletion by the agent lets the next datagram be DNATed anew.
        cluster.endpoint_slice(svc, [("pod3", NODE)], port=8081, protocol="UDP", port_name="dns", update=es)
        with capturing(cluster.lab, "pod1", "pod3") as (at_old, at_new):
            sock.sendto(b"two", (ip, 53))
            assert sock.recvfrom(64)[0] == b"pod3"
            dgram = at_new.first("in", lambda p: UDP in p and p[UDP].dport == 8081)
            assert (dgram[IP].src, dgram[UDP].sport, dgram[IP].dst) == (PODS["client"], sport, PODS["pod3"])
            assert not [p for p in at_old.queued() if UDP in p], "the replaced endpoint still got the flow"


def test_sctp_cluster_ip_is_dnated_to_the_endpoint(cluster, svc):
    # This kernel has no SCTP sockets (socket(IPPROTO_SCTP) is EPROTONOSUPPORT), but netfilter's
    # sctp match and SCTP connection tracking are there: a crafted INIT shows the Service's
    # rules at work, as far as the kernel allows.
    ip = cluster.service(svc, ports=(("diameter", 3868, 3868, "SCTP"),))["spec"]["clusterIP"]
    cluster.endpoint_slice(svc, [("pod3", NODE)], port=3868, protocol="SCTP", port_name="diameter")
    rule = next(r for r in cluster.lab.rules().splitlines() if f'"{NS}/{svc}:diameter cluster IP"' in r)
    assert rule.startswith(f"-A KUBE-SERVICES -d {ip}/32 -p sctp ") and "-m sctp --dport 3868 " in rule
    sport = random.randint(20000, 60000)
    init = IP(src=PODS["client"], dst=ip) / SCTP(sport=sport, dport=3868, tag=0) / \
        SCTPChunkInit(init_tag=0x1234, a_rwnd=65535, n_out_streams=1, n_in_streams=1, init_tsn=1)
    with capturing(cluster.lab, "pod3") as (at_pod,):
        send_crafted(cluster.lab, "client", init)
        got = at_pod.first("in", lambda p: SCTP in p)
    assert (got[IP].src, got[IP].dst, got[SCTP].sport, got[SCTP].dport) == (PODS["client"], PODS["pod3"], sport, 3868)
    assert got[SCTPChunkInit].init_tag == 0x1234
