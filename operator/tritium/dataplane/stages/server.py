"""A stage sidecar (pre or post): built-in processor or user script behind a tiny HTTP server.

Endpoints: POST /v1/process (the gateway's binary messages), GET /healthz, GET /metrics (the
PodMonitor scrapes it on the stage's TCP port, render/podmonitor.py).
Each stage is its own process (its own container in the pod), so a slow or crashing user
script can only take its own stage down, which the gateway then reports by name.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tritium.api.spec import InferenceServiceSpec
from tritium.dataplane.config import ConfigError
from tritium.dataplane.convert import as_array, text_of
from tritium.dataplane.errors import ApiError, bad_request, refuse_if_too_deep
from tritium.dataplane.http.sidecar_server import Reply, Request
from tritium.dataplane.metrics import StageMetrics
from tritium.dataplane.security.clientip import parse_address
from tritium.dataplane.signature import (
    TensorSpec,
    declared,
    filtered,
    json_for_script,
    outputs_from_script,
    raw_for_script,
    tensors_for_script,
)
from tritium.dataplane.stages import v2_relay
from tritium.dataplane.stages.builtin_post import apply_filter, to_binary, to_xml, top_k
from tritium.dataplane.stages.builtin_pre import BuiltinPre
from tritium.dataplane.stages.scripts import UserScript, script_path
from tritium.dataplane.tensors import (
    HEADER_LENGTH,
    STAGE_CONTENT_TYPE,
    numpy_dtype,
    pack_message,
    tensor_to_json,
    unpack_message,
)

if TYPE_CHECKING:
    import jsonschema

log = logging.getLogger("tritium.stage")
_NUMERIC = "biufc"


def _schema_field(err: jsonschema.ValidationError) -> str:
    path = "inputs"
    for part in err.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    if err.validator == "required" and isinstance(err.instance, dict):
        missing = [p for p in err.validator_value if p not in err.instance]
        if missing:
            path += f".{missing[0]}"
    return path


def _as_tensor(name: str, value: Any, model_inputs: dict[str, Any]) -> np.ndarray:
    """A script's value -> an array, cast to the model's input datatype when both are numeric."""
    arr = as_array(value)
    if arr.dtype.kind == "O":
        return arr
    spec = model_inputs.get(name)
    if spec is not None and spec[0] != "BYTES" and arr.dtype.kind in _NUMERIC:
        want = np.dtype(numpy_dtype(spec[0]))
        if arr.dtype != want:
            arr = arr.astype(want)
    return arr


class StageProcessor:
    """What one stage does to a message, independent of HTTP (unit-testable)."""

    def __init__(self, stage: str, spec: InferenceServiceSpec, scripts_dir: str | None = None) -> None:
        if stage not in ("pre", "post"):
            raise ConfigError(f"unknown stage {stage!r} (pre or post)")
        section = spec.preprocess if stage == "pre" else spec.postprocess
        if section is None:
            raise ConfigError(f"the spec has no {stage}process section")
        self.stage = stage
        self.section = section
        self.model_name = spec.model.name
        self.script: UserScript | None = None
        # What the script declares it takes (pre: INPUTS) or returns (post: OUTPUTS): the pipeline's
        # signature (signature.py), which v2 clients discover and requests are checked against.
        self.inputs: tuple[TensorSpec, ...] | None = None
        self.outputs: tuple[TensorSpec, ...] | None = None
        self.v2_outputs: tuple[TensorSpec, ...] | None = None  # the declared outputs after the filter
        if section.script is not None:
            kwargs = {"scripts_dir": scripts_dir} if scripts_dir else {}
            self.script = UserScript(stage, script_path(stage, section.script, **kwargs), section.script.options)
            name = "INPUTS" if stage == "pre" else "OUTPUTS"
            value = getattr(self.script.module, name, None)
            if value is not None:
                specs = declared(value, name, f"{stage} script {self.script.path}")
                if stage == "pre":
                    self.inputs = specs
                else:
                    self.outputs = specs
                    self.v2_outputs = filtered(specs, getattr(section, "filter", None))
            else:
                log.warning("the %s script declares no %s: v2 clients are shown the core model's %s instead",
                            stage, name, "inputs" if stage == "pre" else "outputs")
        schema = getattr(section, "input_schema", None)
        self.validator: jsonschema.Draft202012Validator | None = None
        if schema:
            # Imported only by a stage that validates: jsonschema and its schema registry are about
            # 3 MB of every stage process (benchmarks/process_rss.py), most never see an inputSchema.
            import jsonschema

            self.validator = jsonschema.Draft202012Validator(schema)
            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError as exc:
                raise ConfigError(f"preprocess.inputSchema is not a valid JSON Schema: {exc.message}") from None
        builtin = section.builtin
        self.pre_builtin = BuiltinPre(builtin.format) if stage == "pre" and builtin is not None else None

    def validate(self, values: Any) -> None:
        if self.validator is None:
            return
        errors = sorted(self.validator.iter_errors(values), key=lambda e: list(map(str, e.absolute_path)))
        if errors:
            err = errors[0]
            raise bad_request(err.message, _schema_field(err), code="schema_violation")

    async def run_script(self, data: dict[str, Any], parameters: dict[str, Any]) -> Any:
        assert self.script is not None
        try:
            result = await self.script(data, parameters)
        except ValueError as exc:
            raise bad_request(str(exc) or "invalid input", getattr(exc, "field", None),
                              code="invalid_input") from None
        except ApiError:
            raise
        except Exception as exc:
            log.exception("%s script failed", self.stage)
            raise ApiError(500, "script_error", f"{self.stage} script failed: {type(exc).__name__}: {exc}") from None
        if not isinstance(result, dict):
            raise ApiError(500, "script_error", f"{self.stage} script returned {type(result).__name__}, not a dict")
        return result

    async def process(self, header: dict[str, Any], tensors: dict[str, np.ndarray], raw: bytes | None) -> tuple[
            dict[str, Any], dict[str, np.ndarray], bytes | None]:
        params = header.get("parameters") or {}
        mode = header.get("mode")
        if mode == "signature":
            return self.signature(), {}, None
        if mode == v2_relay.REQUEST_MODE:
            return await v2_relay.relay_request(self, header, raw)
        if mode == v2_relay.ANSWER_MODE:
            return await v2_relay.relay_answer(self, header, raw)
        if self.stage == "pre":
            return {}, await self.pre(header, tensors, raw, params), None
        return await self.post(header, tensors, params)

    def signature(self) -> dict[str, Any]:
        """What the script declares, for the gateway's metadata (None: nothing declared, or a built-in)."""
        def listed(specs: tuple[TensorSpec, ...] | None) -> list[dict[str, Any]] | None:
            return None if specs is None else [t.metadata() for t in specs]

        return {"inputs": listed(self.inputs), "outputs": listed(self.outputs)}

    async def pre(self, header: dict[str, Any], tensors: dict[str, np.ndarray], raw: bytes | None,
                  params: dict[str, Any]) -> dict[str, np.ndarray]:
        mode = header.get("mode")
        model: dict[str, Any] = header.get("model") or {}
        content_type = header.get("content_type") or ""
        values: Any = header.get("inputs") if mode == "json" else None
        if self.pre_builtin is not None and mode != "tensors":
            values, params = self.pre_builtin.json_inputs(content_type, raw, values, params)
        if mode == "tensors" and self.validator is not None:
            # The schema describes one request's inputs; a batched tensor holds one per row.
            if model.get("max_batch_size", 0) > 0 and all(v.ndim > 0 for v in tensors.values()):
                rows = min(v.shape[0] for v in tensors.values())
                for i in range(rows):
                    self.validate({k: tensor_to_json(v[i]) for k, v in tensors.items()})
            else:
                self.validate({k: tensor_to_json(v) for k, v in tensors.items()})
        elif values is not None:
            self.validate(values)
        if self.script is None:
            if mode == "tensors":
                return tensors
            assert self.pre_builtin is not None
            return self.pre_builtin.tensors(content_type, raw, values, model, params, header.get("header_length"))
        if mode == "tensors":
            data: dict[str, Any] = tensors_for_script(tensors, self.inputs)
        elif values is not None:
            if not isinstance(values, dict):
                raise bad_request("inputs must be an object of name -> value", "inputs")
            data = json_for_script(values, self.inputs)
        else:
            data = raw_for_script(raw or b"", content_type, self.inputs)
            params = {**params, "content_type": content_type}
        result = await self.run_script(data, params)
        inputs = model.get("inputs", {})
        return {name: _as_tensor(name, value, inputs) for name, value in result.items()}

    async def post(self, header: dict[str, Any], tensors: dict[str, np.ndarray],
                   params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray], bytes | None]:
        section = self.section
        text: str | None
        if self.script is not None:
            result = dict(await self.run_script(dict(tensors), params))
            value = result.pop("text", None)
            text = value if isinstance(value, str) else None
            if value is not None and text is None:
                result["text"] = value
            outputs: dict[str, Any] = result
        else:
            outputs = dict(tensors)
            builtin = section.builtin
            if builtin is not None and builtin.top_k is not None:
                outputs = top_k(outputs, builtin.top_k)
            text = text_of(outputs)
        outputs = apply_filter(outputs, section.filter)
        if header.get("mode") == "v2" and self.v2_outputs is not None:
            # A v2 answer is what the metadata promises: the declared outputs, typed as declared.
            return {"values": {}, "text": None}, outputs_from_script(outputs, self.v2_outputs), None
        out_tensors = {k: v for k, v in outputs.items() if isinstance(v, np.ndarray)}
        values = {k: v for k, v in outputs.items() if not isinstance(v, np.ndarray)}
        head: dict[str, Any] = {"values": values, "text": text}
        fmt = section.builtin.format if section.builtin is not None else "json"
        if header.get("mode") == "invoke" and fmt == "xml":
            head["content_type"] = "application/xml"
            return head, {}, to_xml(outputs, text)
        if header.get("mode") == "invoke" and fmt == "binary":
            body, headers = to_binary(self.model_name, outputs)
            head.update(content_type="application/octet-stream", headers=headers)
            return head, {}, body
        return head, out_tensors, None


