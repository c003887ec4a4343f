"""The gateway's side of a stage sidecar: binary messages over the stage's Unix socket (framed,
multiplexed: dataplane/http/stage_wire.py) or, given an http:// URL, over keep-alive HTTP/1.1.

A stage that cannot be reached is answered with 503 naming the stage, an error the stage
reports keeps its own status and field, and a stage that overruns the deadline gives 504.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import orjson

from tritium.dataplane.errors import REQUEST_ID_HEADER, TIMEOUT_HEADER, ApiError, refuse_if_too_deep
from tritium.dataplane.http.client import Http11Pool, HttpError
from tritium.dataplane.http.stage_wire import StageWireClient, StageWireError
from tritium.dataplane.tensors import HEADER_LENGTH, STAGE_CONTENT_TYPE, pack_message, unpack_message

PROCESS_PATH = "/v1/process"
HEALTH_PATH = "/healthz"
UNIX_PREFIX = "unix:"  # unix:/tmp/tritium-pre.sock: the stage's Unix socket (stage_wire frames)


class StageClient:
    """Calls one stage (pre or post) at its base URL."""

    def __init__(self, name: str, base_url: str) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        if self.base_url.startswith(UNIX_PREFIX):
            path = self.base_url[len(UNIX_PREFIX):]
            if not path.startswith("/"):
                raise ValueError(f"{name} stage socket must be an absolute path (unix:/PATH), got {base_url!r}")
            self._wire: StageWireClient | None = StageWireClient(path)
            self._pool: Http11Pool | None = None
            return
        url = urlsplit(self.base_url)
        if url.scheme != "http" or not url.hostname or not url.port:
            raise ValueError(f"{name} stage URL must be http://HOST:PORT or unix:/PATH, got {base_url!r}")
        self._wire = None
        self._pool = Http11Pool(url.hostname, url.port)

    async def close(self) -> None:
        if self._wire is not None:
            await self._wire.close()
        if self._pool is not None:
            await self._pool.close()

    def _down(self, why: str) -> ApiError:
        return ApiError(
            503, "stage_unavailable", f"the {self.name} stage is unavailable: {why}",
            field=self.name, headers={"Retry-After": "1"},
        )

    async def call(self, header: dict[str, Any], tensors: dict[str, np.ndarray] | None = None,
                   raw: bytes | None = None, *, request_id: str, timeout: float) -> tuple[
                       dict[str, Any], dict[str, np.ndarray], bytes | None]:
        try:
            body, header_length = pack_message(header, tensors, raw)
        except orjson.JSONEncodeError as exc:  # the header carries the client's inputs and parameters
            refuse_if_too_deep(exc)
            raise
        if self._wire is not None:
            try:
                status, answer, answer_length = await self._wire.call(
                    body, header_length, request_id=request_id, timeout=max(timeout, 0.001))
            except StageWireError as exc:
                raise self._down(str(exc)) from None
            if status != 200:
                raise self._error(status, answer)
            return unpack_message(answer, answer_length)
        assert self._pool is not None
        headers = {
            "Content-Type": STAGE_CONTENT_TYPE,
            HEADER_LENGTH: str(header_length),
            REQUEST_ID_HEADER: request_id,
            TIMEOUT_HEADER: f"{max(timeout, 0.001):.3f}",
        }
        # No timeout of its own: the request's deadline (asyncio.timeout_at in the gateway) bounds this
        # call, and one timer per request is cheaper than one per hop.
        try:
            resp = await self._pool.request("POST", PROCESS_PATH, body, headers)
        except HttpError as exc:
            raise self._down(str(exc)) from None
        if resp.status != 200:
            raise self._error(resp.status, resp.body)
        length = resp.headers.get(HEADER_LENGTH.lower())
        return unpack_message(resp.body, int(length) if length else None)

    def _error(self, status: int, payload: bytes) -> ApiError:
        try:
            parsed = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return ApiError(502, "stage_error", f"the {self.name} stage answered {status}", field=self.name)
        err = ApiError.from_payload(status, parsed, default_code="stage_error")
        if status >= 500 and err.code not in ("deadline_exceeded",):
            # The stage's own failure is not the client's fault nor the gateway's: say which stage.
            err = ApiError(502, "stage_error", f"the {self.name} stage failed: {err.message}", field=self.name)
        return err

    async def ready(self, timeout: float = 1.0) -> bool:
        if self._wire is not None:
            return await self._wire_ready(timeout)
        assert self._pool is not None
        try:
            async with asyncio.timeout(timeout):
                resp = await self._pool.request("GET", HEALTH_PATH)
        except (HttpError, TimeoutError):
            return False
        return resp.status == 200

    async def _wire_ready(self, timeout: float) -> bool:
        """A ping over the socket: an empty message the stage answers without processing."""
        assert self._wire is not None
        try:
            async with asyncio.timeout(timeout):
                status, _, _ = await self._wire.call(b"", 0, request_id="", timeout=timeout)
        except (StageWireError, TimeoutError):
            return False
        return status == 200
