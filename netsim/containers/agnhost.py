"""agnhost's serve-hostname, netexec, pause and connect, behaving as the Go originals do.

Source of truth: kubernetes/kubernetes test/images/agnhost/. Log lines, response bodies,
status codes and error strings follow the originals so e2e-style checks read the same. Every
socket a handler opens (netexec's /dial, connect) is opened inside the pod's network namespace
through the context; /shell runs inside the pod's network and UTS namespaces.
"""

import asyncio
import os
import socket

from netsim.containers import http1
from netsim.containers.apps import App
from netsim.containers.context import Listener
from netsim.containers.golike import go_duration, go_json, go_now, sorted_map
from netsim.containers.images import parse_duration

DIAL_TIMEOUT = 5.0
SERVE_HOSTNAME_LINGER = 60.0  # serve-hostname keeps serving this long after SIGTERM


def _go_errno_text(exc):
    """Go's lower-case syscall error text: connection refused, no route to host."""
    text = os.strerror(exc.errno) if getattr(exc, "errno", None) else str(exc)
    return text[:1].lower() + text[1:]


# ---------------------------------------------------------------- serve-hostname

class _HostnameOverTCP(asyncio.Protocol):
    def __init__(self, ctx):
        self.ctx = ctx

    def connection_made(self, transport):
        self.ctx.log(f"TCP request from {http1.host_port(transport.get_extra_info('peername'))}")
        transport.write(self.ctx.hostname.encode())
        transport.close()


class _HostnameOverUDP(asyncio.DatagramProtocol):
    def __init__(self, ctx):
        self.ctx = ctx

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.ctx.log(f"UDP request from {http1.host_port(addr)}")
        self.transport.sendto(self.ctx.hostname.encode(), addr)


def serve_hostname(spec, ctx):
    o = spec.options
    listeners = []
    if o["tcp"]:
        listeners.append(Listener("TCP", o["port"], lambda: _HostnameOverTCP(ctx)))
    if o["udp"]:
        listeners.append(Listener("UDP", o["port"], lambda: _HostnameOverUDP(ctx)))
    if o["http"]:
        def handle(request):
            ctx.log(f"HTTP request from {request.remote_addr}")
            headers = [("Connection", "close")] if o["close"] else []
            return http1.Response(ctx.hostname, headers=headers, close=o["close"])
        listeners.append(Listener("TCP", o["port"], lambda: http1.HTTPProtocol(handle, ctx)))

    def on_sigterm():
        ctx.log("Shutting down after receiving signal: terminated.")
        ctx.log("Awaiting pod deletion.")
        return SERVE_HOSTNAME_LINGER

    return App(listeners, started=lambda: ctx.log(f"Serving on port {o['port']}."),
               on_sigterm=on_sigterm, sigterm_code=0)


# ---------------------------------------------------------------- netexec

class _NetexecUDP(asyncio.DatagramProtocol):
    """hostname, echo <msg> and clientip over UDP, as netexec's startUDPServer answers."""

    def __init__(self, ctx):
        self.ctx = ctx

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        text = data[:2048].decode("utf-8", "replace").strip().lower()
        client = http1.host_port(addr)
        if text == "hostname":
            self.ctx.log("Sending udp hostName response")
            self.transport.sendto(self.ctx.hostname.encode(), addr)
        elif text.startswith("echo "):
            reply = text.split(" ", 1)[1]
            self.ctx.log(f"Echoing {reply} to UDP client {client}")
            self.transport.sendto(reply.encode(), addr)
        elif text == "clientip":
            self.ctx.log(f"Sending clientip back to UDP client {client}")
            self.transport.sendto(client.encode(), addr)
        elif text:
            self.ctx.log(f"Unknown UDP command received from {client}: {text}")


async def _resolve(host, port, kind):
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host or None, port, type=kind)
    return infos[0][0], infos[0][4]


