"""The gateway's own HTTP/1.1 server (dataplane/http/server.py), over real loopback sockets.

Most tests talk raw bytes (asyncio streams) so that framing is checked exactly; httpx is used
where a real client is the simpler witness.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from tritium.dataplane.gateway import error_body
from tritium.dataplane.http import server as http_server
from tritium.dataplane.http.server import HttpServer, Request, Response, Router, StreamResponse

WAIT = 2.0  # the most any single read may take before a test fails instead of hanging


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _serving(handler: Callable[[Request], Awaitable[Response | StreamResponse]],
                   **kwargs: object) -> AsyncIterator[tuple[HttpServer, int]]:
    server = HttpServer(handler, **kwargs)  # type: ignore[arg-type]
    port = _port()
    await server.listen("127.0.0.1", port)
    try:
        yield server, port
    finally:
        await server.shutdown(grace=1.0)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    head: bytes  # the raw status line and header block

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """One raw connection: writes exact bytes, parses the answers one at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def head(self) -> Reply:
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), WAIT)
        lines = raw.decode("latin-1").split("\r\n")
        version, status, *_ = lines[0].split(" ")
        assert version == "HTTP/1.1", lines[0]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                assert name.lower() not in headers, f"duplicate header {name}"
                headers[name.lower()] = value.strip()
        return Reply(int(status), headers, b"", raw)

    async def chunk(self) -> bytes:
        """One chunk of a chunked body (b"" for the terminating zero chunk, trailers consumed)."""
        size_line = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), WAIT)
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            assert await asyncio.wait_for(self.reader.readuntil(b"\r\n"), WAIT) == b"\r\n"
            return b""
        data = await asyncio.wait_for(self.reader.readexactly(size + 2), WAIT)
        assert data.endswith(b"\r\n")
        return data[:-2]

    async def response(self, *, head_only: bool = False) -> Reply:
        reply = await self.head()
        if head_only or reply.status < 200:
            return reply
        if "content-length" in reply.headers:
            reply.body = await asyncio.wait_for(self.reader.readexactly(int(reply.headers["content-length"])), WAIT)
        elif reply.headers.get("transfer-encoding") == "chunked":
            parts = []
            while part := await self.chunk():
                parts.append(part)
            reply.body = b"".join(parts)
        else:  # close-delimited
            reply.body = await asyncio.wait_for(self.reader.read(), WAIT)
        return reply

    async def at_eof(self, timeout: float = WAIT) -> bool:
        """True when the server closed the connection with nothing more to say."""
        try:
            return await asyncio.wait_for(self.reader.read(1), timeout) == b""
        except ConnectionResetError:
            return True

    async def silent(self, timeout: float = 0.05) -> bool:
        """True when nothing arrives (and the connection stays open) for `timeout` seconds."""
        try:
            await asyncio.wait_for(self.reader.read(1), timeout)
        except TimeoutError:
            return True
        return False

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


class Echo:
    """A handler that records every request and answers with what it saw."""

    def __init__(self) -> None:
        self.requests: list[Request] = []

    async def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        if request.path.endswith("/boom"):
            raise RuntimeError("handler bug")
        if request.path.startswith("/slow"):
            await asyncio.sleep(float(request.query.get("s", "0.1")))
        headers = {"X-Method": request.method, "X-Path": request.path, "X-Body-Length": str(len(request.body))}
        return Response(200, request.body or request.path.encode(), headers)


