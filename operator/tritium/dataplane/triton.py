"""Triton as the gateway sees it: one persistent async gRPC channel, raw tensors in and out.

Requests are built as protobufs directly from numpy buffers (no JSON, no per-input client
objects): on a tiny model this is most of the gateway's own cost. gRPC status codes become
:class:`ApiError` here, so the HTTP layer only ever sees errors with a deliberate status.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tritium.dataplane.errors import ApiError
from tritium.dataplane.http.client import Http11Pool, HttpError, Response
from tritium.dataplane.tensors import (
    HEADER_LENGTH,
    deserialize_bytes_tensor,
    encode_v2_request,
    parse_v2_response,
    tensor_to_bytes,
    v2_datatype,
)

_MAX_MESSAGE = 2**31 - 1
RETRY_AFTER_SECONDS = "1"
_INPUT_IN_MESSAGE = re.compile(r"input '([^']+)'")
# Triton answers a request body it cannot parse with a 500 ("Unable to parse 'data': attempt to
# access JSON non-number as double"): that is the client's error, not the model failing.
_UNPARSABLE = re.compile(r"^(?:Unable to parse '([^']+)'|failed to parse the request JSON buffer)", re.IGNORECASE)
_HEADER_LENGTH_LOWER = HEADER_LENGTH.lower()
_HEADER_LENGTH_FIELD = HEADER_LENGTH.encode() + b": "


@dataclass(frozen=True)
class ModelInfo:
    """What the gateway needs to know about a model: its tensors and batching."""

    name: str
    versions: tuple[str, ...]
    inputs: dict[str, tuple[str, tuple[int, ...]]]   # name -> (datatype, shape incl. batch dim)
    outputs: dict[str, tuple[str, tuple[int, ...]]]
    max_batch_size: int
    decoupled: bool

    def wire(self) -> dict[str, Any]:
        """Compact form handed to the pre stage so it can type JSON inputs without asking Triton."""
        return {
            "name": self.name,
            "max_batch_size": self.max_batch_size,
            "inputs": {k: [dt, list(shape)] for k, (dt, shape) in self.inputs.items()},
        }


def unavailable(message: str) -> ApiError:
    return ApiError(503, "triton_unavailable", message, headers={"Retry-After": RETRY_AFTER_SECONDS})


def map_grpc_error(exc: grpc.aio.AioRpcError, model: str) -> ApiError:
    code, details = exc.code(), exc.details() or str(exc.code())
    details = re.sub(r"^\[request id: [^\]]*\] ", "", details)
    if code == grpc.StatusCode.NOT_FOUND:
        return ApiError(404, "model_not_found", f"model {model!r} is not served here", field="model")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        m = _INPUT_IN_MESSAGE.search(details)
        return ApiError(400, "invalid_input", details, field=f"inputs.{m.group(1)}" if m else "inputs")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ApiError(504, "deadline_exceeded", "the request deadline passed while Triton was working on it")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return unavailable(f"Triton is unavailable: {details}")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return ApiError(429, "overloaded", details, headers={"Retry-After": RETRY_AFTER_SECONDS})
    return ApiError(500, "model_error", f"the model failed: {details}")


def _decode_outputs(response: Any) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for i, meta in enumerate(response.outputs):
        raw = response.raw_output_contents[i] if i < len(response.raw_output_contents) else b""
        shape = list(meta.shape)
        if meta.datatype == "BYTES":
            out[meta.name] = deserialize_bytes_tensor(raw).reshape(shape)
        else:
            from tritium.dataplane.tensors import numpy_dtype

            out[meta.name] = np.frombuffer(raw, dtype=numpy_dtype(meta.datatype)).reshape(shape)
    return out


class Triton:
    """A persistent channel to one Triton server (the pod's localhost Triton)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._channel = grpc.aio.insecure_channel(
            address,
            options=[
                ("grpc.max_send_message_length", _MAX_MESSAGE),
                ("grpc.max_receive_message_length", _MAX_MESSAGE),
                ("grpc.keepalive_time_ms", 10_000),
                # Reconnect quickly after Triton restarts instead of backing off for seconds.
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
                ("grpc.min_reconnect_backoff_ms", 100),
            ],
        )
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self._models: dict[tuple[str, str], ModelInfo] = {}

    async def close(self) -> None:
        await self._channel.close()

    # -- health and metadata -----------------------------------------------------------------
    async def ready(self, timeout: float = 1.0) -> bool:
        try:
            resp = await self._stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=timeout)
            return bool(resp.ready)
        except grpc.aio.AioRpcError:
            return False

    async def model_ready(self, model: str, version: str = "", timeout: float = 1.0) -> bool:
        try:
            resp = await self._stub.ModelReady(service_pb2.ModelReadyRequest(name=model, version=version),
                                               timeout=timeout)
            return bool(resp.ready)
        except grpc.aio.AioRpcError as exc:
            raise map_grpc_error(exc, model) from None

    async def model_info(self, model: str, version: str = "", timeout: float = 5.0) -> ModelInfo:
        """Metadata + config of a model, fetched once and then served from memory."""
        key = (model, version)
        info = self._models.get(key)
        if info is not None:
            return info
        try:
            meta, cfg = await asyncio.gather(
                self._stub.ModelMetadata(service_pb2.ModelMetadataRequest(name=model, version=version),
                                         timeout=timeout),
                self._stub.ModelConfig(service_pb2.ModelConfigRequest(name=model, version=version), timeout=timeout),
            )
        except grpc.aio.AioRpcError as exc:
            raise map_grpc_error(exc, model) from None
        config = cfg.config
        info = ModelInfo(
            name=meta.name,
            versions=tuple(meta.versions),
            inputs={t.name: (t.datatype, tuple(t.shape)) for t in meta.inputs},
            outputs={t.name: (t.datatype, tuple(t.shape)) for t in meta.outputs},
            max_batch_size=int(config.max_batch_size),
            decoupled=bool(config.model_transaction_policy.decoupled),
        )
        self._models[key] = info
        return info

    def forget(self, model: str) -> None:
        """Drop cached metadata (after Triton restarts, a model may have changed)."""
        for key in [k for k in self._models if k[0] == model]:
            del self._models[key]

    # -- inference ---------------------------------------------------------------------------
    @staticmethod
    def _request(model: str, version: str, inputs: dict[str, np.ndarray], outputs: list[str] | None,
                 request_id: str, parameters: dict[str, Any] | None) -> Any:
        req = service_pb2.ModelInferRequest(model_name=model, model_version=version, id=request_id)
        for name, arr in inputs.items():
            t = req.inputs.add()
            t.name = name
            t.datatype = v2_datatype(arr)
            t.shape.extend(arr.shape)
            req.raw_input_contents.append(tensor_to_bytes(arr))
        for name in outputs or ():
            req.outputs.add().name = name
        for key, value in (parameters or {}).items():
            p = req.parameters[key]
            if isinstance(value, bool):
                p.bool_param = value
            elif isinstance(value, int):
                p.int64_param = value
            elif isinstance(value, float):
                p.double_param = value
            elif isinstance(value, str):
                p.string_param = value
            # other JSON values are not representable as Triton parameters; they stay with the stages
        return req

    async def infer(self, model: str, version: str, inputs: dict[str, np.ndarray], *,
                    outputs: list[str] | None = None, request_id: str = "", timeout: float | None = None,
                    parameters: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], str]:
        """One inference; returns the output tensors and the model version that answered."""
        req = self._request(model, version, inputs, outputs, request_id, parameters)
        try:
            resp = await self._stub.ModelInfer(req, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise map_grpc_error(exc, model) from None
        return _decode_outputs(resp), resp.model_version

    async def stream(self, model: str, version: str, inputs: dict[str, np.ndarray], *,
                     request_id: str = "", timeout: float | None = None,
                     parameters: dict[str, Any] | None = None) -> AsyncIterator[dict[str, np.ndarray]]:
        """Responses of a decoupled model, one by one, until Triton flags the final one."""
        params = dict(parameters or {})
        params["triton_enable_empty_final_response"] = True
        req = self._request(model, version, inputs, None, request_id, params)
        call = self._stub.ModelStreamInfer(timeout=timeout)
        try:
            await call.write(req)
            await call.done_writing()
            async for msg in call:
                if msg.error_message:
                    raise _stream_error(msg.error_message)
                resp = msg.infer_response
                if resp.outputs:
                    yield _decode_outputs(resp)
                final = resp.parameters.get("triton_final_response")
                if final is not None and final.bool_param:
                    return
        except grpc.aio.AioRpcError as exc:
            raise map_grpc_error(exc, model) from None
        finally:
            call.cancel()


def _stream_error(message: str) -> ApiError:
    lowered = message.lower()
    if "unknown model" in lowered or "not found" in lowered:
        return ApiError(404, "model_not_found", message, field="model")
    if "unexpected inference input" in lowered or "expects" in lowered or "must be" in lowered:
        m = _INPUT_IN_MESSAGE.search(message)
        return ApiError(400, "invalid_input", message, field=f"inputs.{m.group(1)}" if m else "inputs")
    return ApiError(500, "model_error", f"the model failed: {message}")


class TritonHttp:
    """Unary inference over Triton's HTTP API (binary tensor extension) on keep-alive connections.

    Measured on the tiny model (2 cores): about 175 us of gateway CPU per request against 390 us
    through grpc.aio, and twice the throughput at concurrency 8; gRPC stays in use for streaming,
    health and metadata. TRITIUM_TRITON_PROTOCOL=grpc sends inference over gRPC instead.
    """

    def __init__(self, base_url: str) -> None:
        url = urlsplit(base_url)
        if url.scheme != "http" or not url.hostname or not url.port:
            raise ValueError(f"Triton HTTP URL must be http://HOST:PORT, got {base_url!r}")
        self._pool = Http11Pool(url.hostname, url.port)
        self._paths: dict[tuple[str, str], str] = {}  # (model, version) -> infer path, quoted once
        self._heads: dict[tuple[str, str], bytes] = {}  # (model, version) -> request line + Host, built once

    async def close(self) -> None:
        await self._pool.close()

    def _path(self, model: str, version: str) -> str:
        path = self._paths.get((model, version))
        if path is None:
            path = f"/v2/models/{quote(model, safe='')}" + (f"/versions/{quote(version, safe='')}" if version else "")
            path += "/infer"
            if len(self._paths) < 1024:  # names come from clients: bounded
                self._paths[(model, version)] = path
        return path

    def _head_start(self, model: str, version: str) -> bytes:
        start = self._heads.get((model, version))
        if start is None:
            start = self._pool.head_start("POST", self._path(model, version))
            if len(self._heads) < 1024:
                self._heads[(model, version)] = start
        return start

    async def infer(self, model: str, version: str, inputs: dict[str, np.ndarray], *,
                    outputs: list[str] | None = None, request_id: str = "", timeout: float | None = None,
                    parameters: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], str]:
        body, header_length = encode_v2_request(inputs, outputs, request_id, parameters)
        # `timeout` is not applied here: the request's deadline (asyncio.timeout_at in the gateway) bounds it.
        resp = await self.forward(model, version, body, "application/octet-stream", str(header_length))
        length = resp.headers.get(_HEADER_LENGTH_LOWER)
        header, tensors = parse_v2_response(resp.body, int(length) if length else None)
        return tensors, str(header.get("model_version", version))

    async def forward(self, model: str, version: str, body: bytes, content_type: str,
                      header_length: str | None, deadline: float | None = None) -> Response:
        """A v2 infer request passed to Triton as it came, and Triton's answer as it left.

        Triton speaks the same protocol (JSON and the binary extension): when no stage and no cache
        needs the tensors, decoding and re-encoding them would only cost time. `deadline` (the
        event loop's clock): TimeoutError when Triton has not answered by then.
        """
        # The head as bytes at once (no dict, no join): header values arrive decoded as latin-1,
        # so they go back out as the bytes they came as.
        head = b"%bContent-Type: %b\r\nContent-Length: %d\r\n" % (
            self._head_start(model, version), (content_type or "application/json").encode("latin-1", "replace"),
            len(body))
        if header_length:
            head += _HEADER_LENGTH_FIELD + header_length.encode("latin-1", "replace") + b"\r\n"
        try:
            resp = await self._pool.send(head + b"\r\n", body, deadline)
        except HttpError as exc:
            raise unavailable(f"Triton is unavailable: {exc}") from None
        if resp.status != 200:
            raise map_http_error(resp.status, resp.body, model)
        return resp


def map_http_error(status: int, body: bytes, model: str) -> ApiError:
    import orjson

    try:
        message = str(orjson.loads(body).get("error", body[:200].decode(errors="replace")))
    except (orjson.JSONDecodeError, AttributeError):
        message = body[:200].decode(errors="replace")
    message = re.sub(r"^\[request id: [^\]]*\] ", "", message)
    if status == 404 or "unknown model" in message.lower():
        return ApiError(404, "model_not_found", f"model {model!r} is not served here", field="model")
    unparsable = _UNPARSABLE.search(message)
    if unparsable and status in (400, 500):
        return ApiError(400, "invalid_input", f"the request does not parse: {message}",
                        field=unparsable.group(1) or "body")
    if status == 400:
        m = _INPUT_IN_MESSAGE.search(message)
        return ApiError(400, "invalid_input", message, field=f"inputs.{m.group(1)}" if m else "inputs")
    if status == 503:
        return unavailable(f"Triton is unavailable: {message}")
    if status == 429:
        return ApiError(429, "overloaded", message, headers={"Retry-After": RETRY_AFTER_SECONDS})
    return ApiError(500, "model_error", f"the model failed: {message}")