async def dial_http(ctx, family, addr, request, timeout=DIAL_TIMEOUT):
    """GET http://ADDR/REQUEST from inside the pod; the body, or raise OSError with Go's text."""
    target = http1.host_port(addr)
    url = f"http://{target}/{request.lstrip('/')}"
    loop = asyncio.get_running_loop()
    sock = ctx.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    writer = None
    try:
        async with asyncio.timeout(timeout):
            try:
                await loop.sock_connect(sock, addr)
            except OSError as e:
                raise OSError(f'Get "{url}": dial tcp {target}: connect: {_go_errno_text(e)}')
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write((f"GET /{request.lstrip('/')} HTTP/1.1\r\nHost: {target}\r\n"
                          "User-Agent: Go-http-client/1.1\r\nConnection: close\r\n\r\n").encode())
            try:
                _, _, body = await http1.read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                raise OSError(f'Get "{url}": EOF')
            return body.decode("utf-8", "replace")
    except TimeoutError:
        raise OSError(f'Get "{url}": context deadline exceeded '
                      "(Client.Timeout exceeded while awaiting headers)")
    finally:
        if writer is not None:
            writer.close()
        else:
            sock.close()


async def dial_udp(ctx, family, addr, request, timeout=DIAL_TIMEOUT):
    """Send REQUEST to ADDR over UDP from inside the pod; the reply, or OSError with Go's text."""
    loop = asyncio.get_running_loop()
    sock = ctx.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        try:
            await loop.sock_connect(sock, addr)
        except OSError as e:
            raise OSError(f"udp dial failed. err:dial udp {http1.host_port(addr)}: {_go_errno_text(e)}")
        local = http1.host_port(sock.getsockname())
        where = f"read udp {local}->{http1.host_port(addr)}"
        await loop.sock_sendall(sock, request.encode())
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 2048), timeout)
        except TimeoutError:
            raise OSError(f"reading from udp connection failed. err:'{where}: i/o timeout'")
        except OSError as e:
            raise OSError(f"reading from udp connection failed. err:'{where}: read: {_go_errno_text(e)}'")
        if not data:
            raise OSError("reading from udp connection failed. err:'<nil>'")
        return data.decode("utf-8", "replace")
    finally:
        sock.close()


