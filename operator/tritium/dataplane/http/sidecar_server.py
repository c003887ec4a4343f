"""A minimal HTTP/1.1 server for the stage sidecars (asyncio Protocol, keep-alive, Content-Length).

The stages only ever see the gateway on loopback plus probes and Prometheus scrapes, all of
which send small, well-formed requests. On the tiny model a general-purpose framework cost
about 300 us of CPU per request in each stage; this parser costs a fraction of that, and the
stage's CPU is what competes with Triton for the pod's cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger("tritium.stage.http")

MAX_HEADER_BYTES = 64 * 1024
_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            411: "Length Required", 413: "Payload Too Large", 415: "Unsupported Media Type",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    peer: str = ""  # the connection's remote IP address ("" when it has none, e.g. a Unix socket)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Reply]]


def _encode(reply: Reply, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}",
             f"Content-Length: {len(reply.body)}"]
    lines += [f"{k}: {v}" for k, v in reply.headers.items()]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + reply.body


class _Protocol(asyncio.Protocol):
    def __init__(self, handler: Handler, max_body: int) -> None:
        self.handler = handler
        self.max_body = max_body
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.closing = False
        self.task: asyncio.Task[None] | None = None
        self.peer = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peername = transport.get_extra_info("peername")
        self.peer = str(peername[0]) if isinstance(peername, tuple) and peername else ""

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next()

    def _fail(self, status: int, message: str) -> None:
        if self.transport is not None:
            self.transport.write(_encode(Reply(status, message.encode(), {"Content-Type": "text/plain"}), False))
            self.transport.close()
        self.closing = True

    def _next(self) -> None:
        """Parse one complete request from the buffer, if there is one, and handle it."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEADER_BYTES:
                self._fail(400, "header too large")
            return
        try:
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            method, path, version = lines[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        except ValueError:
            self._fail(400, "malformed request")
            return
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._fail(411, "send a Content-Length")
            return
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self._fail(400, "bad Content-Length")
            return
        if length < 0 or length > self.max_body:
            self._fail(413, "body too large")
            return
        if len(self.buffer) < end + 4 + length:
            return  # wait for the rest of the body
        body = bytes(self.buffer[end + 4:end + 4 + length])
        del self.buffer[:end + 4 + length]
        keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        self.busy = True
        # Keep a reference: the event loop holds tasks only weakly.
        self.task = asyncio.get_running_loop().create_task(
            self._handle(Request(method, path.split("?", 1)[0], headers, body, self.peer), keep_alive))

    async def _handle(self, request: Request, keep_alive: bool) -> None:
        try:
            reply = await self.handler(request)
        except Exception:
            log.exception("handler failed for %s %s", request.method, request.path)
            reply = Reply(500, b'{"error":{"code":"stage_error","message":"internal error"}}',
                          {"Content-Type": "application/json"})
        if self.closing or self.transport is None:
            return
        self.transport.write(_encode(reply, keep_alive))
        if not keep_alive:
            self.transport.close()
            self.closing = True
            return
        self.busy = False
        if self.buffer:
            self._next()


async def serve(handler: Handler, host: str, port: int, max_body: int = 1 << 31) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _Protocol(handler, max_body), host, port, reuse_address=True,
                                    backlog=1024)


async def serve_unix(handler: Handler, path: str, max_body: int = 1 << 31) -> asyncio.Server:
    """The same server on a Unix socket: the gateway's hop inside the pod (see render/commands.py).

    A Unix socket skips the TCP stack on both ends: measured, a request/response round trip costs
    the caller a third less CPU than over loopback TCP, and answers sooner.
    A socket left behind by a previous run of the container is replaced.
    """
    remove_stale_socket(path)
    loop = asyncio.get_running_loop()
    return await loop.create_unix_server(lambda: _Protocol(handler, max_body), path, backlog=1024)


def remove_stale_socket(path: str) -> None:
    """A socket file left behind by a previous run of the container; any other file stays."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