async def _wait_for(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


def _routed(router: Router) -> Callable[[Request], Awaitable[Response | StreamResponse]]:
    """A dispatcher in the gateway's manner: route, 405 with Allow, or 404."""

    async def dispatch(request: Request) -> Response | StreamResponse:
        handler, request.match_info, request.route, allowed = router.resolve(request.method, request.path)
        if handler is None:
            if allowed:
                return Response(405, b"method not allowed", {"Allow": ", ".join(allowed)})
            return Response(404, b"not found")
        return await handler(request)

    return dispatch


# -- requests and responses ----------------------------------------------------------------------


async def test_get_sees_method_path_query_and_lower_case_headers() -> None:
    echo = Echo()
    async with _serving(echo) as (_, port):
        client = await Client.open(port)
        await client.send(b"GET /items/a%20b?x=1&x=2&name=J%C3%BCrgen+K&empty=&flag HTTP/1.1\r\n"
                          b"Host: example\r\nX-Custom-Thing: Value\r\nAccept: a\r\nAccept: b\r\n\r\n")
        reply = await client.response()
        await client.close()
    assert reply.head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert reply.headers["content-length"] == str(len(reply.body))
    assert reply.headers["x-method"] == "GET" and reply.headers["x-path"] == "/items/a%20b"
    date = parsedate_to_datetime(reply.headers["date"])
    assert abs(date.timestamp() - time.time()) < 5 and reply.headers["date"].endswith(" GMT")
    (request,) = echo.requests
    assert request.method == "GET" and request.http_version == "1.1"
    assert request.path == "/items/a%20b"  # the path is left as sent; only router captures are decoded
    assert request.query_string == "x=1&x=2&name=J%C3%BCrgen+K&empty=&flag"
    assert request.query == {"x": "1", "name": "Jürgen K", "empty": "", "flag": ""}  # first value wins
    assert request.headers["host"] == "example" and request.headers["x-custom-thing"] == "Value"
    assert request.headers["accept"] == "a, b"  # repeated headers are joined
    assert all(name == name.lower() for name in request.headers)
    assert request.body == b""


async def test_post_with_content_length_raw_and_through_httpx() -> None:
    echo = Echo()
    async with _serving(echo, max_body=1000) as (_, port):
        client = await Client.open(port)
        body = b'{"a": 1}\r\n\r\nGET / HTTP/1.1\r\n\r\n'  # bytes that look like a request stay body
        await client.send(b"POST /p HTTP/1.1\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
        reply = await client.response()
        assert reply.status == 200 and reply.body == body and reply.headers["x-body-length"] == str(len(body))
        assert await client.silent()  # no second answer: the embedded "request" was body
        await client.close()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            resp = await http.post("/submit?k=v", content=b"x" * 1000, headers={"X-Trace": "t1"})
    assert resp.status_code == 200 and resp.content == b"x" * 1000
    assert resp.headers["x-method"] == "POST" and resp.headers["content-length"] == "1000"
    request = echo.requests[-1]
    assert request.path == "/submit" and request.query == {"k": "v"} and request.headers["x-trace"] == "t1"


async def test_custom_status_and_headers_and_empty_and_large_bodies() -> None:
    big = bytes(range(256)) * 512  # 128 KiB: written with writelines, not one concatenation

    async def handler(request: Request) -> Response:
        if request.path == "/teapot":
            return Response(418, b"short and stout", {"X-Kind": "teapot", "Content-Type": "text/plain"})
        if request.path == "/empty":
            return Response(200)
        return Response(200, big)

    async with _serving(handler) as (_, port):
        client = await Client.open(port)
        await client.send(b"GET /teapot HTTP/1.1\r\n\r\nGET /empty HTTP/1.1\r\n\r\nGET /big HTTP/1.1\r\n\r\n")
        teapot, empty, large = [await client.response() for _ in range(3)]
        await client.close()
    assert teapot.status == 418 and teapot.head.startswith(b"HTTP/1.1 418 ")
    assert teapot.headers["x-kind"] == "teapot" and teapot.headers["content-type"] == "text/plain"
    assert teapot.body == b"short and stout" and teapot.headers["content-length"] == "15"
    assert empty.status == 200 and empty.headers["content-length"] == "0" and empty.body == b""
    assert large.body == big and large.headers["content-length"] == str(len(big))


# -- connection management -----------------------------------------------------------------------


async def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    echo = Echo()
    async with _serving(echo) as (server, port):
        client = await Client.open(port)
        for i in range(5):
            await client.send(b"POST /n/%d HTTP/1.1\r\nContent-Length: 1\r\n\r\n%d" % (i, i))
            reply = await client.response()
            assert reply.status == 200 and reply.body == b"%d" % i
            assert "connection" not in reply.headers  # HTTP/1.1 keeps the connection by default
        assert len(server.connections) == 1
        await client.send(b"GET /last HTTP/1.1\r\nConnection: close\r\n\r\n")
        reply = await client.response()
        assert reply.status == 200 and reply.headers["connection"] == "close"
        assert await client.at_eof()
        await client.close()
    assert [r.path for r in echo.requests] == [f"/n/{i}" for i in range(5)] + ["/last"]


async def test_http10_closes_unless_keep_alive_is_asked_for() -> None:
    echo = Echo()
    async with _serving(echo) as (_, port):
        client = await Client.open(port)
        await client.send(b"GET /old HTTP/1.0\r\n\r\n")
        reply = await client.response()
        assert reply.status == 200 and reply.body == b"/old" and reply.headers["connection"] == "close"
        assert await client.at_eof()
        await client.close()

        client = await Client.open(port)
        for path in (b"/a", b"/b"):
            await client.send(b"GET %b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % path)
            reply = await client.response()
            assert reply.status == 200 and reply.body == path
            assert reply.headers["connection"] == "keep-alive"
        assert await client.silent()  # still open
        await client.send(b"GET /c HTTP/1.0\r\n\r\n")
        assert (await client.response()).body == b"/c"
        assert await client.at_eof()
        await client.close()
    assert [r.http_version for r in echo.requests] == ["1.0"] * 4


async def test_pipelined_requests_are_answered_in_order_even_when_the_first_is_slowest() -> None:
    echo = Echo()
    async with _serving(echo) as (_, port):
        client = await Client.open(port)
        await client.send(b"GET /slow?s=0.15 HTTP/1.1\r\n\r\n"
                          b"POST /second HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                          b"GET /slow?s=0.01 HTTP/1.1\r\n\r\n")
        replies = [await client.response() for _ in range(3)]
        await client.close()
    assert [r.headers["x-path"] for r in replies] == ["/slow", "/second", "/slow"]
    assert [r.body for r in replies] == [b"/slow", b"abc", b"/slow"]
    assert [r.query.get("s") for r in echo.requests if r.path == "/slow"] == ["0.15", "0.01"]


async def test_a_long_pipeline_pauses_reading_and_resumes() -> None:
    paused: list[bool] = []

    async def handler(request: Request) -> Response:
        await asyncio.sleep(0.001)
        assert request._connection is not None
        paused.append(request._connection.paused_reading)
        return Response(200, request.path.encode())

    count = 3 * http_server._MAX_QUEUED
    async with _serving(handler) as (_, port):
        client = await Client.open(port)
        await client.send(b"".join(b"GET /r/%d HTTP/1.1\r\n\r\n" % i for i in range(count)))
        bodies = [(await client.response()).body for _ in range(count)]
        await client.send(b"GET /after HTTP/1.1\r\n\r\n")  # reading resumed: a later request is read
        assert (await client.response()).body == b"/after"
        await client.close()
    assert bodies == [b"/r/%d" % i for i in range(count)]
    assert any(paused) and not paused[-1]


async def test_chunked_request_body_is_reassembled() -> None:
    echo = Echo()
    async with _serving(echo, max_body=1000) as (_, port):
        client = await Client.open(port)
        await client.send(b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await asyncio.sleep(0.02)  # the rest arrives in later reads
        await client.send(b"1;ext=1\r\n \r\n")
        await client.send(b"a\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n")
        reply = await client.response()
        assert reply.status == 200 and reply.body == b"hello 0123456789"
        await client.close()

        async def parts() -> AsyncIterator[bytes]:
            for part in (b"abc", b"", b"def" * 100):
                yield part

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            resp = await http.post("/gen", content=parts())
    assert resp.status_code == 200 and resp.content == b"abc" + b"def" * 100
    assert echo.requests[-1].headers["transfer-encoding"] == "chunked"


async def test_expect_100_continue_is_answered_before_the_body_is_sent() -> None:
    echo = Echo()
    async with _serving(echo) as (_, port):
        client = await Client.open(port)
        await client.send(b"POST /c HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        interim = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), WAIT)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        assert echo.requests == []
        await client.send(b"hello")
        reply = await client.response()
        assert reply.status == 200 and reply.body == b"hello"
        await client.send(b"POST /d HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi")  # no Expect, no 100
        reply = await client.response()
        assert reply.status == 200 and reply.body == b"hi"
        await client.close()


# -- refusals --------------------------------------------------------------------------------------


async def test_content_length_over_max_body_is_413_before_the_body_is_sent() -> None:
    echo = Echo()
    async with _serving(echo, max_body=100, error_body=error_body) as (_, port):
        client = await Client.open(port)
        await client.send(b"POST /v1/models/m/invoke HTTP/1.1\r\nX-Request-Id: rid-413\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 101\r\n\r\n")
        reply = await client.response()  # no body sent at all: the answer must not wait for it
        assert await client.at_eof()
        await client.close()

        client = await Client.open(port)  # exactly the limit is fine
        await client.send(b"POST /v1/models/m/invoke HTTP/1.1\r\nContent-Length: 100\r\n\r\n" + b"b" * 100)
        ok = await client.response()
        await client.close()
    assert reply.status == 413 and reply.head.startswith(b"HTTP/1.1 413 Payload Too Large\r\n")
    assert reply.headers["connection"] == "close" and reply.headers["content-type"] == "application/json"
    assert reply.headers["x-request-id"] == "rid-413"
    assert reply.json() == {"error": {"code": "request_too_large", "message": "request body is larger than 100 bytes",
                                      "field": "body", "request_id": "rid-413"}}
    assert ok.status == 200 and ok.body == b"b" * 100
    assert [len(r.body) for r in echo.requests] == [100]


async def test_413_in_the_v2_error_shape_with_a_generated_request_id() -> None:
    async with _serving(Echo(), max_body=10, error_body=error_body) as (_, port):
        client = await Client.open(port)
        await client.send(b"POST /v2/models/m/infer HTTP/1.1\r\nContent-Length: 11\r\n\r\n")
        reply = await client.response()
        assert await client.at_eof()
        await client.close()
    payload = reply.json()
    assert reply.status == 413 and isinstance(payload["error"], str) and "10 bytes" in payload["error"]
    assert payload["code"] == "request_too_large"
    assert payload["request_id"] == reply.headers["x-request-id"] and len(payload["request_id"]) >= 16


async def test_chunked_body_growing_over_max_body_is_413() -> None:
    echo = Echo()
    async with _serving(echo, max_body=100, error_body=error_body) as (_, port):
        client = await Client.open(port)
        chunk = b"50\r\n" + b"z" * 80 + b"\r\n"
        await client.send(b"POST /v1/models/m/invoke HTTP/1.1\r\nX-Request-Id: rid-c\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n" + chunk + chunk)
        reply = await client.response()
        assert await client.at_eof()
        await client.close()
    assert reply.status == 413 and reply.headers["connection"] == "close"
    assert reply.json()["error"]["code"] == "request_too_large"
    assert reply.json()["error"]["request_id"] == reply.headers["x-request-id"] == "rid-c"
    assert echo.requests == []


async def test_plain_text_errors_without_an_error_body_callback() -> None:
    async with _serving(Echo(), max_body=0) as (_, port):
        client = await Client.open(port)
        await client.send(b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\n")
        reply = await client.response()
        await client.close()
    assert reply.status == 413 and reply.headers["content-type"] == "text/plain"
    assert reply.body == b"request body is larger than 0 bytes\n"


async def test_malformed_request_is_400_and_closes() -> None:
    echo = Echo()
    async with _serving(echo, error_body=error_body) as (_, port):
        client = await Client.open(port)
        await client.send(b"GET /fine HTTP/1.1\r\n\r\n")
        assert (await client.response()).status == 200
        await client.send(b"THIS IS NOT HTTP\r\n\r\n")
        reply = await client.response()
        assert reply.status == 400 and reply.headers["connection"] == "close"
        assert reply.json()["error"]["code"] == "bad_request"
        assert "malformed HTTP request" in reply.json()["error"]["message"]
        assert await client.at_eof()
        await client.close()

        for bad in (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                    b"GET / HTTP/9.9\r\n\r\n",
                    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
            client = await Client.open(port)
            await client.send(bad)
            reply = await client.response()
            assert reply.status == 400, bad
            assert await client.at_eof()
            await client.close()
    assert [r.path for r in echo.requests] == ["/fine"]


async def test_header_block_over_64_kib_is_431() -> None:
    echo = Echo()
    async with _serving(echo, error_body=error_body) as (_, port):
        client = await Client.open(port)
        headers = b"".join(b"X-Filler-%d: %b\r\n" % (i, b"v" * 1000) for i in range(70))
        await client.send(b"GET /v1/x HTTP/1.1\r\nX-Request-Id: rid-431\r\n" + headers + b"\r\n")
        reply = await client.response()
        assert await client.at_eof()
        await client.close()

        client = await Client.open(port)  # a request line alone over the limit
        await client.send(b"GET /" + b"u" * (65 * 1024) + b" HTTP/1.1\r\n\r\n")
        long_url = await client.response()
        assert await client.at_eof()
        await client.close()

        client = await Client.open(port)  # just under the limit is served
        await client.send(b"GET /ok HTTP/1.1\r\n" + b"\r\n".join(headers.split(b"\r\n")[:60]) + b"\r\n\r\n")
        ok = await client.response()
        await client.close()
    assert reply.status == 431 and reply.head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    assert reply.headers["connection"] == "close"
    assert reply.json()["error"]["code"] == "header_too_large"
    assert long_url.status == 431
    assert ok.status == 200 and [r.path for r in echo.requests] == ["/ok"]


async def test_an_unterminated_header_line_over_64_kib_is_431() -> None:
    async with _serving(Echo()) as (_, port):
        client = await Client.open(port)
        await client.send(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (200 * 1024))  # the line never ends
        try:
            reply = await asyncio.wait_for(client.response(), 0.5)
        finally:
            await client.close()
    assert reply.status == 431


async def test_a_refused_pipelined_request_does_not_overtake_the_one_before() -> None:
    async with _serving(Echo(), max_body=100) as (_, port):
        client = await Client.open(port)
        await client.send(b"GET /slow?s=0.1 HTTP/1.1\r\n\r\nPOST /big HTTP/1.1\r\nContent-Length: 1000\r\n\r\n")
        first = await client.response()
        assert first.status == 200 and first.body == b"/slow"
        second = await client.response()
        await client.close()
    assert second.status == 413


async def test_a_refused_upgrade_request_does_not_run_the_handler() -> None:
    echo = Echo()
    async with _serving(echo) as (_, port):
        client = await Client.open(port)
        await client.send(b"POST /v1/models/m/invoke HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                          b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nContent-Length: 3\r\n\r\nabc")
        reply = await client.response()
        assert await client.at_eof()
        await client.close()
        await asyncio.sleep(0.05)
    assert reply.status == 400 and b"upgrades are not supported" in reply.body
    assert [(r.path, r.body) for r in echo.requests] == []


async def test_expect_100_continue_is_ignored_on_http10() -> None:
    async with _serving(Echo()) as (_, port):
        client = await Client.open(port)
        await client.send(b"POST /c HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nab")
        reply = await client.response()
        await client.close()
    assert reply.status == 200 and reply.body == b"ab"


# -- routing -----------------------------------------------------------------------------------------


def _named(name: str) -> Callable[[Request], Awaitable[Response]]:
    async def handler(request: Request) -> Response:
        return Response(200, name.encode())

    return handler


async def test_router_captures_literals_and_misses() -> None:
    infer, version_infer, health, root = (_named(n) for n in ("infer", "vinfer", "health", "root"))
    router = Router()
    router.add("POST", "/v2/models/{model}/infer", infer)
    router.add("POST", "/v2/models/{model}/versions/{version}/infer", version_infer)
    router.add("GET", "/v2/health/live", health)
    router.add("GET", "/", root)

    assert router.resolve("POST", "/v2/models/resnet/infer") == (infer, {"model": "resnet"},
                                                                 "/v2/models/{model}/infer", [])
    assert router.resolve("POST", "/v2/models/m/versions/3/infer") == (
        version_infer, {"model": "m", "version": "3"}, "/v2/models/{model}/versions/{version}/infer", [])
    handler, match, _, _ = router.resolve("POST", "/v2/models/a%2Fb%20c/infer")
    assert handler is infer and match == {"model": "a/b c"}  # captures are percent-decoded
    assert router.resolve("GET", "/v2/health/live")[0] is health
    assert router.resolve("GET", "/")[0] is root
    assert router.resolve("GET", "/v2/health/live/")[0] is health  # a trailing slash is the same path
    assert router.resolve("HEAD", "/v2/health/live")[0] is health  # HEAD is served by GET

    miss = (None, {}, "", [])
    assert router.resolve("GET", "/v2/health/ready") == miss  # literal segments must match
    assert router.resolve("POST", "/v2/models/m/infer/extra") == miss  # segment counts must match
    assert router.resolve("POST", "/v2/models//infer") == miss  # an empty segment is not a {model}
    assert router.resolve("POST", "/v2/models/m/nope") == miss
    assert router.resolve("GET", "/v3") == miss


async def test_router_405_lists_allowed_methods_and_keeps_registration_order() -> None:
    get_one, put_one, post_any, get_literal, replaced = (
        _named(n) for n in ("get", "put", "post", "literal", "replaced"))
    router = Router()
    router.add("GET", "/things/{id}", get_one)
    router.add("PUT", "/things/{id}", put_one)
    router.add("POST", "/jobs/{id}", post_any)
    router.add("GET", "/things/special", get_literal)  # after /things/{id}: never reached for GET

    assert router.resolve("GET", "/things/special") == (get_one, {"id": "special"}, "/things/{id}", [])
    handler, _, _, allowed = router.resolve("DELETE", "/things/7")
    assert handler is None and allowed == ["GET", "PUT"]
    assert router.resolve("HEAD", "/jobs/1") == (None, {}, "", ["POST"])
    # a pattern that matches with another method does not stop a later pattern that has it
    router.add("DELETE", "/jobs/cancel", replaced)
    assert router.resolve("DELETE", "/jobs/cancel") == (replaced, {}, "/jobs/cancel", [])
    # the first registered pattern wins, in either order
    other = Router()
    other.add("GET", "/things/special", get_literal)
    other.add("GET", "/things/{id}", get_one)
    assert other.resolve("GET", "/things/special")[0] is get_literal
    assert other.resolve("GET", "/things/else")[0] is get_one
    # adding the same method and pattern again replaces the handler
    other.add("GET", "/things/{id}", replaced)
    assert other.resolve("GET", "/things/else")[0] is replaced


async def test_routed_server_head_404_and_405() -> None:
    seen: list[tuple[str, dict[str, str], str]] = []

    async def item(request: Request) -> Response:
        seen.append((request.method, dict(request.match_info), request.route))
        name = request.match_info["id"]
        return Response(200, b"item " + name.encode(), {"X-Item": name})

    router = Router()
    router.add("GET", "/items/{id}", item)
    router.add("POST", "/orders", item)
    async with _serving(_routed(router)) as (_, port):
        client = await Client.open(port)
        # HEAD then GET in one write: if HEAD's answer carried a body, the GET's would be misread
        await client.send(b"HEAD /items/7 HTTP/1.1\r\n\r\nGET /items/caf%C3%A9 HTTP/1.1\r\n\r\n")
        head = await client.response(head_only=True)
        get = await client.response()
        await client.send(b"POST /items/7 HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        not_allowed = await client.response()
        await client.send(b"HEAD /orders HTTP/1.1\r\n\r\n")
        head_not_allowed = await client.response(head_only=True)
        await client.send(b"GET /nowhere HTTP/1.1\r\n\r\n")
        missing = await client.response()
        assert await client.silent()
        await client.close()
    assert head.status == 200 and head.headers["content-length"] == "6" and head.headers["x-item"] == "7"
    assert get.status == 200 and get.body == "item café".encode()
    assert seen == [("HEAD", {"id": "7"}, "/items/{id}"), ("GET", {"id": "café"}, "/items/{id}")]
    assert not_allowed.status == 405 and not_allowed.headers["allow"] == "GET"
    assert not_allowed.head.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert head_not_allowed.status == 405 and head_not_allowed.headers["allow"] == "POST"
    assert missing.status == 404 and missing.body == b"not found"


# -- handler failures ------------------------------------------------------------------------------


async def test_a_failing_handler_gets_a_500_and_the_connection_goes_on() -> None:
    echo = Echo()
    async with _serving(echo, error_body=error_body) as (_, port):
        client = await Client.open(port)
        await client.send(b"GET /boom HTTP/1.1\r\nX-Request-Id: rid-500\r\n\r\n")
        reply = await client.response()
        await client.send(b"GET /v2/boom HTTP/1.1\r\n\r\n")
        await client.send(b"GET /boom HTTP/1.1\r\n\r\n")
        await client.send(b"GET /after HTTP/1.1\r\n\r\n")
        replies = [await client.response() for _ in range(2)]
        after = await client.response()
        await client.close()
    assert reply.status == 500 and reply.head.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert reply.headers["content-type"] == "application/json" and reply.headers["x-request-id"] == "rid-500"
    assert reply.json() == {"error": {"code": "internal_error", "message": "internal error", "request_id": "rid-500"}}
    assert replies[0].status == 500 and replies[0].json()["error"] == "internal error"  # the v2 shape on /v2
    assert replies[0].json()["request_id"] == replies[0].headers["x-request-id"]
    assert replies[1].status == 500 and replies[1].json()["error"]["code"] == "internal_error"
    assert after.status == 200 and after.body == b"/after"
    assert [r.path for r in echo.requests] == ["/boom", "/v2/boom", "/boom", "/after"]


# -- streaming -------------------------------------------------------------------------------------


async def test_stream_response_is_chunked_and_arrives_incrementally() -> None:
    go = asyncio.Event()
    written: list[int] = []

    async def handler(request: Request) -> Response | StreamResponse:
        if request.path != "/events":
            return Response(200, b"after the stream")
        stream = StreamResponse({"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await stream.prepare(request)
        await stream.write(b"data: 1\n\n")
        written.append(1)
        await go.wait()
        await stream.write(b"")  # nothing: must not end the stream with a zero chunk
        await stream.write(b"data: 2\n\n")
        await stream.write(b"data: three\n\n")
        written.append(2)
        return stream

    async with _serving(handler) as (_, port):
        client = await Client.open(port)
        await client.send(b"GET /events HTTP/1.1\r\n\r\n")
        head = await client.head()
        assert head.status == 200 and head.headers["transfer-encoding"] == "chunked"
        assert head.headers["content-type"] == "text/event-stream" and "content-length" not in head.headers
        assert "date" in head.headers
        assert await client.chunk() == b"data: 1\n\n"
        assert written == [1] and await client.silent()  # the handler waits: nothing more yet
        go.set()
        assert await client.chunk() == b"data: 2\n\n"
        assert await client.chunk() == b"data: three\n\n"
        assert await client.chunk() == b""  # the terminating zero chunk
        await client.send(b"GET /next HTTP/1.1\r\n\r\n")  # and the connection is still usable
        after = await client.response()
        await client.close()
    assert after.status == 200 and after.body == b"after the stream"


async def test_stream_read_incrementally_by_httpx() -> None:
    go = asyncio.Event()

    async def handler(request: Request) -> StreamResponse:
        stream = StreamResponse({"Content-Type": "text/event-stream"})
        await stream.prepare(request)
        await stream.write(b"data: first\n\n")
        await go.wait()
        for i in range(3):
            await stream.write(b"data: %d\n\n" % i)
        return stream

    async with (_serving(handler) as (_, port), httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
                http.stream("GET", "/sse") as resp):
        chunks = resp.aiter_bytes()
        assert await asyncio.wait_for(anext(chunks), WAIT) == b"data: first\n\n"
        go.set()
        rest = b"".join([chunk async for chunk in chunks])
    assert resp.status_code == 200 and rest == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"


async def test_stream_on_http10_is_close_delimited() -> None:
    async def handler(request: Request) -> StreamResponse:
        stream = StreamResponse({"Content-Type": "text/event-stream"}, status=200)
        await stream.prepare(request)
        for i in range(3):
            await stream.write(b"data: %d\n\n" % i)
        return stream

    async with _serving(handler) as (_, port):
        client = await Client.open(port)
        await client.send(b"GET /events HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        reply = await client.response()
        await client.close()
    assert reply.headers["connection"] == "close" and "transfer-encoding" not in reply.headers
    assert "content-length" not in reply.headers
    assert reply.body == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"


async def test_a_client_gone_mid_stream_makes_write_raise() -> None:
    go = asyncio.Event()
    outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def handler(request: Request) -> StreamResponse:
        stream = StreamResponse()
        await stream.prepare(request)
        await stream.write(b"data: 1\n\n")
        await go.wait()
        try:
            for _ in range(100):
                await stream.write(b"data: more\n\n")
        except ConnectionResetError as exc:
            outcome.set_result(exc)
            raise
        outcome.set_result(None)
        return stream

    async with _serving(handler) as (server, port):
        client = await Client.open(port)
        await client.send(b"GET /events HTTP/1.1\r\n\r\n")
        await client.head()
        assert await client.chunk() == b"data: 1\n\n"
        await client.close()
        await _wait_for(lambda: not server.connections)  # the server noticed
        go.set()
        assert isinstance(await asyncio.wait_for(outcome, WAIT), ConnectionResetError)


async def test_a_stalled_reader_applies_backpressure_and_its_disconnect_raises() -> None:
    outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
    writes = 0
    piece = b"x" * 65536

    async def handler(request: Request) -> StreamResponse:
        nonlocal writes
        stream = StreamResponse()
        await stream.prepare(request)
        try:
            while writes < 1000:  # 64 MiB: far beyond any socket buffer
                await stream.write(piece)
                writes += 1
        except ConnectionResetError as exc:
            outcome.set_result(exc)
            raise
        outcome.set_result(None)
        return stream

    async with _serving(handler) as (_, port):
        client = await Client.open(port)
        await client.send(b"GET /flood HTTP/1.1\r\n\r\n")
        await client.head()  # then read nothing more
        await asyncio.sleep(0.2)
        before = writes
        await asyncio.sleep(0.1)
        assert 0 < before == writes < 1000 and not outcome.done()  # blocked in drain, not buffering
        client.writer.transport.abort()
        assert isinstance(await asyncio.wait_for(outcome, WAIT), ConnectionResetError)


async def test_a_handler_failing_mid_stream_does_not_write_a_500_into_the_stream() -> None:
    async def handler(request: Request) -> StreamResponse:
        stream = StreamResponse({"Content-Type": "text/event-stream"})
        await stream.prepare(request)
        await stream.write(b"data: 1\n\n")
        raise RuntimeError("a bug after the headers went out")

    async with _serving(handler) as (_, port):
        client = await Client.open(port)
        await client.send(b"GET /events HTTP/1.1\r\n\r\n")
        head = await client.head()
        assert head.status == 200 and await client.chunk() == b"data: 1\n\n"
        rest = b""
        with contextlib.suppress(TimeoutError):
            while data := await asyncio.wait_for(client.reader.read(65536), 0.3):
                rest += data
        closed = client.reader.at_eof()
        await client.close()
    assert b"HTTP/1.1 500" not in rest and not rest.endswith(b"0\r\n\r\n")
    assert closed  # the stream must be cut off so that the client sees it incomplete


# -- timeouts --------------------------------------------------------------------------------------


async def test_idle_keep_alive_connection_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_server, "_CHECK_EVERY", 0.02)
    monkeypatch.setattr(http_server, "KEEPALIVE_SECONDS", 0.2)
    async with _serving(Echo()) as (server, port):
        client = await Client.open(port)
        await client.send(b"GET /slow?s=0.35 HTTP/1.1\r\n\r\n")  # a handler longer than the idle limit
        assert (await client.response()).status == 200
        start = time.monotonic()
        assert await client.at_eof()
        assert 0.15 < time.monotonic() - start < 1.0
        assert not server.connections
        await client.close()


async def test_a_stalled_request_gets_408(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_server, "_CHECK_EVERY", 0.02)
    monkeypatch.setattr(http_server, "STALL_SECONDS", 0.2)
    echo = Echo()
    async with _serving(echo, error_body=error_body) as (_, port):
        body_stalled, head_stalled, steady = [await Client.open(port) for _ in range(3)]
        start = time.monotonic()
        await body_stalled.send(b"POST /v1/x HTTP/1.1\r\nX-Request-Id: rid-408\r\nContent-Length: 10\r\n\r\nabc")
        await head_stalled.send(b"GET /v1/y HTTP/1.1\r\nHost: x\r\n")
        await steady.send(b"POST /steady HTTP/1.1\r\nContent-Length: 4\r\n\r\n")

        async def trickle() -> None:  # slower in total than STALL_SECONDS, but never stalled that long
            for byte in b"abcd":
                await asyncio.sleep(0.08)
                await steady.send(bytes([byte]))

        stalled, (steady_reply, _) = await asyncio.gather(
            body_stalled.response(), asyncio.gather(steady.response(), trickle()))
        elapsed = time.monotonic() - start
        other = await head_stalled.response()
        assert await body_stalled.at_eof() and await head_stalled.at_eof()
        for client in (body_stalled, head_stalled, steady):
            await client.close()
    assert 0.15 < elapsed < 1.5
    assert stalled.status == 408 and stalled.headers["connection"] == "close"
    assert stalled.json()["error"] == {"code": "request_timeout",
                                       "message": "the request was not received in time", "request_id": "rid-408"}
    assert other.status == 408
    assert steady_reply.status == 200 and steady_reply.body == b"abcd"
    assert [r.path for r in echo.requests] == ["/steady"]


async def test_headers_trickled_line_by_line_get_408_after_the_header_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each line arrives before the stall limit, but the headers never end: cut off all the same."""
    monkeypatch.setattr(http_server, "_CHECK_EVERY", 0.02)
    monkeypatch.setattr(http_server, "STALL_SECONDS", 0.3)
    monkeypatch.setattr(http_server, "HEADER_SECONDS", 0.4)
    async with _serving(Echo(), error_body=error_body) as (_, port):
        client = await Client.open(port)
        start = time.monotonic()
        await client.send(b"GET /v1/y HTTP/1.1\r\n")

        async def trickle() -> None:
            for i in range(20):
                await asyncio.sleep(0.1)
                try:
                    await client.send(f"X-Line-{i}: {i}\r\n".encode())
                except (ConnectionError, OSError):
                    return

        async def answer() -> tuple[Any, float]:
            reply = await client.response()
            return reply, time.monotonic() - start

        (reply, elapsed), _ = await asyncio.gather(answer(), trickle())
        await client.close()
    assert reply.status == 408 and "headers" in reply.json()["error"]["message"]
    assert 0.35 < elapsed < 1.5  # the header deadline, long before the trickle's 2 s end


# -- shutdown --------------------------------------------------------------------------------------


async def test_shutdown_finishes_answers_in_progress_and_refuses_new_connections() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def handler(request: Request) -> Response:
        if request.path == "/slow":
            started.set()
            await release.wait()
            return Response(200, b"finished")
        return Response(200, b"fast")

    server = HttpServer(handler)
    port = _port()
    await server.listen("127.0.0.1", port)
    busy, idle = await Client.open(port), await Client.open(port)
    await idle.send(b"GET /fast HTTP/1.1\r\n\r\n")
    assert (await idle.response()).body == b"fast"
    await busy.send(b"GET /slow HTTP/1.1\r\n\r\n")
    await asyncio.wait_for(started.wait(), WAIT)

    stopping = asyncio.create_task(server.shutdown(grace=5.0))
    assert await idle.at_eof()  # the idle keep-alive connection is closed at once
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    assert not stopping.done()
    release.set()
    reply = await busy.response()
    assert reply.status == 200 and reply.body == b"finished"
    await asyncio.wait_for(stopping, WAIT)
    assert await busy.at_eof() and not server.connections
    await busy.close()
    await idle.close()


async def test_shutdown_cancels_handlers_that_outlive_the_grace() -> None:
    cancelled = asyncio.Event()

    async def handler(request: Request) -> Response:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Response(200)

    server = HttpServer(handler)
    port = _port()
    await server.listen("127.0.0.1", port)
    client = await Client.open(port)
    await client.send(b"GET /forever HTTP/1.1\r\n\r\n")
    await _wait_for(lambda: any(c.busy for c in server.connections))
    start = time.monotonic()
    await asyncio.wait_for(server.shutdown(grace=0.2), WAIT)
    assert 0.15 < time.monotonic() - start < 1.5
    assert await client.at_eof()  # closed without an answer
    await asyncio.wait_for(cancelled.wait(), WAIT)
    await client.close()


async def test_answers_during_the_drain_close_their_keep_alive_connections() -> None:
    """A keep-alive client (an ingress, a pool) is told to go, instead of sending on through the drain."""
    started, release = asyncio.Event(), asyncio.Event()

    async def handler(request: Request) -> Response:
        started.set()
        await release.wait()
        return Response(200, b"done")

    server = HttpServer(handler)
    port = _port()
    await server.listen("127.0.0.1", port)
    client = await Client.open(port)
    await client.send(b"GET /slow HTTP/1.1\r\n\r\n")
    await asyncio.wait_for(started.wait(), WAIT)
    stopping = asyncio.create_task(server.shutdown(grace=5.0))
    await asyncio.sleep(0.05)
    release.set()
    reply = await client.response()
    assert reply.status == 200 and reply.headers["connection"] == "close"
    assert await client.at_eof()
    await asyncio.wait_for(stopping, WAIT)
    await client.close()


async def test_a_client_that_reads_nothing_does_not_make_the_server_buffer_without_end() -> None:
    """Pipelined requests for 1 MiB answers, never read: the server stops answering (and reading)
    once its send buffer is full, so what it holds stays a few answers, not all of them."""
    big = b"x" * (1 << 20)

    async def handler(request: Request) -> Response:
        return Response(200, big)

    async with _serving(handler) as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.set_write_buffer_limits(high=1 << 24)
        writer.write(b"GET /big HTTP/1.1\r\n\r\n" * 200)  # 200 MiB of answers if all were made
        await asyncio.sleep(1.0)
        [conn] = list(server.connections)
        assert conn.transport is not None
        buffered = conn.transport.get_write_buffer_size()
        assert buffered <= 4 * len(big), buffered
        # Reading resumes the answers: the client gets every one of them in order.
        got = 0
        while got < 200:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200")
            await asyncio.wait_for(reader.readexactly(len(big)), 10)
            got += 1
        writer.close()


async def _unread_connection(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection whose receive buffer is a few KiB: what it does not read stays in the server."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: the window it offers
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.transport.set_write_buffer_limits(high=1 << 26)
    return reader, writer


async def test_pipelined_large_bodies_of_a_client_that_reads_nothing_are_not_all_read() -> None:
    """The queue is bounded in bytes as well as in requests: 16 waiting bodies of max_body each
    were held per connection. A client that reads nothing has one request in hand, not twelve."""
    body = b"y" * (1 << 20)
    answer = body * 8  # more than the kernel's socket buffers take (tcp_wmem's 4 MiB at most, by default)
    count = 12
    seen = 0

    async def handler(request: Request) -> Response:
        nonlocal seen
        seen += 1
        return Response(200, answer if request.body == body else b"")

    async with _serving(handler) as (server, port):
        reader, writer = await _unread_connection(port)
        writer.write((b"POST /echo HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body) * count)
        await asyncio.sleep(0.5)
        [conn] = list(server.connections)
        assert conn.paused_reading
        assert seen + len(conn.queue) <= 3, (seen, len(conn.queue))
        got = 0  # reading resumes it all, in order
        while got < count:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200")
            assert await asyncio.wait_for(reader.readexactly(len(answer)), 10) == answer
            got += 1
        assert seen == count
        writer.close()


async def test_a_request_sent_after_an_unread_answer_waits_and_a_stalled_client_is_let_go(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that sends each request once the last answer is out (nothing is ever queued) and
    reads none: its next request is not answered into the full buffer, and it is cut off."""
    monkeypatch.setattr(http_server, "STALL_SECONDS", 0.5)
    big = b"z" * (16 << 20)  # more than the kernel's socket buffers take
    seen: list[str] = []

    async def handler(request: Request) -> Response:
        seen.append(request.path)
        return Response(200, big)

    async with _serving(handler) as (server, port):
        _, writer = await _unread_connection(port)
        writer.write(b"GET /1 HTTP/1.1\r\n\r\n")
        await _wait_for(lambda: seen == ["/1"])
        await asyncio.sleep(0.1)  # the answer is out, unread
        writer.write(b"GET /2 HTTP/1.1\r\n\r\n")
        await asyncio.sleep(0.2)
        assert seen == ["/1"]
        await _wait_for(lambda: not server.connections)  # STALL_SECONDS without reading: let go
        assert seen == ["/1"]
        writer.close()