def netexec(spec, ctx):
    o = spec.options
    state = {"ready": False}

    def root(request):
        ctx.log("GET /")
        return http1.Response(f"NOW: {go_now()}")

    def echo(request):
        msg, code = request.arg("msg"), request.arg("code")
        ctx.log(f"GET /echo?msg={msg}&code={code}")
        if code == "":
            return http1.Response(msg)
        try:
            status = int(code)
        except ValueError:
            return http1.Response(f"argument 'code' must be an integer or empty, got \"{code}\"\n")
        if not 100 <= status <= 999:
            return None  # Go panics on such a code: the client sees the connection drop
        return http1.Response(msg, status)

    def clientip(request):
        ctx.log("GET /clientip")
        return http1.Response(request.remote_addr)

    def header(request):
        key = request.arg("key")
        if key:
            ctx.log(f"GET /header?key={key}")
            return http1.Response(request.header(key))
        ctx.log("GET /header")
        return http1.Response(go_json(sorted_map(request.header_map())))

    def hostname(request):
        ctx.log(f"GET {request.path}")
        return http1.Response(ctx.hostname)

    def healthz(request):
        ctx.log("GET /healthz")
        return http1.Response(status=200 if state["ready"] else 412)

    def readyz(request):
        ctx.log("GET /readyz")
        if ctx.terminating:
            return http1.Response("shutting down", 503)
        if state["ready"]:
            return http1.Response("ok")
        return http1.Response(status=412)

    def redirect(request):
        location, code = request.arg("location"), request.arg("code")
        ctx.log(f"{request.method} /redirect?msg={location}&code={code}")
        status = 302
        if code:
            try:
                status = int(code)
            except ValueError:
                return http1.Response(f"argument 'code' must be an integer or empty, got \"{code}\"\n")
        body = f'<a href="{location}">{http1.reason(status)}</a>.\n\n' if request.method in ("GET", "HEAD") else ""
        return http1.Response(body, status, [("Location", location)],
                              content_type="text/html; charset=utf-8" if body else None)

    def shutdown(request):
        ctx.log("GET /shutdown")
        ctx.exit(0)
        return None

    def upload(request):
        ctx.log("GET /upload")
        return http1.error("upload is not emulated by netsim's built-in netexec", 501)

    async def exit_(request):
        wait_s, timeout_s, code_s = request.arg("wait"), request.arg("timeout"), request.arg("code")
        ctx.log(f"GET /exit?code={code_s}&timeout={timeout_s}&wait={wait_s}")
        try:
            timeout = parse_duration(timeout_s) if timeout_s else 0.0
        except ValueError:
            return http1.Response(f"argument 'timeout' must be a valid golang duration or empty, got \"{timeout_s}\"\n")
        try:
            wait = parse_duration(wait_s) if wait_s else 0.0
        except ValueError:
            return http1.Response(f"argument 'wait' must be a valid golang duration or empty, got \"{wait_s}\"\n")
        try:
            code = int(code_s) if code_s else 0
        except ValueError:
            return http1.Response(f"argument 'code' must be an integer [0-127] or empty, got \"{code_s}\"\n")
        ctx.log(f"Will begin shutdown in {go_duration(wait)}, allowing {go_duration(timeout)} "
                f"for connections to close, then will exit with {code}")
        await asyncio.sleep(wait)
        if timeout == 0:
            ctx.exit(code)
            return None
        # exit once this response is written (the done-callback that writes it runs first)
        loop = asyncio.get_running_loop()
        loop.call_soon(loop.call_soon, ctx.exit, code)
        return http1.Response()

    async def shell(request):
        command = request.arg("shellCommand") or request.arg("cmd")
        ctx.log(f"GET /shell?cmd={command}")
        output, code = await ctx.shell(command)
        result = {}
        if code != 0:
            result["error"] = f"exit status {code}" if code > 0 else f"signal: {-code}"
        if output:
            result["output"] = output.decode("utf-8", "replace")
        ctx.log(f"Output: map[{' '.join(f'{k}:{v}' for k, v in result.items())}]")
        return http1.Response(go_json(result))

    async def dial(request):
        host, port = request.arg("host"), request.arg("port")
        target, protocol, tries_s = request.arg("request"), request.arg("protocol"), request.arg("tries")
        ctx.log(f"GET /dial?host={host}&protocol={protocol}&port={port}&request={target}&tries={tries_s}")
        try:
            tries = int(tries_s) if tries_s else 1
        except ValueError:
            return http1.error(f'tries parameter is invalid. strconv.Atoi: parsing "{tries_s}": invalid syntax', 400)
        if not target:
            return http1.error("request parameter not specified. <nil>", 400)
        protocol = protocol.lower()
        if protocol in ("", "http"):
            dialer, kind = dial_http, socket.SOCK_STREAM
        elif protocol == "udp":
            dialer, kind = dial_udp, socket.SOCK_DGRAM
        elif protocol == "sctp":
            return http1.error("sctp is not emulated by netsim (this kernel has no SCTP)", 400)
        else:
            return http1.error(f"unsupported protocol. {protocol}", 400)
        try:
            family, addr = await _resolve(host, int(port), kind)
        except (OSError, ValueError) as e:
            return http1.error(f"host and/or port param are invalid. {e}", 400)
        responses, errors, last = [], [], ""
        for _ in range(tries):
            try:
                last = await dialer(ctx, family, addr, target)
                responses.append(last)
            except OSError as e:
                last = ""
                errors.append(str(e))
        output = {}
        if errors:
            output["errors"] = errors
        if last:  # as the original: responses only when the last try answered
            output["responses"] = responses
        return http1.Response(go_json(output))

    routes = {
        "/": root, "/clientip": clientip, "/header": header, "/dial": dial, "/echo": echo,
        "/exit": exit_, "/healthz": healthz, "/readyz": readyz, "/hostname": hostname,
        "/redirect": redirect, "/shell": shell, "/upload": upload, "/hostName": hostname,
        "/shutdown": shutdown,
    }

    def handle(request):
        if o["http-override"]:
            request = http1.Request("GET", o["http-override"], request.version, request.headers,
                                    b"", request.client, request.local)
        return routes.get(request.path, root)(request)

    listeners = [Listener("TCP", o["http-port"], lambda: http1.HTTPProtocol(handle, ctx))]
    if o["udp-port"] != -1:
        addresses = [a for a in o["udp-listen-addresses"].split(",") if a] or [""]
        for address in sorted(set(addresses)):
            listeners.append(Listener("UDP", o["udp-port"], lambda: _NetexecUDP(ctx), address))

    def started():
        if o["tls-cert-file"]:
            ctx.log("TLS is not emulated: serving plain HTTP on the --http-port")
        for listener in listeners[1:]:
            ctx.log(f"Started UDP server on port {listener.address} {listener.port}")
        if o["sctp-port"] != -1:
            ctx.log(f"SCTP server on port {o['sctp-port']} not started: netsim does not emulate SCTP")
        state["ready"] = len(listeners) > 1
        ctx.log(f"Started HTTP server on port {o['http-port']}")

    def on_sigterm():
        if o["delay-shutdown"] > 0:
            ctx.log(f"Sleeping {o['delay-shutdown']} seconds before terminating...")
        return float(o["delay-shutdown"])

    return App(listeners, started=started, on_sigterm=on_sigterm, sigterm_code=0)


