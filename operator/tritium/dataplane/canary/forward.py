"""Forwarding an inference request to the canary revision, and its answer back unchanged.

The stable gateway is a plain reverse proxy for the requests traffic.py picks: method, path,
query, body and the end-to-end headers go to the canary's Service over one keep-alive pool per
process, and the canary's status, headers (its X-Tritium-Revision among them) and body come back
as they are; an SSE stream is relayed chunk by chunk. Two rules make a rollback safe:

- the canary unreachable (refused, reset, DNS, connect timeout) before it answered: the request
  is served here instead. A rollback deletes the canary's pods while the traffic file still
  names it; that must never fail a request on the stable path.
- once the canary answered, its answer is the answer, 5xx included: those are the canary's
  errors, which its own gateway counts and the analysis must see.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiohttp
from yarl import URL

from tritium.dataplane.canary.traffic import ROUTED_HEADER, Target
from tritium.dataplane.errors import REQUEST_ID_HEADER, TIMEOUT_HEADER, ApiError
from tritium.dataplane.http.server import Request, Response, StreamResponse
from tritium.dataplane.metrics import GatewayMetrics
from tritium.dataplane.pipeline import Deadline

log = logging.getLogger("tritium.forward")

CONNECT_SECONDS = 1.0  # in-cluster connects take well under a millisecond; a black hole must not eat the deadline
# The canary is sent the remaining time and answers its own 504 (which its metrics count); this
# gateway's own deadline comes that much later, as the backstop for a canary that hangs.
DEADLINE_GRACE_SECONDS = 0.25
KEEPALIVE_SECONDS = 30.0  # below the gateway server's 75 s, so the pool closes idle connections first

# Request headers that belong to one hop, or that are set anew for the next one.
_REQUEST_DROP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "transfer-encoding", "upgrade", "host", "content-length", "expect", "grpc-timeout",
    TIMEOUT_HEADER.lower(), REQUEST_ID_HEADER.lower(), ROUTED_HEADER.lower(),
})
# Response headers this gateway's server writes itself (framing, Date).
_RESPONSE_DROP = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "content-length", "trailer", "upgrade",
    "date",
})

ErrorRenderer = Callable[[ApiError, Request], Response]


class CanaryForwarder:
    """One aiohttp pool for the process' forwarded requests (started with the gateway)."""

    def __init__(self, revision: str, metrics: GatewayMetrics, render_error: ErrorRenderer,
                 pin: Callable[[], bytes] | None = None) -> None:
        """``pin`` gives the SHA-256 fingerprint of this gateway's own certificate: an https canary
        must present it (security/tls.py); unset, https canaries are checked against the system CAs."""
        self.pin = pin
        self._fingerprint: tuple[bytes, aiohttp.Fingerprint] | None = None
        self.revision = revision
        self.metrics = metrics
        self.render_error = render_error
        self.session: aiohttp.ClientSession | None = None
        self._down: Target | None = None  # the target whose last attempt failed (logged once)

    async def start(self) -> None:
        # No automatic headers or decompression: the canary sees what the client sent, the client
        # what the canary answered.
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_SECONDS),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            auto_decompress=False,
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    def request_headers(self, request: Request, remaining: float) -> dict[str, str]:
        drop = _REQUEST_DROP
        connection = request.headers.get("connection")
        if connection:  # headers the client named hop-by-hop
            drop = drop | {name.strip().lower() for name in connection.split(",")}
        headers = {k: v for k, v in request.headers.items() if k not in drop}
        headers[REQUEST_ID_HEADER] = request.state[REQUEST_ID_HEADER]
        headers[TIMEOUT_HEADER] = f"{max(remaining, 0.001):.6f}"
        headers[ROUTED_HEADER] = self.revision
        if request.peer:  # the canary's allowlist and limits see the client, through trustedProxies
            before = headers.get("x-forwarded-for")
            headers["x-forwarded-for"] = f"{before}, {request.peer}" if before else request.peer
        return headers

    async def forward(self, request: Request, target: Target, deadline: Deadline) -> Response | StreamResponse | None:
        """The canary's answer, or None when it could not be reached: then the caller serves it."""
        assert self.session is not None, "start() the forwarder first"
        remaining = deadline.at - asyncio.get_running_loop().time()
        if remaining <= 0:
            self.metrics.forwarded_to(target.revision, "deadline")
            return self.render_error(ApiError(504, "deadline_exceeded", "the request deadline passed"), request)
        url = target.url + request.path + (f"?{request.query_string}" if request.query_string else "")
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(CONNECT_SECONDS, remaining / 2))
        tls = self._tls() if url.startswith("https:") else True
        stream: StreamResponse | None = None
        code = "fallback"
        try:
            async with asyncio.timeout_at(deadline.at + DEADLINE_GRACE_SECONDS), self.session.request(
                    request.method, URL(url, encoded=True), data=request.body, timeout=timeout, ssl=tls,
                    headers=self.request_headers(request, remaining), allow_redirects=False) as resp:
                headers = {k: v for k, v in resp.headers.items() if k.lower() not in _RESPONSE_DROP}
                if resp.content_type != "text/event-stream":
                    body = await resp.read()
                    code = str(resp.status)
                    self._reachable(target)
                    return Response(resp.status, body, headers)
                code = str(resp.status)
                self._reachable(target)
                out = StreamResponse(headers=headers, status=resp.status)
                await out.prepare(request)
                stream = out
                async for chunk in resp.content.iter_any():
                    await out.write(chunk)
                return out
        except aiohttp.ClientError as exc:
            if stream is None:  # nothing of the answer reached the client: serve it here
                self._unreachable(target, exc)
                code = "fallback"
                return None
            code = "broken"
            await self._stream_error(stream, request, ApiError(502, "canary_unavailable",
                                                               f"the canary's stream broke: {_describe(exc)}"))
            return stream
        except TimeoutError:
            code = "deadline"
            err = ApiError(504, "deadline_exceeded", "the request deadline passed")
            if stream is None:
                return self.render_error(err, request)
            await self._stream_error(stream, request, err)
            return stream
        finally:
            self.metrics.forwarded_to(target.revision, code)

    def _tls(self) -> aiohttp.Fingerprint | bool:
        """The pin for an https canary (made once per certificate), or True: the system CAs."""
        if self.pin is None:
            return True
        digest = self.pin()
        if self._fingerprint is None or self._fingerprint[0] != digest:
            self._fingerprint = (digest, aiohttp.Fingerprint(digest))
        return self._fingerprint[1]

    async def _stream_error(self, stream: StreamResponse, request: Request, err: ApiError) -> None:
        # The blank lines end an event the canary may have left half-written.
        await stream.write(b"\n\nevent: error\ndata: " + err.to_json(request.state[REQUEST_ID_HEADER]) + b"\n\n")

    def _unreachable(self, target: Target, exc: BaseException) -> None:
        if self._down != target:
            self._down = target
            log.warning("canary %s at %s unreachable (%s): serving its share here", target.revision, target.url,
                        _describe(exc))

    def _reachable(self, target: Target) -> None:
        if self._down is not None:
            log.info("canary %s at %s answers again", target.revision, target.url)
            self._down = None


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