_LENGTH_HEADER = HEADER_LENGTH.lower()


def _local_peer(peer: str) -> bool:
    """Whether a connection comes from this machine (or pod): loopback, or no IP at all (a Unix socket).

    In a pod the TCP port listens on the pod IP for kubelet probes and Prometheus scrapes, and the
    NetworkPolicy lets other pods reach it for the scrapes; processing a message there would let
    any of them skip the gateway (authentication, rate limits, validation). The gateway of the
    same pod or machine calls from loopback or over the Unix socket.
    """
    if not peer:
        return True
    address = parse_address(peer)
    return address is not None and address.is_loopback


class StageService:
    """One stage process' two doors to its processor, sharing its metrics.

    `wire` answers the gateway on the Unix socket (stage_wire frames); `http` serves probes,
    Prometheus scrapes and, unless `tcp_processing` is off, POST /v1/process (a gateway given an
    http:// URL, from loopback only: see `_local_peer`) on the TCP port.

    A stage that listens on a Unix socket (every pod, and local mode) turns TCP processing off:
    its gateway never calls the TCP port, and a loopback peer there is not always the pod's own
    process (a service mesh's sidecar delivers other pods' connections from 127.0.0.6), so the
    only door to the processor is the socket, which only the pod's containers can reach.
    """

    def __init__(self, processor: StageProcessor, metrics: StageMetrics | None = None,
                 tcp_processing: bool = True) -> None:
        self.processor = processor
        self.tcp_processing = tcp_processing
        self.metrics = metrics or StageMetrics(processor.stage)
        self.stage = processor.stage
        self._health = orjson.dumps({"status": "ok", "stage": self.stage})
        self._latency = self.metrics.latency.labels(self.stage)
        self._counters: dict[int, Any] = {}  # label children by status, looked up once (labels() is not free)
        # Whether the Unix socket may run a message's first step inside its read (stage_wire's
        # `eager`): everything here up to the script is plain code, and a sync script either runs
        # there too (BLOCKING = False) or is handed to the thread pool. A user's async script may
        # need a task of its own (asyncio.timeout does), so it keeps one per message.
        script = processor.script
        self.eager = script is None or not script.is_async

    async def process(self, body: bytes, header_length: int | None, rid: str | None) -> tuple[int, bytes, int]:
        """One message -> (status, answer, answer's header length); errors become their JSON envelope."""
        start = time.perf_counter()
        status = 200
        try:
            header, tensors, raw = unpack_message(body, header_length)
            try:
                out_header, out_tensors, out_raw = await self.processor.process(header, tensors, raw)
                answer, answer_length = pack_message(out_header, out_tensors, out_raw)
            except orjson.JSONEncodeError as exc:  # the client's JSON written again (v2_relay): too deep
                refuse_if_too_deep(exc)
                raise
            return 200, answer, answer_length
        except ApiError as exc:
            status = exc.status
            return status, exc.to_json(rid), 0
        except Exception as exc:
            log.exception("%s stage failed", self.stage)
            status = 500
            return 500, ApiError(500, "stage_error", f"{type(exc).__name__}: {exc}").to_json(rid), 0
        finally:
            counter = self._counters.get(status)
            if counter is None:
                counter = self._counters[status] = self.metrics.requests.labels(self.stage, str(status))
            counter.inc()
            self._latency.observe(time.perf_counter() - start)

    async def wire(self, body: bytes, header_length: int, request_id: str, timeout: float) -> tuple[int, bytes, int]:
        if not body:
            return 200, b"", 0  # the gateway's readiness ping: the socket answers
        return await self.process(body, header_length, request_id or None)

    async def http(self, request: Request) -> Reply:
        if request.path == "/v1/process":
            if request.method != "POST":
                return Reply(405, b"", {"Allow": "POST"})
            if not self.tcp_processing:
                err = ApiError(403, "forbidden",
                               f"the {self.stage} stage processes messages on its Unix socket only: call the gateway")
                return Reply(403, err.to_json(request.headers.get("x-request-id")),
                             {"Content-Type": "application/json"})
            if not _local_peer(request.peer):
                err = ApiError(403, "forbidden",
                               f"the {self.stage} stage processes messages from loopback only: call the gateway")
                return Reply(403, err.to_json(request.headers.get("x-request-id")),
                             {"Content-Type": "application/json"})
            length = request.headers.get(_LENGTH_HEADER)
            try:
                header_length = int(length) if length else None
            except ValueError:
                err = bad_request(f"{HEADER_LENGTH} must be an integer", HEADER_LENGTH)
                return Reply(400, err.to_json(), {"Content-Type": "application/json"})
            status, answer, answer_length = await self.process(request.body, header_length,
                                                               request.headers.get("x-request-id"))
            if status != 200:
                return Reply(status, answer, {"Content-Type": "application/json"})
            return Reply(200, answer, {"Content-Type": STAGE_CONTENT_TYPE, HEADER_LENGTH: str(answer_length)})
        if request.method not in ("GET", "HEAD"):
            return Reply(405, b"", {"Allow": "GET"})
        if request.path == "/healthz":
            return Reply(200, self._health, {"Content-Type": "application/json"})
        if request.path == "/metrics":
            return Reply(200, generate_latest(self.metrics.registry), {"Content-Type": CONTENT_TYPE_LATEST})
        return Reply(404, b"", {})