# ---------------------------------------------------------------- pause

def pause(spec, ctx):
    # the original exits 2 on SIGTERM (1 on SIGINT)
    return App([], started=lambda: ctx.print("Paused"), sigterm_code=2)


# ---------------------------------------------------------------- connect

def _split_host_port(dest):
    if dest.startswith("["):
        host, sep, port = dest[1:].partition("]:")
        if not sep:
            raise ValueError(f"address {dest}: missing port in address")
        return host, port
    host, sep, port = dest.rpartition(":")
    if not sep:
        raise ValueError(f"address {dest}: missing port in address")
    if ":" in host:
        raise ValueError(f"address {dest}: too many colons in address")
    return host, port


async def connect_main(spec, ctx):
    """One connection attempt; 0 on success, 1 with the original's error prefix otherwise."""
    dest = spec.positional[0]
    protocol = spec.options["protocol"]
    timeout = spec.options["timeout"] or None
    fail = ctx.eprint
    if protocol not in ("", "tcp", "udp", "sctp"):
        fail(f"Unsupported protocol\n{protocol}")
        return 1
    if protocol == "sctp":
        fail("OTHER: sctp is not emulated by netsim (this kernel has no SCTP)")
        return 1
    try:
        host, port = _split_host_port(dest)
    except ValueError as e:
        fail(f"UNKNOWN: {e}")
        return 1
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    try:
        family, addr = await _resolve(host, int(port), kind)
    except (OSError, ValueError) as e:
        fail(f"DNS: lookup {host}: {e}")
        return 1
    loop = asyncio.get_running_loop()
    sock = ctx.socket(family, kind)
    sock.setblocking(False)
    try:
        if kind == socket.SOCK_STREAM:
            try:
                await asyncio.wait_for(loop.sock_connect(sock, addr), timeout)
                return 0
            except TimeoutError:
                fail("TIMEOUT")
            except ConnectionRefusedError:
                fail("REFUSED")
            except OSError as e:
                fail(f"OTHER: dial tcp {http1.host_port(addr)}: connect: {_go_errno_text(e)}")
            return 1
        await loop.sock_connect(sock, addr)
        where = f"read udp {http1.host_port(sock.getsockname())}->{http1.host_port(addr)}"
        try:
            await loop.sock_sendall(sock, (spec.options["udp-data"] + "\n").encode())
            data = await asyncio.wait_for(loop.sock_recv(sock, 1024), timeout)
        except TimeoutError:
            fail(f"TIMEOUT: {where}: i/o timeout")
            return 1
        except ConnectionRefusedError as e:
            fail(f"REFUSED: {where}: read: {_go_errno_text(e)}")
            return 1
        except OSError as e:
            fail(f"UNKNOWN: {where}: {_go_errno_text(e)}")
            return 1
        if not data:
            fail("OTHER: No data received from the server. Cannot guarantee the server received the request.")
            return 1
        return 0
    finally:
        sock.close()


def connect(spec, ctx):
    return App([], run=lambda: connect_main(spec, ctx))


APPS = {"serve-hostname": serve_hostname, "netexec": netexec, "pause": pause, "connect": connect}
