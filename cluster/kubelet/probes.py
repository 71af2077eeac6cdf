"""Container probes (startup, liveness, readiness) with upstream's thresholds and timing.

A probe's handler is `httpGet` (a GET to the pod IP; 200-399 succeeds), `tcpSocket` (a
connect succeeds) or `exec` (a command run inside the pod's namespaces exits 0). HTTP and TCP
probes connect from the node's network namespace, as the kubelet does from its host. One
`ProbeWorker` per container and probe kind waits `initialDelaySeconds`, then probes every
`periodSeconds` with `timeoutSeconds`; its result turns to success after `successThreshold`
consecutive successes and to failure after `failureThreshold` consecutive failures, and each
change is reported to ON_CHANGE(kind, result). Results start as upstream's: readiness failed,
liveness succeeded, startup unknown (False); liveness and readiness wait for startup.
"""
from __future__ import annotations

import asyncio
import contextlib
import socket

from netsim import netns

STARTUP, LIVENESS, READINESS = "startup", "liveness", "readiness"
INITIAL = {STARTUP: False, LIVENESS: True, READINESS: False}


def resolve_port(port, container: dict) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"container {container.get('name')!r}: probe port {port!r} names no port of the container")


def _socket_in(node_netns, family):
    if node_netns:
        with netns.enter(node_netns):
            return socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    return socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)


async def _connect(node_netns, host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = _socket_in(node_netns, family)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def tcp_probe(node_netns, host, port) -> tuple[bool, str]:
    try:
        sock = await _connect(node_netns, host, port)
    except OSError as e:
        return False, f"dial tcp {host}:{port}: {e.strerror or e}"
    sock.close()
    return True, ""


async def http_probe(node_netns, host, port, path, headers) -> tuple[bool, str]:
    try:
        sock = await _connect(node_netns, host, port)
    except OSError as e:
        return False, f'Get "http://{host}:{port}{path}": dial tcp {host}:{port}: {e.strerror or e}'
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "User-Agent: kube-probe/1.37",
                 "Accept: */*", "Connection: close"]
        lines += [f"{h['name']}: {h['value']}" for h in headers]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    parts = status_line.decode(errors="replace").split()
    if len(parts) < 2 or not parts[1].isdigit():
        return False, f"HTTP probe failed: malformed status line {status_line[:80]!r}"
    code = int(parts[1])
    if 200 <= code < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {code}"


class ProbeWorker:
    """Runs one probe of one container until cancelled; RUN(probe) -> (ok, message)."""

    def __init__(self, kind: str, probe: dict, run, on_change, gate=None):
        self.kind, self.probe, self.run, self.on_change = kind, probe, run, on_change
        self.gate = gate  # an asyncio.Event set once the startup probe succeeded
        self.result = INITIAL[kind]
        self.message = ""
        self._successes = self._failures = 0

    async def loop(self) -> None:
        p = self.probe
        period = max(1, int(p.get("periodSeconds", 10)))
        timeout = max(1, int(p.get("timeoutSeconds", 1)))
        need_ok = max(1, int(p.get("successThreshold", 1)))
        need_fail = max(1, int(p.get("failureThreshold", 3)))
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(int(p.get("initialDelaySeconds", 0)))
        while True:
            try:
                ok, message = await asyncio.wait_for(self.run(p), timeout)
            except asyncio.TimeoutError:
                ok, message = False, f"probe timed out after {timeout}s"
            except OSError as e:
                ok, message = False, str(e)
            if ok:
                self._successes, self._failures = self._successes + 1, 0
            else:
                self._failures, self._successes = self._failures + 1, 0
            new = self.result
            if ok and self._successes >= need_ok:
                new = True
            elif not ok and self._failures >= need_fail:
                new = False
            self.message = message
            if new != self.result:
                self.result = new
                self.on_change(self.kind, new, message)
            if self.kind == STARTUP and self.result:
                return  # startup probes stop once they succeeded
            if self.kind == LIVENESS and not self.result:
                return  # the container is killed; its next instance gets a new worker
            await asyncio.sleep(period)
