"""What the clients return: responses, stream chunks, batch results and model metadata.

Outputs are decoded lazily (on first access to ``.outputs``): a caller that only reads ``.text``
or passes ``.json()`` along never pays for building numpy arrays.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

try:
    import orjson

    def _loads(data: bytes | str) -> Any:
        return orjson.loads(data)

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
except ImportError:  # pragma: no cover - orjson is a dependency, but the SDK does not need it
    def _loads(data: bytes | str) -> Any:
        return json.loads(data)

    def _dumps(value: Any) -> bytes:
        return json.dumps(value, default=_json_default, separators=(",", ":")).encode()


__all__ = ["BatchResult", "ModelMetadata", "Response", "StreamChunk", "TensorSpec", "decode_outputs",
           "encode_inputs"]

T = TypeVar("T")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _encode_value(value: Any) -> Any:
    """One input value -> its invoke JSON: numbers and strings as they are, bytes as {"b64": ...}."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":
            return value  # serialised natively by orjson (OPT_SERIALIZE_NUMPY) or by _json_default
        return [_encode_value(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_encode_value(v) for v in value] if any(isinstance(v, bytes | bytearray | np.ndarray | list | tuple)
                                                        for v in value) else list(value)
    return value


def encode_inputs(inputs: Mapping[str, Any], parameters: Mapping[str, Any] | None) -> bytes:
    """The invoke/stream body: ``{"inputs": {...}, "parameters": {...}}`` as compact JSON bytes.

    Values may be numbers, strings, (nested) lists, numpy arrays, or bytes (sent base64-encoded as
    ``{"b64": ...}``, the gateway's way of carrying raw tensor data and BYTES elements).
    """
    if not isinstance(inputs, Mapping):
        raise TypeError(f"inputs must be a mapping of input name -> value, not {type(inputs).__name__}")
    body: dict[str, Any] = {"inputs": {str(k): _encode_value(v) for k, v in inputs.items()}}
    if parameters:
        if not isinstance(parameters, Mapping):
            raise TypeError(f"parameters must be a mapping, not {type(parameters).__name__}")
        body["parameters"] = dict(parameters)
    try:
        return _dumps(body)
    except TypeError as exc:
        raise TypeError(f"inputs/parameters are not JSON serialisable: {exc}") from None


def decode_value(value: Any) -> Any:
    """A JSON output -> a numpy array when it is a (nested) list of numbers, else the Python value.

    Integers become int64, floats float64 (JSON does not carry the model's datatype; use
    ``.astype`` for float32). Strings, objects and ragged lists stay Python values.
    """
    if not isinstance(value, list) or not value:
        return value
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        return value
    return arr if arr.dtype.kind in "biuf" else value


def decode_outputs(outputs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every output through :func:`decode_value`."""
    return {name: decode_value(v) for name, v in (outputs or {}).items()}


class Response:
    """One invoke answer.

    Attributes: ``status_code``, ``headers``, ``content`` (raw body), ``request_id``
    (``X-Request-Id``), ``revision`` (``X-Tritium-Revision``: which revision of the service
    answered), ``cached`` (True when ``X-Tritium-Cache: hit``), ``latency_ms`` (the whole call as
    the caller saw it, retries included), ``attempts``.

    Example::

        response = client.invoke(model_id="add", inputs={"INPUT0": [1, 2], "INPUT1": [3, 4]})
        response.outputs["SUM"]      # array([[4., 6.]])
        response.text                # the model's text answer, or None
        response.json()              # the body as sent by the gateway
    """

    __slots__ = ("_doc", "_json", "_outputs", "attempts", "cached", "content", "content_type", "headers", "latency_ms",
                 "request_id", "revision", "status_code")

    def __init__(self, status_code: int, headers: Mapping[str, str], content: bytes, latency_ms: float,
                 attempts: int = 1) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content
        self.latency_ms = latency_ms
        self.attempts = attempts
        wanted = _read_headers(headers)
        self.content_type = wanted.get("content-type", "")
        self.request_id: str | None = wanted.get("x-request-id")
        self.cached = wanted.get("x-tritium-cache") == "hit"
        self.revision: str | None = wanted.get("x-tritium-revision")
        self._json = _is_json(self.content_type)
        self._doc: Any = _UNSET
        self._outputs: dict[str, Any] | None = None

    @property
    def is_json(self) -> bool:
        return self._json

    def json(self) -> Any:
        """The decoded JSON body (raises ValueError when a post stage answered XML or bytes)."""
        if self._doc is _UNSET:
            if not self.is_json:
                raise ValueError(f"the response is {self.content_type or 'untyped'}, not JSON")
            self._doc = _loads(self.content)
        return self._doc

    @property
    def model(self) -> str | None:
        doc = self.json() if self.is_json else None
        return doc.get("model") if isinstance(doc, dict) else None

    @property
    def outputs(self) -> dict[str, Any]:
        """Output name -> numpy array (numeric tensors) or Python value; empty for non-JSON bodies."""
        if self._outputs is None:
            doc = self.json() if self.is_json else None
            self._outputs = decode_outputs(doc.get("outputs") if isinstance(doc, dict) else None)
        return self._outputs

    @property
    def text(self) -> str | None:
        """The model's text answer (``"text"`` of the JSON body), or the body itself when it is not JSON."""
        if not self.is_json:
            return self.content.decode("utf-8", errors="replace")
        doc = self.json()
        return doc.get("text") if isinstance(doc, dict) else None

    def __repr__(self) -> str:
        return (f"Response(status_code={self.status_code}, model={self.model!r}, request_id={self.request_id!r}, "
                f"latency_ms={self.latency_ms:.1f}, cached={self.cached})")


_WANTED = {b"content-type", b"x-request-id", b"x-tritium-cache", b"x-tritium-revision"}


def _read_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The few headers a Response reads, in one pass (httpx's ``Headers.get`` scans all headers per call)."""
    raw = getattr(headers, "raw", None)
    if raw is None:
        return {k.lower(): v for k, v in headers.items() if k.lower().encode() in _WANTED}
    out = {}
    for key, value in raw:
        name = key.lower()
        if name in _WANTED:
            out[name.decode()] = value.decode("latin-1")
    return out


def _is_json(content_type: str) -> bool:
    ct = content_type.split(";", 1)[0].strip().lower()
    return ct == "application/json" or ct.endswith("+json")


class _Unset:
    pass


_UNSET: Any = _Unset()


@dataclass(frozen=True)
class StreamChunk:
    """One model response of a stream (one SSE ``data:`` event)."""

    index: int
    outputs: dict[str, Any]
    text: str | None
    data: Any = field(repr=False, default=None)

    @classmethod
    def from_event(cls, index: int, data: Any) -> StreamChunk:
        doc = data if isinstance(data, dict) else {}
        return cls(index=index, outputs=decode_outputs(doc.get("outputs")), text=doc.get("text"), data=data)


@dataclass(frozen=True)
class BatchResult(Generic[T]):
    """The outcome of one item of ``invoke_batch``: exactly one of ``response`` and ``error`` is set."""

    index: int
    response: T | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> T:
        """The response, or raise the item's error."""
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


#: ``progress(done, total, result)``, called once per finished item, in completion order.
ProgressCallback = Callable[[int, int, BatchResult[Response]], None]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelMetadata:
    """A model's KServe v2 metadata (``GET /v2/models/{name}``)."""

    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ModelMetadata:
        def specs(items: Iterable[Mapping[str, Any]] | None) -> tuple[TensorSpec, ...]:
            return tuple(TensorSpec(str(t.get("name")), str(t.get("datatype")),
                                    tuple(int(d) for d in t.get("shape", ()))) for t in items or ())

        return cls(name=str(doc.get("name")), versions=tuple(str(v) for v in doc.get("versions") or ()),
                   platform=str(doc.get("platform", "")), inputs=specs(doc.get("inputs")),
                   outputs=specs(doc.get("outputs")), raw=dict(doc))


@dataclass(frozen=True)
class Health:
    """``live``: the gateway answers; ``ready``: Triton and every stage are ready; ``detail``: what is not."""

    live: bool
    ready: bool
    detail: str | None = None

    def __bool__(self) -> bool:
        return self.live and self.ready


class SSEParser:
    """Incremental Server-Sent Events parser: feed lines, get (event, data) pairs at blank lines."""

    __slots__ = ("_data", "_event")

    def __init__(self) -> None:
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        line = line.rstrip("\r\n")
        if not line:
            if not self._data and self._event == "message":
                return None
            event, data = self._event, "\n".join(self._data)
            self._event, self._data = "message", []
            return event, data
        if line.startswith(":"):
            return None  # comment / keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None

    def flush(self) -> tuple[str, str] | None:
        """An event left without its blank line when the stream ended."""
        return self.feed("")


def loads(data: bytes | str) -> Any:
    return _loads(data)
