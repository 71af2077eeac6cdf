"""A minimal HTTP/1.1 server and client on asyncio: request parsing, keep-alive, Content-Length.

The built-in servers answer tiny requests from many pods in one process, so this is a lean
asyncio Protocol instead of a framework (aiohttp measured too slow and too heavy per server).
Requests on one connection are answered in order; a handler may be a plain function or a
coroutine function returning a Response (or None to drop the connection without answering,
as a Go server does when the process exits mid-request).
"""

import asyncio
import email.utils
import http
import time
import urllib.parse

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024


class BadRequest(Exception):
    """The bytes on a connection are not an HTTP/1.x request; the text says what is wrong."""


def canonical_header(name):
    """Go's textproto.CanonicalMIMEHeaderKey: content-type -> Content-Type."""
    return "-".join(p[:1].upper() + p[1:].lower() for p in name.split("-"))


def host_port(addr):
    """A socket address as Go prints net.Addr: 10.0.0.1:80, [fd00::1]:80 (IPv4-mapped unwrapped)."""
    host, port = addr[0], addr[1]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Request:
    __slots__ = ("method", "target", "version", "headers", "body", "client", "local",
                 "path", "query_string", "_query")

    def __init__(self, method, target, version, headers, body, client, local):
        self.method = method
        self.target = target          # the RequestURI exactly as sent
        self.version = version        # "HTTP/1.1"
        self.headers = headers        # [(Canonical-Name, value)] in arrival order
        self.body = body
        self.client = client          # peer socket address tuple
        self.local = local
        raw_path, _, self.query_string = target.partition("?")
        if raw_path.startswith(("http://", "https://")):  # absolute-form (proxies)
            raw_path = "/" + raw_path.split("/", 3)[-1] if raw_path.count("/") >= 3 else "/"
        self.path = urllib.parse.unquote(raw_path)
        self._query = None

    def header(self, name, default=""):
        name = canonical_header(name)
        for key, value in self.headers:
            if key == name:
                return value
        return default

    def header_map(self):
        """Headers as Go's http.Header: {Canonical-Name: [values]}, Host removed (it is r.Host)."""
        result = {}
        for key, value in self.headers:
            if key != "Host":
                result.setdefault(key, []).append(value)
        return result

    @property
    def host(self):
        return self.header("Host")

    @property
    def remote_addr(self):
        return host_port(self.client)

    def arg(self, name, default=""):
        """The first value of query parameter NAME, as Go's r.FormValue reads a GET."""
        if self._query is None:
            self._query = urllib.parse.parse_qs(self.query_string, keep_blank_values=True)
        values = self._query.get(name)
        return values[0] if values else default


class Response:
    __slots__ = ("status", "body", "headers", "close")

    def __init__(self, body=b"", status=200, headers=None, content_type=None, close=False):
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.headers = list(headers or [])
        if content_type is None and self.body:
            content_type = "text/plain; charset=utf-8"
        if content_type:
            self.headers.append(("Content-Type", content_type))
        self.close = close


def error(message, status):
    """What Go's http.Error writes."""
    return Response(message + "\n", status, [("X-Content-Type-Options", "nosniff")])


_date_cache = [0, ""]


def _http_date():
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = email.utils.formatdate(now, usegmt=True)
    return _date_cache[1]


def reason(status):
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"status code {status}"


def serialize(response, head_only=False, keep_alive=True):
    lines = [f"HTTP/1.1 {response.status} {reason(response.status)}", f"Date: {_http_date()}"]
    for key, value in response.headers:
        lines.append(f"{key}: {value}")
    lines.append(f"Content-Length: {len(response.body)}")
    if not keep_alive:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


def parse_request(buf, client=None, local=None):
    """Take one complete request off the front of BUF (a bytearray); None if incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD:
            raise BadRequest("request header too large")
        return None
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    while lines and not lines[0]:  # tolerate stray CRLF between requests (RFC 9112 2.2)
        lines.pop(0)
    if not lines:
        del buf[:end + 4]
        return None
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(f"malformed request line {lines[0]!r}")
    method, target, version = parts
    headers = []
    length = 0
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(f"malformed header line {line!r}")
        name = canonical_header(name)
        value = value.strip()
        headers.append((name, value))
        if name == "Content-Length":
            try:
                length = int(value)
            except ValueError:
                raise BadRequest(f"invalid Content-Length {value!r}")
            if length < 0 or length > MAX_BODY:
                raise BadRequest(f"Content-Length {value} out of range")
        elif name == "Transfer-Encoding":
            raise BadRequest("chunked request bodies are not supported: send Content-Length")
    total = end + 4 + length
    if len(buf) < total:
        return None
    body = bytes(buf[end + 4:total])
    del buf[:total]
    return Request(method, target, version, headers, body, client, local)


def wants_keep_alive(request):
    conn = request.header("Connection").lower()
    if request.version == "HTTP/1.0":
        return "keep-alive" in conn
    return "close" not in conn


class HTTPProtocol(asyncio.Protocol):
    """One connection: parse requests, call HANDLER in order, write responses.

    OWNER, when given, has sets `connections` and `tasks` that hold this connection's transport
    and its in-flight handler tasks, so the owner can end them all when its container stops.
    """

    def __init__(self, handler, owner=None):
        self.handler = handler
        self.owner = owner
        self.transport = None
        self.buf = bytearray()
        self.busy = False
        self.client = self.local = None

    def connection_made(self, transport):
        self.transport = transport
        self.client = transport.get_extra_info("peername")
        self.local = transport.get_extra_info("sockname")
        if self.owner is not None:
            self.owner.connections.add(transport)

    def connection_lost(self, exc):
        if self.owner is not None:
            self.owner.connections.discard(self.transport)
        self.transport = None

    def data_received(self, data):
        self.buf += data
        if not self.busy:
            self._serve()

    def _serve(self):
        while self.transport is not None and not self.busy:
            try:
                request = parse_request(self.buf, self.client, self.local)
            except BadRequest as e:
                self.transport.write(serialize(error(f"400 Bad Request: {e}", 400), keep_alive=False))
                self.transport.close()
                return
            if request is None:
                return
            try:
                result = self.handler(request)
            except Exception as e:  # a handler bug answers 500 instead of dropping the connection
                result = error(f"internal error: {e}", 500)
            if asyncio.iscoroutine(result):
                self.busy = True
                task = asyncio.ensure_future(result)
                if self.owner is not None:
                    self.owner.tasks.add(task)
                    task.add_done_callback(self.owner.tasks.discard)
                task.add_done_callback(lambda t, r=request: self._finished(r, t))
                return
            self._respond(request, result)

    def _finished(self, request, task):
        self.busy = False
        if task.cancelled() or self.transport is None:
            return
        exc = task.exception()
        self._respond(request, error(f"internal error: {exc}", 500) if exc else task.result())
        self._serve()

    def _respond(self, request, response):
        if self.transport is None:
            return
        if response is None:
            self.transport.abort()
            return
        keep = wants_keep_alive(request) and not response.close
        self.transport.write(serialize(response, request.method == "HEAD", keep))
        if not keep:
            self.transport.close()


async def read_response(reader):
    """Read one HTTP/1.x response: (status, {lower-name: value}, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/"):
        raise BadRequest(f"malformed status line {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        body = bytes(body)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read()
    return int(status_line[1]), headers, body
