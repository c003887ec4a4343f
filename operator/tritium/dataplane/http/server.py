"""The gateway's HTTP/1.1 server: llhttp parsing (httptools), a segment router, no framework.

The gateway is on every request's path, and on the tiny model aiohttp's server alone (parsing,
request/response objects, router, middleware) cost about as much CPU per request as Triton's
whole inference. This server keeps only what the gateway needs, and still faces arbitrary
clients the way a general server must: llhttp parses the requests (chunked uploads, HTTP/1.0,
pipelining, malformed input -> 400), bodies over the limit are refused with 413 before they are
read, `Expect: 100-continue` is answered, an idle or stalled connection is closed, and a handler
that fails still produces an answer. Streaming responses (SSE) are written chunked, with
backpressure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, unquote

import httptools

log = logging.getLogger("tritium.http")

MAX_HEADER_BYTES = 64 * 1024
KEEPALIVE_SECONDS = 75.0  # an idle keep-alive connection is closed after this long
STALL_SECONDS = 60.0  # a request whose bytes stop arriving midway is answered 408 after this long
# The request line and headers must all arrive within this long of their first byte: a client that
# trickles a header line every few seconds never stalls, and held a connection (and its buffers)
# for as long as it liked.
HEADER_SECONDS = 20.0
_CHECK_EVERY = 15.0
_MAX_QUEUED = 16  # pipelined requests waiting on one connection before it stops reading
# ... or that many bytes of their bodies: counted alone, 16 waiting bodies of up to max_body each
# were held per connection (tests/integration/test_gateway_memory.py).
_MAX_QUEUED_BYTES = 256 * 1024
# After a refusal, the connection is half-closed and what the client still sends is read and
# dropped for up to this long: closing at once, with its bytes unread, makes the kernel answer
# with a reset, which can destroy the refusal before the client has read it.
LINGER_SECONDS = 2.0

_REASONS = {
    100: "Continue", 200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 411: "Length Required",
    413: "Payload Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Entity", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}
_STATUS_LINES: dict[int, bytes] = {}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n".encode()
    return line


class _Date:
    """The Date header, formatted at most once a second."""

    second = 0
    value = b""

    @classmethod
    def header(cls) -> bytes:
        now = int(time.time())
        if now != cls.second:
            cls.second = now
            cls.value = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return cls.value


class Request:
    """One parsed request. Header names are lower-case; `state` carries per-request values."""

    __slots__ = (
        "_connection",
        "_query",
        "body",
        "headers",
        "http_version",
        "match_info",
        "method",
        "path",
        "peer",
        "query_string",
        "route",
        "state",
    )

    def __init__(self, method: str, path: str, query_string: str, headers: dict[str, str], body: bytes,
                 http_version: str = "1.1", peer: str = "") -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.body = body
        self.http_version = http_version
        self.peer = peer  # the connection's remote IP address ("" when it has none, e.g. a Unix socket)
        self.match_info: dict[str, str] = {}
        self.route = ""  # the matched route's pattern, a bounded label for metrics
        self.state: dict[str, Any] = {}
        self._query: dict[str, str] | None = None
        self._connection: _Connection | None = None

    @property
    def query(self) -> dict[str, str]:
        """Query parameters, the first value of each name."""
        if self._query is None:
            query: dict[str, str] = {}
            for name, value in parse_qsl(self.query_string, keep_blank_values=True):
                query.setdefault(name, value)
            self._query = query
        return self._query


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}


class StreamResponse:
    """A response written piece by piece (Server-Sent Events): chunked on HTTP/1.1."""

    def __init__(self, headers: dict[str, str] | None = None, status: int = 200) -> None:
        self.status = status
        self.headers = headers or {}
        self._connection: _Connection | None = None
        self._chunked = True
        self.sent = 0  # body bytes written so far (per-key byte counts, dataplane/security/layers.py)

    async def prepare(self, request: Request) -> None:
        conn = request._connection
        if conn is None or conn.closing:
            raise ConnectionResetError("the client went away")
        self._connection = conn
        conn.streaming = True
        self._chunked = request.http_version != "1.0"
        extra = b"Transfer-Encoding: chunked\r\n" if self._chunked else b"Connection: close\r\n"
        conn.write(_head(self.status, self.headers, extra))

    async def write(self, data: bytes) -> None:
        conn = self._connection
        if conn is None:
            raise RuntimeError("prepare() the stream first")
        if conn.closing:
            raise ConnectionResetError("the client went away")
        if data:
            self.sent += len(data)
            conn.write(b"%x\r\n%b\r\n" % (len(data), data) if self._chunked else data)
        await conn.drain()

    def finish(self) -> None:
        conn = self._connection
        if conn is not None and not conn.closing and self._chunked:
            conn.write(b"0\r\n\r\n")


Handler = Callable[[Request], Awaitable[Response | StreamResponse]]
# (status, code, message, request target, headers so far) -> (body, extra headers): the answers
# the server gives before any handler runs, in the application's own error shape.
ErrorBody = Callable[[int, str, str, str, dict[str, str]], tuple[bytes, dict[str, str]]]


def _head(status: int, headers: dict[str, str], extra: bytes = b"") -> bytes:
    lines = "".join([f"{k}: {v}\r\n" for k, v in headers.items()])
    return _status_line(status) + lines.encode("latin-1", "replace") + extra + _Date.header() + b"\r\n"


def _plain_error(status: int, code: str, message: str, target: str, headers: dict[str, str]) -> tuple[
        bytes, dict[str, str]]:
    return message.encode() + b"\n", {}


class Router:
    """Routes by path segments: `/v2/models/{model}/infer` matches one segment per `{name}`.

    Patterns are tried in the order they were added; a path that some pattern matches with
    another method gets 405 with Allow, any other path 404.
    """

    def __init__(self) -> None:
        self._routes: dict[int, list[tuple[tuple[str, ...], str, dict[str, Handler]]]] = {}

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        segments = tuple(pattern.strip("/").split("/")) if pattern != "/" else ()
        routes = self._routes.setdefault(len(segments), [])
        for existing, _, methods in routes:
            if existing == segments:
                methods[method] = handler
                return
        routes.append((segments, pattern, {method: handler}))

    def resolve(self, method: str, path: str) -> tuple[Handler | None, dict[str, str], str, list[str]]:
        """-> (handler, captured segments, pattern, allowed methods); handler None when it doesn't match."""
        parts = path.strip("/").split("/") if path != "/" else []
        allowed: list[str] = []
        for segments, pattern, methods in self._routes.get(len(parts), ()):
            match: dict[str, str] = {}
            for want, got in zip(segments, parts, strict=True):
                if want[0] == "{":
                    if not got:
                        break
                    match[want[1:-1]] = unquote(got) if "%" in got else got
                elif want != got:
                    break
            else:
                handler = methods.get("GET" if method == "HEAD" else method)
                if handler is not None:
                    return handler, match, pattern, []
                allowed.extend(methods)
        return None, {}, "", allowed


