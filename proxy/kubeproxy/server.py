"""kube-proxy's HTTP endpoints and its health, as upstream's metrics and healthz servers.

Every address serves the same routes:

    GET /metrics    the Prometheus text of `metrics.Metrics` (sync durations, programming latency)
    GET /healthz    200 or 503 with {"lastUpdated", "currentTime", "nodeEligible"}: upstream's
                    proxier health (healthy unless a change has waited longer than the health
                    timeout, two sync periods, for a sync that succeeded; and the node is not
                    being deleted)
    GET /livez      the same without the node's eligibility
    GET /proxyMode  "iptables"

An address is `unix:PATH` (handy from the host: `curl --unix-socket PATH http://x/metrics`) or
`HOST:PORT` (`HOST` alone takes the flag's default port). TCP sockets are opened inside the
node's network namespace, so `--healthz-bind-address 0.0.0.0:10256` answers on the node IP
exactly where a real node's kube-proxy would, whatever namespace the process runs in.
"""

import contextlib
import datetime
import ipaddress
import json
import os
import socket
import threading
import time

from aiohttp import web

from netsim import netns

METRICS_PORT = 10249
HEALTHZ_PORT = 10256
PROXY_MODE = "iptables"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class BindAddressError(ValueError):
    """A bind address flag that cannot be used; the message names the flag and the form expected."""


def parse_bind_address(text, flag, default_port):
    """("unix", path) or ("tcp", host, port) from TEXT, the value of FLAG."""
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if not path:
            raise BindAddressError(f"{flag}: {text!r}: expected unix:PATH with a socket path")
        return ("unix", os.path.abspath(path))
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(default_port)
    try:
        ipaddress.IPv4Address(host)
        number = int(port)
        if not 0 < number < 65536:
            raise ValueError
    except ValueError:
        raise BindAddressError(f"{flag}: {text!r}: expected HOST:PORT with an IPv4 address and a port "
                               f"1-65535 (e.g. 0.0.0.0:{default_port}) or unix:PATH") from None
    return ("tcp", host, number)


def _rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat().replace("+00:00", "Z")


class ProxierHealth:
    """Upstream's ProxierHealthServer logic: `queued_update()` when a change awaits a sync,
    `updated()` after a sync succeeded; unhealthy once the oldest change still waiting was queued
    more than TIMEOUT seconds ago. Updated from the event loop, read by the HTTP handlers."""

    def __init__(self, timeout, clock=time.time):
        self.timeout, self.clock = timeout, clock
        self.last_updated = None
        self.oldest_pending = None
        self.node_eligible = True
        self._lock = threading.Lock()

    def queued_update(self):
        with self._lock:
            if self.oldest_pending is None:
                self.oldest_pending = self.clock()

    def updated(self):
        with self._lock:
            self.last_updated = self.clock()
            self.oldest_pending = None

    def status(self, check_node=True):
        """(healthy, the JSON document upstream answers with)."""
        with self._lock:
            now = self.clock()
            # Healthy while starting up and when fully synced; a change may wait up to the timeout.
            healthy = self.oldest_pending is None or now - self.oldest_pending < self.timeout
            if check_node:
                healthy = healthy and self.node_eligible
            doc = {"lastUpdated": _rfc3339(self.last_updated) if self.last_updated else "",
                   "currentTime": _rfc3339(now), "nodeEligible": self.node_eligible}
            return healthy, doc


class HTTPEndpoints:
    """The HTTP server of one kube-proxy, on any number of unix and TCP addresses."""

    def __init__(self, metrics, health, netns_path=None):
        self.metrics, self.health, self.netns_path = metrics, health, netns_path
        self._runner = None
        self._unix_paths = []

    async def start(self, addresses):
        """Listen on ADDRESSES (from parse_bind_address); an address in use raises OSError naming it."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/proxyMode", self._proxy_mode)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        try:
            for address in addresses:
                if address[0] == "unix":
                    path = address[1]
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    await web.UnixSite(self._runner, path).start()
                    self._unix_paths.append(path)
                else:
                    await web.SockSite(self._runner, self._tcp_socket(address[1], address[2])).start()
        except BaseException:
            await self.stop()
            raise

    def _tcp_socket(self, host, port):
        where = f" in network namespace {self.netns_path}" if self.netns_path else ""
        # A socket opened inside the node's namespace stays bound to it after we step out.
        with netns.enter(self.netns_path) if self.netns_path else contextlib.nullcontext():
            try:
                sock = socket.create_server((host, port), reuse_port=False)
            except OSError as e:
                raise OSError(e.errno, f"cannot listen on {host}:{port}{where}: {e.strerror}") from None
        sock.setblocking(False)
        return sock

    async def stop(self):
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for path in self._unix_paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._unix_paths = []

    async def _metrics(self, request):
        return web.Response(body=self.metrics.exposition().encode(),
                            headers={"Content-Type": PROMETHEUS_TEXT})

    def _health(self, check_node):
        healthy, doc = self.health.status(check_node)
        return web.Response(status=200 if healthy else 503, text=json.dumps(doc),
                            content_type="application/json")

    async def _healthz(self, request):
        return self._health(True)

    async def _livez(self, request):
        return self._health(False)

    async def _proxy_mode(self, request):
        return web.Response(text=PROXY_MODE)
