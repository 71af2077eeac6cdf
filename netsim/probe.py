"""Reachability probes from inside a network namespace: TCP connect, UDP request/reply, ICMP echo.

A probe opens its socket inside the source namespace (a socket stays in the namespace it was
created in, so the calling thread only visits the namespace for the `socket()` call) and
then talks to the destination through the real kernel path: routes, neighbours, bridges,
netfilter. The answer says not only whether the destination was reached but how it was
not: "refused" (a TCP RST, or for UDP the ICMP port unreachable that the kernel reports on
a connected socket), "timed out" (nothing came back: a DROP, a blackholing hop),
"no route", "host unreachable", "prohibited" (an ICMP reject from a firewall). These words
are what a reachability matrix prints in its cells.

`probe_many` runs probes in parallel threads and returns the results in order; it is what
a connectivity matrix (as Calico's conncheck does) is built on. Standard library only.
"""

import concurrent.futures
import dataclasses
import errno
import ipaddress
import os
import socket
import struct
import time

from netsim import netns

PROTOCOLS = ("tcp", "udp", "icmp")
# agnhost netexec's UDP server answers "hostname" with the pod's hostname; serve-hostname's
# UDP server answers any datagram with it.
DEFAULT_UDP_PAYLOAD = b"hostname\n"

_ERRNO_DETAIL = {
    errno.ECONNREFUSED: "refused",
    errno.ETIMEDOUT: "timed out",
    errno.ENETUNREACH: "no route",
    errno.EHOSTUNREACH: "host unreachable",
    errno.EACCES: "prohibited",
    errno.EPERM: "prohibited",
}
# ICMP destination unreachable codes (RFC 792, RFC 1812) as the same words.
_ICMP_UNREACH_DETAIL = {0: "no route", 1: "host unreachable", 3: "refused",
                        9: "prohibited", 10: "prohibited", 13: "prohibited"}

ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_ECHO_REQUEST = 8


@dataclasses.dataclass
class ProbeResult:
    """What one probe saw; `reply` is the first line the server sent back, if any."""
    src: str
    dst: str
    port: int | None
    proto: str
    reachable: bool
    rtt_ms: float | None
    detail: str
    reply: str | None = None

    def to_json(self):
        doc = dataclasses.asdict(self)
        if self.rtt_ms is not None:
            doc["rtt_ms"] = round(self.rtt_ms, 3)
        return doc


def _first_line(data):
    lines = data.decode(errors="replace").splitlines()
    return lines[0].strip() if lines else ""


def _errno_detail(err):
    return _ERRNO_DETAIL.get(err.errno, os.strerror(err.errno) if err.errno else str(err))


def _validate(src_netns, dst, port, proto, timeout):
    if proto not in PROTOCOLS:
        raise ValueError(f"probe proto: got {proto!r}; expected one of {', '.join(PROTOCOLS)}")
    try:
        address = ipaddress.ip_address(dst)
    except ValueError:
        raise ValueError(f"probe dst: got {dst!r}; expected an IP address such as 10.244.1.5") from None
    if proto != "icmp" and not (isinstance(port, int) and 0 < port < 65536):
        raise ValueError(f"probe port: got {port!r}; expected a port number 1-65535 for {proto}")
    if proto == "icmp" and address.version != 4:
        raise ValueError(f"probe dst: got {dst!r}; expected an IPv4 address (ICMP probes are IPv4 only)")
    if not timeout or timeout <= 0:
        raise ValueError(f"probe timeout: got {timeout!r}; expected a number of seconds > 0")
    if not src_netns:
        raise ValueError("probe src_netns: missing; expected a namespace name or path")
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def _open_socket(src_netns, family, kind, proto=0):
    with netns.enter(src_netns):
        return socket.socket(family, kind, proto)


def probe(src_netns, dst, port=None, proto="tcp", timeout=1.0, payload=None):
    """Probe DST (an IP address) from inside SRC_NETNS (a name in /run/netns or a path).

    tcp: connect; with PAYLOAD, send it and read the first line back into `reply`.
    udp: send PAYLOAD (default b"hostname\\n") on a connected socket and wait for an answer.
    icmp: one echo request over a raw socket (needs root); PORT is ignored.
    """
    family = _validate(src_netns, dst, port, proto, timeout)
    result = ProbeResult(src=src_netns, dst=dst, port=None if proto == "icmp" else port, proto=proto,
                         reachable=False, rtt_ms=None, detail="")
    run = {"tcp": _tcp, "udp": _udp, "icmp": _icmp}[proto]
    run(result, family, timeout, payload)
    return result