class _Connection(asyncio.Protocol):
    """One client connection: parses requests with llhttp and answers them in order."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.closing = False
        self.busy = False  # a handler is running for this connection
        # Requests waiting behind the one being answered; a bytes entry is a refusal, sent in turn, then close.
        self.queue: deque[tuple[Request | bytes, bool]] = deque()
        self.queued_bytes = 0  # the bodies of the requests in `queue`
        self.refused = False  # a refusal is queued: nothing more is read
        self.streaming = False  # a StreamResponse has sent its head: no other answer may follow
        self.task: asyncio.Task[None] | None = None
        self.paused_reading = False
        self._drain: asyncio.Future[None] | None = None
        self._paused_writing = False
        self._timer: asyncio.TimerHandle | None = None
        self.last_activity = 0.0
        self.peer = ""
        self._reset_message()

    def _reset_message(self) -> None:
        self.headers_complete = False
        self.url = b""
        self.header_bytes = 0
        self.body: list[bytes] = []
        self.body_size = 0
        self.in_message = False
        self.headers: dict[str, str] = {}
        self.message_started = 0.0

    # -- transport events ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peername = transport.get_extra_info("peername")
        self.peer = str(peername[0]) if isinstance(peername, tuple) and peername else ""
        self.server.connections.add(self)
        self.last_activity = self.loop.time()
        self._timer = self.loop.call_later(_CHECK_EVERY, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(ConnectionResetError("the client went away"))
        self.queue.clear()
        self.queued_bytes = 0

    def pause_writing(self) -> None:
        self._paused_writing = True
        self._flow()

    def resume_writing(self) -> None:
        self._paused_writing = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._flow()

    def _flow(self) -> None:
        """Read the client's requests only while it reads its answers and few of them wait.

        Reading stops when the queue is full (in requests or in bytes), and while the client is not
        reading an answer and a request of its is in hand: so a client that reads nothing makes
        this connection hold its one answer and about one request, whatever it sends.
        """
        transport = self.transport
        if transport is None or self.closing or self.refused:
            return
        if (len(self.queue) >= _MAX_QUEUED or self.queued_bytes >= _MAX_QUEUED_BYTES
                or (self._paused_writing and self.busy)):
            if not self.paused_reading:
                transport.pause_reading()
                self.paused_reading = True
        elif (self.paused_reading and len(self.queue) < _MAX_QUEUED // 2
              and self.queued_bytes < _MAX_QUEUED_BYTES // 2):
            transport.resume_reading()
            self.paused_reading = False

    async def drain(self) -> None:
        if self._paused_writing and not self.closing:
            self._drain = self.loop.create_future()
            try:
                await self._drain
            finally:
                self._drain = None

    def data_received(self, data: bytes) -> None:
        if self.closing or self.refused:
            return
        self.last_activity = self.loop.time()
        in_head = self.in_message and not self.headers_complete
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Refused in on_headers_complete already: llhttp would hand over the request without
            # its body and stop parsing the connection as HTTP/1.1.
            self.reject(400, "bad_request", "protocol upgrades are not supported")
            return
        except httptools.HttpParserError as exc:
            self.reject(400, "bad_request", f"malformed HTTP request: {exc}")
            return
        if in_head and self.in_message and not self.headers_complete:
            # llhttp hands over a header only once its line ends: bound a line that never does.
            self.header_bytes += len(data)
            if self.header_bytes > MAX_HEADER_BYTES:
                self.reject(431, "header_too_large", "request line and headers are too large")

    def write(self, data: bytes) -> None:
        if not self.closing and self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if not self.closing and self.transport is not None:
            self.closing = True
            self.transport.close()

    def close_lingering(self) -> None:
        """Close after a final answer: our side first (FIN), the rest of theirs read and dropped."""
        transport = self.transport
        if self.closing or transport is None:
            return
        if not transport.can_write_eof():  # TLS: no half-close
            self.close()
            return
        self.closing = True  # data_received drops everything from now on
        transport.write_eof()
        with contextlib.suppress(RuntimeError):
            transport.resume_reading()  # reading may have been paused: the bytes must be read to be dropped
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(LINGER_SECONDS, transport.close)

    def reject(self, status: int, code: str, message: str) -> None:
        """Answer before (or instead of) reading a request, then close: the stream is out of step."""
        if self.closing or self.refused:
            return
        body, extra = self.server.error_body(status, code, message, self.url.decode("latin-1"), self.headers)
        headers = {"Content-Type": self.server.error_content_type, **extra, "Content-Length": str(len(body)),
                   "Connection": "close"}
        answer = _head(status, headers) + body
        if self.busy or self.queue:
            # Earlier pipelined requests are answered first: this refusal waits its turn.
            self.refused = True
            self.queue.append((answer, False))
            if self.transport is not None:
                self.transport.pause_reading()
            return
        self.write(answer)
        self.close_lingering()

    def _check_idle(self) -> None:
        idle = self.loop.time() - self.last_activity
        if not self.busy and not self.queue:
            heading = self.loop.time() - self.message_started
            if self.in_message and not self.headers_complete and heading > HEADER_SECONDS:
                self.reject(408, "request_timeout", "the request headers were not received in time")
                return
            if self.in_message and idle > STALL_SECONDS:
                self.reject(408, "request_timeout", "the request was not received in time")
                return
            if not self.in_message and idle > KEEPALIVE_SECONDS:
                self.close()
                return
        if not self.closing:
            self._timer = self.loop.call_later(_CHECK_EVERY, self._check_idle)

    # -- llhttp callbacks ------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._reset_message()
        self.in_message = True
        self.message_started = self.loop.time()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.header_bytes += len(url)
        if self.header_bytes > MAX_HEADER_BYTES:
            self.reject(431, "header_too_large", "request line and headers are too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp hands over each header whole, name and value: decoded into the dict at once
        # (repeated names joined with ", ", as RFC 9110 allows).
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES:
            self.reject(431, "header_too_large", "request line and headers are too large")
            return
        headers = self.headers
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    def on_headers_complete(self) -> None:
        if self.closing or self.refused:
            return
        headers = self.headers
        if "upgrade" in headers and "upgrade" in headers.get("connection", "").lower():
            self.reject(400, "bad_request", "protocol upgrades are not supported")
            return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.server.max_body:
            self.reject(413, "request_too_large", f"request body is larger than {self.server.max_body} bytes")
            return
        self.headers_complete = True
        expect = headers.get("expect")
        if expect is not None and expect.lower() == "100-continue" and self.parser.get_http_version() != "1.0":
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self.closing or self.refused:
            return
        self.body_size += len(body)
        if self.body_size > self.server.max_body:
            self.reject(413, "request_too_large", f"request body is larger than {self.server.max_body} bytes")
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.closing or self.refused:
            return
        url = httptools.parse_url(self.url)
        path = url.path.decode("latin-1")
        query = url.query.decode("latin-1") if url.query else ""
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body = []  # its pieces: not held beside the joined body while the request waits
        request = Request(self.parser.get_method().decode("latin-1"), path, query, self.headers, body,
                          self.parser.get_http_version(), self.peer)
        request._connection = self
        keep_alive = self.parser.should_keep_alive()
        self.in_message = False
        if self.busy:
            self.queue.append((request, keep_alive))
            self.queued_bytes += len(body)
            self._flow()
            return
        self._start(request, keep_alive)

    # -- answering -------------------------------------------------------------------------------
    def _start(self, request: Request, keep_alive: bool) -> None:
        self.busy = True
        # Keep a reference: the loop holds tasks only weakly.
        self.task = self.loop.create_task(self._answer(request, keep_alive))

    async def _answer(self, request: Request, keep_alive: bool) -> None:
        if self._paused_writing:
            # The client is not reading its earlier answers: this one waits until it does (and
            # reading stops meanwhile), and a client that stalls that long is let go, instead of
            # answers being buffered without end. Before the handler rather than after the answer:
            # a client that sends its next request only once an answer is out, and reads none,
            # has nothing queued behind that answer.
            self._flow()
            try:
                async with asyncio.timeout(STALL_SECONDS):
                    await self.drain()
            except (TimeoutError, ConnectionResetError):
                if self.transport is not None:
                    self.transport.abort()
                return
        try:
            response = await self.server.handler(request)
        except (ConnectionResetError, asyncio.CancelledError):
            self.close()
            return
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.path)
            if self.streaming:
                self.close()  # the stream's head is out: no answer can follow, end the connection
                return
            body, extra = self.server.error_body(500, "internal_error", "internal error", request.path,
                                                 request.headers)
            response = Response(500, body, {"Content-Type": self.server.error_content_type, **extra})
        if self.server.draining and not self.queue:
            keep_alive = False  # shutting down: this answer ends its connection (Connection: close)
        if isinstance(response, StreamResponse):
            response.finish()
            if request.http_version == "1.0":
                keep_alive = False
        elif self.streaming:
            log.error("%s %s answered after its stream began; closing the connection", request.method, request.path)
            self.close()
            return
        elif not self.closing:
            headers = response.headers
            extra = b"Content-Length: %d\r\n" % len(response.body)
            if not keep_alive:
                extra += b"Connection: close\r\n"
            elif request.http_version == "1.0":
                extra += b"Connection: keep-alive\r\n"
            head = _head(response.status, headers, extra)
            if request.method == "HEAD" or not response.body:
                self.write(head)
            elif len(response.body) < 16384:
                self.write(head + response.body)
            elif self.transport is not None:
                self.transport.writelines((head, response.body))
        self.last_activity = self.loop.time()
        if not keep_alive:
            self.close()
            return
        self.busy = False
        self.streaming = False
        if self.queue and not self.closing:
            nxt, nxt_keep_alive = self.queue.popleft()
            if isinstance(nxt, bytes):  # a refusal queued behind this answer
                self.write(nxt)
                self.close_lingering()
                return
            self.queued_bytes -= len(nxt.body)
            self._start(nxt, nxt_keep_alive)
        self._flow()


class HttpServer:
    """Serves one handler on one or more listening sockets."""

    def __init__(self, handler: Handler, *, max_body: int = 1 << 31, error_body: ErrorBody | None = None,
                 error_content_type: str = "application/json") -> None:
        self.handler = handler
        self.max_body = max_body
        self.error_body = error_body or _plain_error
        self.error_content_type = error_content_type if error_body else "text/plain"
        self.connections: set[_Connection] = set()
        self.servers: list[asyncio.Server] = []
        self.draining = False  # shutdown() began: answers close their connections

    async def listen(self, host: str, port: int, tls: ssl.SSLContext | None = None,
                     handshake_timeout: float = 10.0) -> None:
        """Listen on ``host:port``; with ``tls``, connections are TLS (dataplane/security/tls.py builds the context).

        A TLS connection reaches the parser only once its handshake is done, so the idle and
        stall timers start then; ``handshake_timeout`` bounds the handshake itself.
        """
        loop = asyncio.get_running_loop()
        extra: dict[str, Any] = {"ssl": tls, "ssl_handshake_timeout": handshake_timeout} if tls else {}
        self.servers.append(await loop.create_server(lambda: _Connection(self), host, port, reuse_address=True,
                                                     backlog=1024, **extra))

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop listening, let answers in progress finish (up to `grace` seconds), close the rest.

        Each answer given meanwhile says `Connection: close`: a keep-alive client (an ingress, a
        connection pool) would otherwise go on sending on the connection it holds.
        """
        self.draining = True
        for server in self.servers:
            server.close()
        deadline = asyncio.get_running_loop().time() + grace
        while self.connections and asyncio.get_running_loop().time() < deadline:
            for conn in list(self.connections):
                if not conn.busy and not conn.queue:
                    conn.close()
            if self.connections:
                await asyncio.sleep(0.05)
        for conn in list(self.connections):
            if conn.task is not None:
                conn.task.cancel()
            conn.close()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
