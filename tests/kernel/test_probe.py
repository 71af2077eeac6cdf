"""Probes between two namespaces joined by a veth pair, with servers opened inside the target.

Layout: a (10.98.0.1/24) <-veth-> b (10.98.0.2/24). In a, 10.97.0.0/24 is routed via b, which
does not forward (the namespace default) and so silently drops it: the "timed out" case.
Nothing routes 10.200.0.0/16 in a: the "no route" case.
"""

import secrets
import socket
import threading
import time

import pytest

from netsim import netns
from netsim.probe import probe, probe_many

pytestmark = pytest.mark.kernel

A, B = "10.98.0.1", "10.98.0.2"
BLACKHOLED, UNROUTED = "10.97.0.5", "10.200.0.1"
TCP_PORT, UDP_PORT, CLOSED_PORT = 8080, 8081, 8099


def _serve_tcp(listener, stop):
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(1.0)
            try:
                if conn.recv(1024):
                    conn.sendall(b"hello from b\nsecond line\n")
            except OSError:
                pass


def _serve_udp(sock, stop):
    while not stop.is_set():
        try:
            data, peer = sock.recvfrom(1024)
        except OSError:
            return
        if peer is None:  # shutdown() by the fixture
            return
        sock.sendto(b"b-host\n" if data == b"hostname\n" else data, peer)


@pytest.fixture
def pair():
    from pyroute2 import IPRoute
    tag = "t" + secrets.token_hex(3)
    names = [f"{tag}a", f"{tag}b"]
    made, sockets, threads, stop = [], [], [], threading.Event()
    try:
        for name in names:
            netns.create(name)
            made.append(name)
        b_fd = open(netns.netns_path(names[1]))
        with b_fd, netns.enter(names[0]), IPRoute() as ipr:
            ipr.link("add", ifname="veth-a", kind="veth", peer={"ifname": "veth-b", "net_ns_fd": b_fd.fileno()})
            idx = ipr.link_lookup(ifname="veth-a")[0]
            ipr.addr("add", index=idx, address=A, prefixlen=24)
            ipr.link("set", index=idx, state="up")
            ipr.route("add", dst="10.97.0.0/24", gateway=B)
        with netns.enter(names[1]), IPRoute() as ipr:
            idx = ipr.link_lookup(ifname="veth-b")[0]
            ipr.addr("add", index=idx, address=B, prefixlen=24)
            ipr.link("set", index=idx, state="up")
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sockets += [listener, udp]
        listener.bind((B, TCP_PORT))
        listener.listen(64)
        udp.bind((B, UDP_PORT))
        for target, sock in ((_serve_tcp, listener), (_serve_udp, udp)):
            t = threading.Thread(target=target, args=(sock, stop), daemon=True)
            t.start()
            threads.append(t)
        yield names[0]
    finally:
        stop.set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for t in threads:
            t.join(timeout=2)
        for name in reversed(made):
            netns.delete(name)


def test_tcp(pair):
    ok = probe(pair, B, TCP_PORT, "tcp")
    assert (ok.reachable, ok.detail, ok.reply) == (True, "connected", None)
    assert 0 < ok.rtt_ms < 1000
    talk = probe(pair, B, TCP_PORT, "tcp", payload=b"hi\n")
    assert talk.reply == "hello from b"
    refused = probe(pair, B, CLOSED_PORT, "tcp")
    assert (refused.reachable, refused.detail, refused.rtt_ms) == (False, "refused", None)
    dropped = probe(pair, BLACKHOLED, TCP_PORT, "tcp", timeout=0.3)
    assert (dropped.reachable, dropped.detail) == (False, "timed out")
    assert probe(pair, UNROUTED, TCP_PORT, "tcp").detail == "no route"


def test_udp(pair):
    ok = probe(pair, B, UDP_PORT, "udp")
    assert (ok.reachable, ok.reply) == (True, "b-host")
    assert probe(pair, B, UDP_PORT, "udp", payload=b"ping").reply == "ping"
    refused = probe(pair, B, CLOSED_PORT, "udp")
    assert (refused.reachable, refused.detail) == (False, "refused")
    dropped = probe(pair, BLACKHOLED, UDP_PORT, "udp", timeout=0.3)
    assert (dropped.reachable, dropped.detail) == (False, "timed out")


def test_icmp(pair):
    ok = probe(pair, B, proto="icmp")
    assert (ok.reachable, ok.detail, ok.port) == (True, "echo reply", None)
    assert 0 < ok.rtt_ms < 1000
    dropped = probe(pair, BLACKHOLED, proto="icmp", timeout=0.3)
    assert (dropped.reachable, dropped.detail) == (False, "timed out")
    assert probe(pair, UNROUTED, proto="icmp").detail == "no route"


def test_probe_many_keeps_order_and_runs_in_parallel(pair):
    probes = [(pair, B, TCP_PORT, "tcp"), (pair, BLACKHOLED, TCP_PORT, "tcp", 0.5),
              {"src_netns": pair, "dst": B, "port": UDP_PORT, "proto": "udp"},
              (pair, BLACKHOLED, UDP_PORT, "udp", 0.5), (pair, B, None, "icmp"),
              (pair, BLACKHOLED, None, "icmp", 0.5)] * 4
    start = time.monotonic()
    results = probe_many(probes, parallel=24)
    elapsed = time.monotonic() - start
    assert [r.reachable for r in results] == [True, False] * 12
    assert [r.proto for r in results] == ["tcp", "tcp", "udp", "udp", "icmp", "icmp"] * 4
    assert elapsed < 4.0  # twelve 0.5 s timeouts: 6 s one after another, ~0.5 s overlapped


def test_missing_namespace_is_named(pair):
    with pytest.raises(OSError, match="/run/netns/nosuch-ns"):
        probe("nosuch-ns", B, TCP_PORT)
