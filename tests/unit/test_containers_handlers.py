"""The built-ins' behaviour as a client sees it, served on 127.0.0.1 without namespaces (no root)."""

import asyncio
import dataclasses
import json
import re
import socket

from netsim.containers import apps, http1, images
from netsim.containers.context import ContainerContext, bind


class Served:
    """A built-in served on loopback ephemeral ports, with its log lines and exit codes."""

    def __init__(self, spec, env=None, hostname="web-0"):
        self.lines, self.errors, self.exits = [], [], []
        self.ctx = ContainerContext(hostname=hostname, pod=hostname, namespace="default", node="node-1",
                                    env=env or {}, write=self.lines.append, write_error=self.errors.append,
                                    exit=self.exits.append)
        self.app = apps.build(spec, self.ctx)
        self.running = apps.Running(self.app, self.ctx)
        self.ports = {}

    async def __aenter__(self):
        bound = []
        for listener in self.app.listeners:
            sock = bind(dataclasses.replace(listener, address="127.0.0.1", port=0))
            self.ports[listener.protocol] = sock.getsockname()[1]
            bound.append((listener, sock))
        await self.running.start(bound)
        return self

    async def __aexit__(self, *exc):
        self.running.close(abort=True)

    async def get(self, target, headers=""):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.ports["TCP"])
        writer.write(f"GET {target} HTTP/1.1\r\nHost: svc.example\r\n{headers}Connection: close\r\n\r\n".encode())
        try:
            status, _, body = await http1.read_response(reader)
        finally:
            writer.close()
        return status, body.decode()

    async def udp(self, text):
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", self.ports["UDP"]))
            await loop.sock_sendall(sock, text.encode())
            return (await asyncio.wait_for(loop.sock_recv(sock, 2048), 2)).decode()
        finally:
            sock.close()


def netexec(*flags):
    return images.agnhost(["netexec", *flags])


def run(coro):
    return asyncio.run(coro)


