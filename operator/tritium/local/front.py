"""The user's port in `tritium up --watch`: a small reverse proxy that stays while revisions change.

A promotion must move the user's port from the old revision's gateway to the new one without a
failed request. Two gateway processes cannot share a listening port (the gateway binds its own
socket, without SO_REUSEPORT or an inherited descriptor), and any hand-over of the port between
them leaves a moment where nothing listens: connections are refused. So in watch mode no revision
owns the port: this proxy does, for as long as `tritium up` runs, and sends every request to the
serving revision's gateway on its own loopback port. Switching is per request: a request already
sent to the old gateway finishes there, the next one goes to the new gateway, and the old one is
stopped only once no request is in flight to it. The stable gateway still does the canary split
(the proxy never sets X-Tritium-Routed), so the split is exactly the pod's.

The price is one more loopback hop per request, in watch mode only.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp
import orjson
from yarl import URL

from tritium.dataplane.http.server import HttpServer, Request, Response, StreamResponse

T = TypeVar("T")

CONNECT_SECONDS = 1.0
# Hop-by-hop request headers, and those the next hop gets anew.
_REQUEST_DROP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                           "upgrade", "host", "content-length", "expect"})
# Framing the proxy's own server writes.
_RESPONSE_DROP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "trailer", "upgrade",
                            "date"})


def _bad_gateway(message: str) -> Response:
    body = orjson.dumps({"error": message, "code": "no_serving_revision"})
    return Response(502, body, {"Content-Type": "application/json"})


class Front:
    """Listens on ``host:port`` in a thread of its own; ``serve(url)`` picks the upstream gateway."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.upstream: str | None = None
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.loop = asyncio.new_event_loop()
        self._server: HttpServer | None = None
        self._session: aiohttp.ClientSession | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="front", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Bind the port now (raises OSError when it is taken), serve from the thread."""
        self._thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30.0),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            auto_decompress=False,
        )
        self._server = HttpServer(self.handle)
        await self._server.listen(self.host, self.port)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """Run a coroutine on the proxy's loop from another thread, and wait for it."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no result within {timeout} s") from None

    def serve(self, url: str) -> None:
        """From now on new requests go to ``url`` (one attribute: atomic for the loop's thread)."""
        self.upstream = url.rstrip("/")

    def drain(self, url: str, timeout: float) -> bool:
        """Wait until no request is in flight to ``url``; False when some still are after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.in_flight[url.rstrip("/")] > 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def stop(self) -> None:
        if self._thread.is_alive():
            try:
                self.run(self._stop(), timeout=15.0)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(5.0)
        if not self.loop.is_running():
            self.loop.close()

    async def _stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown(grace=10.0)
        if self._session is not None:
            await self._session.close()

    async def handle(self, request: Request) -> Response | StreamResponse:
        upstream = self.upstream
        if upstream is None:
            return _bad_gateway("no revision is serving yet")
        self.in_flight[upstream] += 1
        try:
            try:
                return await self._forward(request, upstream)
            except aiohttp.ClientConnectorError:
                # Nothing was sent: safe to try once more, on the upstream serving now.
                await asyncio.sleep(0.05)
                retry = self.upstream or upstream
                if retry == upstream:
                    return await self._forward(request, upstream)
                self.in_flight[retry] += 1
                try:
                    return await self._forward(request, retry)
                finally:
                    self.in_flight[retry] -= 1
        except aiohttp.ClientError as exc:
            return _bad_gateway(f"the serving gateway did not answer: {exc or type(exc).__name__}")
        finally:
            self.in_flight[upstream] -= 1

    async def _forward(self, request: Request, upstream: str) -> Response | StreamResponse:
        assert self._session is not None
        drop = _REQUEST_DROP
        connection = request.headers.get("connection")
        if connection:
            drop = drop | {name.strip().lower() for name in connection.split(",")}
        headers = {k: v for k, v in request.headers.items() if k not in drop}
        url = upstream + request.path + (f"?{request.query_string}" if request.query_string else "")
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_SECONDS)
        async with self._session.request(request.method, URL(url, encoded=True), data=request.body,
                                         headers=headers, timeout=timeout, allow_redirects=False) as resp:
            out_headers = {k: v for k, v in resp.headers.items() if k.lower() not in _RESPONSE_DROP}
            if resp.content_type != "text/event-stream":
                return Response(resp.status, await resp.read(), out_headers)
            stream = StreamResponse(headers=out_headers, status=resp.status)
            await stream.prepare(request)
            async for chunk in resp.content.iter_any():
                await stream.write(chunk)
            return stream