def _tcp(result, family, timeout, payload):
    with _open_socket(result.src, family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        start = time.monotonic()
        try:
            sock.connect((result.dst, result.port))
        except socket.timeout:
            result.detail = "timed out"
            return
        except OSError as e:
            result.detail = _errno_detail(e)
            return
        result.rtt_ms = (time.monotonic() - start) * 1000
        result.reachable, result.detail = True, "connected"
        if payload:
            sock.settimeout(max(timeout - (time.monotonic() - start), 0.001))
            try:
                sock.sendall(payload)
                result.reply = _first_line(sock.recv(65536))
            except OSError:
                pass  # connected is the verdict; a server that does not answer leaves reply None


def _udp(result, family, timeout, payload):
    with _open_socket(result.src, family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        start = time.monotonic()
        try:
            # Connected, so that an ICMP port unreachable comes back as ECONNREFUSED.
            sock.connect((result.dst, result.port))
            sock.send(payload or DEFAULT_UDP_PAYLOAD)
            data = sock.recv(65536)
        except socket.timeout:
            result.detail = "timed out"
            return
        except OSError as e:
            result.detail = _errno_detail(e)
            return
        result.rtt_ms = (time.monotonic() - start) * 1000
        result.reachable, result.detail, result.reply = True, "answered", _first_line(data)


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _echo_request(ident, seq, token):
    header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, _checksum(header + token), ident, seq) + token


def _icmp(result, family, timeout, payload):
    token = payload or os.urandom(16)
    ident, seq = struct.unpack("!HH", os.urandom(4))
    try:
        sock = _open_socket(result.src, family, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    except PermissionError:
        raise PermissionError(errno.EPERM, "ICMP probes need root (they use a raw socket)") from None
    with sock:
        deadline = time.monotonic() + timeout
        start = time.monotonic()
        try:
            sock.sendto(_echo_request(ident, seq, token), (result.dst, 0))
        except OSError as e:
            result.detail = _errno_detail(e)
            return
        # A raw socket sees every ICMP packet of the namespace, other probes' replies too:
        # only an echo reply from DST with our id, seq and payload counts.
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                packet, (sender, _) = sock.recvfrom(65536)
            except socket.timeout:
                break
            except OSError as e:
                result.detail = _errno_detail(e)
                return
            icmp = packet[(packet[0] & 0x0F) * 4:]
            if len(icmp) < 8:
                continue
            kind, code, _, r_ident, r_seq = struct.unpack("!BBHHH", icmp[:8])
            if kind == ICMP_ECHO_REPLY and sender == result.dst and (r_ident, r_seq) == (ident, seq) \
                    and icmp[8:] == token:
                result.rtt_ms = (time.monotonic() - start) * 1000
                result.reachable, result.detail = True, "echo reply"
                return
            if kind == ICMP_DEST_UNREACH and _quotes_our_echo(icmp[8:], result.dst, ident, seq):
                result.detail = _ICMP_UNREACH_DETAIL.get(code, f"ICMP unreachable code {code}")
                return
        result.detail = "timed out"


def _quotes_our_echo(quoted, dst, ident, seq):
    """Whether an ICMP error quotes our echo request (inner IP header + first 8 bytes)."""
    if len(quoted) < 20:
        return False
    inner = quoted[(quoted[0] & 0x0F) * 4:]
    if len(inner) < 8 or socket.inet_ntoa(quoted[16:20]) != dst:
        return False
    kind, _, _, q_ident, q_seq = struct.unpack("!BBHHH", inner[:8])
    return kind == ICMP_ECHO_REQUEST and (q_ident, q_seq) == (ident, seq)


def probe_many(probes, parallel=16):
    """Run many probes concurrently; results come back in the order given.

    Each item is a dict of `probe()` keyword arguments or a tuple of its positional ones,
    e.g. ("podA-ns", "10.244.1.5", 80, "tcp")."""
    items = list(probes)

    def one(item):
        return probe(**item) if isinstance(item, dict) else probe(*item)

    if not items:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(parallel, len(items)))) as pool:
        return list(pool.map(one, items))
