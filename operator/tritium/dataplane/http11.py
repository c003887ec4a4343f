"""A minimal HTTP/1.1 keep-alive client for the gateway -> stage hop.

Measured on the tiny model, a request through aiohttp's client costs about as much as Triton's
whole inference, and there are two such hops per request. The stage hop needs none of what a
general client offers (redirects, cookies, chunked uploads, proxies): one POST with a
Content-Length over a reused loopback connection, read back by Content-Length.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class HttpError(ConnectionError):
    """The connection failed or the peer did not speak HTTP/1.1 as expected."""


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class Http11Pool:
    """Persistent connections to one host:port; each request takes an idle one or opens a new one."""

    def __init__(self, host: str, port: int, max_idle: int = 64) -> None:
        self.host = host
        self.port = port
        self.max_idle = max_idle
        self._idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = deque()
        self._host_header = f"{host}:{port}".encode()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        except OSError as exc:
            raise HttpError(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from None
        return reader, writer

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> Response:
        fresh = not self._idle
        conn = self._idle.pop() if self._idle else await self._connect()
        try:
            resp = await self._exchange(conn, method, path, body, headers)
        except (HttpError, OSError, asyncio.IncompleteReadError) as exc:
            conn[1].close()
            if fresh:
                raise HttpError(str(exc) or type(exc).__name__) from None
            # An idle connection the peer closed meanwhile (restart, keep-alive timeout): retry once, fresh.
            conn = await self._connect()
            try:
                resp = await self._exchange(conn, method, path, body, headers)
            except (HttpError, OSError, asyncio.IncompleteReadError) as exc2:
                conn[1].close()
                raise HttpError(str(exc2) or type(exc2).__name__) from None
        except BaseException:
            conn[1].close()  # cancelled mid-exchange: the connection state is unknown
            raise
        if resp.headers.get("connection", "").lower() == "close" or len(self._idle) >= self.max_idle:
            conn[1].close()
        else:
            self._idle.append(conn)
        return resp

    async def _exchange(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], method: str, path: str,
                        body: bytes, headers: dict[str, str] | None) -> Response:
        reader, writer = conn
        head = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + self._host_header,
                b"Content-Length: " + str(len(body)).encode()]
        for k, v in (headers or {}).items():
            head.append(f"{k}: {v}".encode())
        # One write, one send(2): on loopback each extra send wakes the peer once more.
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        if writer.transport.get_write_buffer_size():
            await writer.drain()
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HttpError(f"not an HTTP/1.1 response: {lines[0][:80]!r}")
        status = int(parts[1])
        resp_headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                resp_headers[k.strip().lower()] = v.strip()
        if resp_headers.get("transfer-encoding", "").lower() == "chunked":
            payload = await _read_chunked(reader)
        else:
            payload = await reader.readexactly(int(resp_headers.get("content-length", "0")))
        return Response(status, resp_headers, payload)

    async def close(self) -> None:
        while self._idle:
            _, writer = self._idle.pop()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