def test_netexec_http_endpoints():
    async def body():
        async with Served(netexec()) as s:
            status, text = await s.get("/clientip")
            assert status == 200 and re.fullmatch(r"127\.0\.0\.1:\d+", text)
            assert await s.get("/hostname") == (200, "web-0")
            assert await s.get("/hostName") == (200, "web-0")
            assert await s.get("/echo?msg=hello") == (200, "hello")
            assert await s.get("/echo?msg=gone&code=404") == (404, "gone")
            assert await s.get("/healthz") == (200, "")
            assert await s.get("/readyz") == (200, "ok")
            status, text = await s.get("/any/unknown/path")
            assert status == 200 and text.startswith("NOW: ")
            assert await s.get("/header?key=X-Probe", "X-Probe: 42\r\n") == (200, "42")
            # log lines as Go's log.Printf writes them
            assert any(re.fullmatch(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d GET /clientip\n", line) for line in s.lines)
            assert any("Started HTTP server on port 8080" in line for line in s.lines)
    run(body())


def test_netexec_readyz_fails_once_terminating():
    async def body():
        async with Served(netexec("--delay-shutdown=5")) as s:
            s.ctx.terminating = True
            assert await s.get("/readyz") == (503, "shutting down")
            assert s.app.on_sigterm() == 5.0
    run(body())


def test_netexec_healthz_not_ready_without_udp_server():
    async def body():
        async with Served(netexec("--udp-port=-1")) as s:
            assert (await s.get("/healthz"))[0] == 412
    run(body())


def test_netexec_udp_commands():
    async def body():
        async with Served(netexec()) as s:
            assert await s.udp("hostname") == "web-0"
            assert await s.udp("echo Hello World\n") == "hello world"  # the original lower-cases
            assert re.fullmatch(r"127\.0\.0\.1:\d+", await s.udp("clientip"))
    run(body())


def test_netexec_dial_http_and_udp_and_errors():
    async def body():
        async with Served(netexec(), hostname="target") as target, Served(netexec()) as s:
            port, uport = target.ports["TCP"], target.ports["UDP"]
            status, text = await s.get(f"/dial?request=hostname&host=127.0.0.1&port={port}&protocol=http&tries=2")
            assert status == 200 and json.loads(text) == {"responses": ["target", "target"]}
            status, text = await s.get(f"/dial?request=hostname&host=127.0.0.1&port={uport}&protocol=udp")
            assert json.loads(text) == {"responses": ["target"]}
            closed = socket.socket()
            closed.bind(("127.0.0.1", 0))
            free = closed.getsockname()[1]
            closed.close()
            status, text = await s.get(f"/dial?request=hostname&host=127.0.0.1&port={free}")
            errors = json.loads(text)["errors"]
            assert status == 200 and "connect: connection refused" in errors[0]
            status, text = await s.get("/dial?host=127.0.0.1&port=1")
            assert status == 400 and "request parameter not specified" in text
    run(body())


def test_netexec_shell_runs_the_command():
    async def body():
        async with Served(netexec()) as s:
            status, text = await s.get("/shell?cmd=echo%20hi")
            assert (status, json.loads(text)) == (200, {"output": "hi\n"})
            status, text = await s.get("/shell?cmd=exit%203")
            assert json.loads(text) == {"error": "exit status 3"}
    run(body())


def test_netexec_exit_answers_then_exits_with_code():
    async def body():
        async with Served(netexec()) as s:
            assert await s.get("/exit?code=3&timeout=1s") == (200, "")
            await asyncio.sleep(0.01)
            assert s.exits == [3]
    run(body())


def test_serve_hostname_tcp_udp_http():
    async def body():
        async with Served(images.agnhost(["serve-hostname", "--tcp", "--udp", "--http=false"])) as s:
            reader, writer = await asyncio.open_connection("127.0.0.1", s.ports["TCP"])
            assert await reader.read() == b"web-0"
            writer.close()
            assert await s.udp("x") == "web-0"
            assert any("TCP request from 127.0.0.1:" in line for line in s.lines)
        async with Served(images.agnhost(["serve-hostname", "--close"])) as s:
            assert await s.get("/") == (200, "web-0")
    run(body())


def test_echoserver_json_document():
    async def body():
        env = {"NAMESPACE": "conformance", "POD_NAME": "echo-1", "SERVICE_NAME": "echo"}
        async with Served(images.echoserver(env), env=env) as s:
            status, text = await s.get("/foo//bar?x=1", "X-Forwarded-For: 1.2.3.4\r\n")
            doc = json.loads(text)
            assert status == 200
            assert doc["path"] == "/foo//bar?x=1" and doc["host"] == "svc.example"
            assert doc["method"] == "GET" and doc["proto"] == "HTTP/1.1"
            assert doc["headers"]["X-Forwarded-For"] == ["1.2.3.4"] and "Host" not in doc["headers"]
            assert (doc["namespace"], doc["pod"], doc["service"]) == ("conformance", "echo-1", "echo")
            assert await s.get("/health") == (200, "OK")
    run(body())


def test_default_echo_names_pod_and_client():
    async def body():
        async with Served(images.echo([80])) as s:
            doc = json.loads((await s.get("/where"))[1])
            assert (doc["pod"], doc["namespace"], doc["path"]) == ("web-0", "default", "/where")
            assert doc["client"].startswith("127.0.0.1:")
    run(body())


def test_connect_success_refused_and_bad_address():
    async def body():
        async with Served(netexec()) as target:
            ok = Served(images.agnhost(["connect", f"127.0.0.1:{target.ports['TCP']}", "--timeout=2s"]))
            assert await ok.app.run() == 0
            refused = Served(images.agnhost(["connect", "127.0.0.1:1", "--timeout=2s"]))
            assert await refused.app.run() == 1 and refused.errors == ["REFUSED\n"]
            udp = Served(images.agnhost(["connect", f"127.0.0.1:{target.ports['UDP']}", "--protocol=udp",
                                         "--timeout=2s"]))
            assert await udp.app.run() == 0
            bad = Served(images.agnhost(["connect", "127.0.0.1"]))
            assert await bad.app.run() == 1 and bad.errors[0].startswith("UNKNOWN: ")
    run(body())
