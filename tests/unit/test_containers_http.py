"""The minimal HTTP/1.1 parser and server (no root, loopback only)."""

import asyncio

import pytest

from netsim.containers import http1


def test_incomplete_request_waits_for_more_bytes():
    buf = bytearray(b"GET / HTTP/1.1\r\nHost: a\r\n")
    assert http1.parse_request(buf) is None
    buf += b"\r\n"
    req = http1.parse_request(buf)
    assert (req.method, req.target, req.host) == ("GET", "/", "a")
    assert buf == b""


def test_pipelined_requests_and_content_length_body():
    buf = bytearray(b"POST /x?a=1&b=%20y HTTP/1.1\r\ncontent-length: 5\r\nx-test-header: v\r\n\r\nhello"
                    b"GET /next HTTP/1.1\r\n\r\n")
    first = http1.parse_request(buf)
    assert first.body == b"hello" and first.path == "/x"
    assert first.arg("b") == " y" and first.arg("missing") == ""
    assert first.header_map() == {"Content-Length": ["5"], "X-Test-Header": ["v"]}
    assert http1.parse_request(buf).path == "/next"


def test_body_not_yet_complete():
    buf = bytearray(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
    assert http1.parse_request(buf) is None


@pytest.mark.parametrize("raw, message", [
    (b"GARBAGE\r\n\r\n", "malformed request line"),
    (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", "malformed header line"),
    (b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", "invalid Content-Length"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "send Content-Length"),
])
def test_bad_requests_say_what_is_wrong(raw, message):
    with pytest.raises(http1.BadRequest, match=message):
        http1.parse_request(bytearray(raw))


def test_go_address_format():
    assert http1.host_port(("::ffff:10.0.0.1", 80, 0, 0)) == "10.0.0.1:80"
    assert http1.host_port(("fd00::1", 80, 0, 0)) == "[fd00::1]:80"
    assert http1.host_port(("10.0.0.1", 8080)) == "10.0.0.1:8080"


async def _with_server(handler, body):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: http1.HTTPProtocol(handler), "127.0.0.1", 0)
    try:
        return await body(server.sockets[0].getsockname()[1])
    finally:
        server.close()


def test_keep_alive_answers_in_order_and_connection_close_closes():
    async def slow(request):
        await asyncio.sleep(0.01)
        return http1.Response("slow")

    def handler(request):
        return slow(request) if request.path == "/slow" else http1.Response(request.path)

    async def body(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /last HTTP/1.1\r\nConnection: close\r\n\r\n")
        answers = [await http1.read_response(reader) for _ in range(3)]
        assert [a[2] for a in answers] == [b"slow", b"/fast", b"/last"]
        assert answers[2][1]["connection"] == "close"
        assert await reader.read() == b""
        writer.close()

    asyncio.run(_with_server(handler, body))


def test_malformed_request_gets_400_and_close():
    async def body(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"NONSENSE\r\n\r\n")
        status, _, text = await http1.read_response(reader)
        assert status == 400 and b"malformed request line" in text
        writer.close()

    asyncio.run(_with_server(lambda r: http1.Response("x"), body))


def test_head_has_no_body():
    async def body(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HEAD / HTTP/1.1\r\nConnection: close\r\n\r\n")
        data = await reader.read()
        assert data.endswith(b"\r\n\r\n") and b"Content-Length: 5" in data
        writer.close()

    asyncio.run(_with_server(lambda r: http1.Response("hello"), body))
