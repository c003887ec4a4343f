"""The gateway: the KServe v2 REST API, the JSON invoke API and SSE streaming in front of Triton.

One HTTP server (dataplane/http/server.py) on one uvloop event loop. Handlers parse their API,
run the pipeline (pre -> Triton -> post) under the request's deadline, and answer. Every failure
is an ApiError rendered as JSON by one dispatcher, which also counts and times every request.
During a canary rollout the dispatcher first asks the traffic split (canary/traffic.py) whether an
inference request goes to the canary revision instead (canary/forward.py).
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import itertools
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from tritium.dataplane import cache as cache_mod
from tritium.dataplane import signature
from tritium.dataplane.canary.forward import CanaryForwarder
from tritium.dataplane.canary.traffic import TrafficFile, TrafficSplit
from tritium.dataplane.config import DataPlaneConfig
from tritium.dataplane.errors import (
    CACHE_HEADER,
    REQUEST_ID_HEADER,
    REVISION_HEADER,
    TIMEOUT_HEADER,
    ApiError,
    bad_request,
    dumps_request_json,
)
from tritium.dataplane.http.server import Request, Response, Router, StreamResponse
from tritium.dataplane.http.stage_client import StageClient
from tritium.dataplane.metrics import GatewayMetrics
from tritium.dataplane.pipeline import Deadline, Pipeline, Result, post_passes_modes, pre_passes_tensors
from tritium.dataplane.security.audit import AuditLog
from tritium.dataplane.security.layers import KEY_ID_STATE, OPEN_ENDPOINTS, Security, SecuritySettings
from tritium.dataplane.security.redact import RedactingFilter, Redactor
from tritium.dataplane.security.redact_response import redact_result
from tritium.dataplane.security.signing import SIGNATURE_HEADER, Signer
from tritium.dataplane.tensors import (
    HEADER_LENGTH,
    V2Request,
    encode_v2_response,
    model_parameters,
    parse_v2_request,
    tensor_to_bytes,
)
from tritium.dataplane.triton import Triton, TritonHttp, map_http_error, unavailable

log = logging.getLogger("tritium.gateway")

REDIS_URL_ENV = "TRITIUM_REDIS_URL"
TRITON_PROTOCOL_ENV = "TRITIUM_TRITON_PROTOCOL"  # unary inference over "http" (default) or "grpc"
JSON = "application/json"
_GRPC_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_V2_TYPES = ("", JSON, "application/octet-stream")
_FORM = "application/x-www-form-urlencoded"
_TIMEOUT_KEY = TIMEOUT_HEADER.lower()
_HEADER_LENGTH_KEY = HEADER_LENGTH.lower()
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower()


_ID_PREFIX = os.urandom(10).hex()
_ID_COUNTER = itertools.count(1)


MAX_TIMEOUT_SECONDS = 24 * 3600.0  # a deadline longer than a day is a mistake, not a wish
MAX_MODEL_NAME = 256  # Triton's model names are directory names; far above any real one


def new_request_id() -> str:
    """A request id for requests that come without one: unique per process start, then a counter
    (32 hex digits like a UUID; a uuid4 per request read the random device every time)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFF:012x}"


def parse_timeout(value: str) -> float:
    """X-Request-Timeout: seconds ("2.5") or the grpc-timeout form ("2500m", "3S", "100u")."""
    text = value.strip()
    try:
        seconds = float(text[:-1]) * _GRPC_UNITS[text[-1]] if text and text[-1] in _GRPC_UNITS else float(text)
    except ValueError:
        raise bad_request(f"{TIMEOUT_HEADER} must be seconds or a grpc-timeout value, got {value!r}",
                          TIMEOUT_HEADER) from None
    if not seconds > 0:
        raise bad_request(f"{TIMEOUT_HEADER} must be positive, got {value!r}", TIMEOUT_HEADER)
    if not seconds <= MAX_TIMEOUT_SECONDS:  # also inf and 1e309 (float() accepts both)
        raise bad_request(f"{TIMEOUT_HEADER} must be at most {MAX_TIMEOUT_SECONDS:.0f} s", TIMEOUT_HEADER)
    return seconds


_NOT_JSON = (b"Infinity", b"NaN")


def json_safe(body: bytes) -> bytes:
    """Triton writes infinite and NaN values into JSON answers as `Infinity` and `NaN` literals,
    which are not JSON (strict parsers refuse the whole answer): they become null, as in every
    answer the gateway encodes itself. Exact values travel in the binary extension."""
    if not any(token in body for token in _NOT_JSON):
        return body
    try:
        return orjson.dumps(json.loads(body))  # the stdlib reads the literals; orjson writes them as null
    except ValueError:
        return body


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclass
class GatewaySettings:
    config: DataPlaneConfig
    triton_grpc: str
    triton_http: str
    pre_url: str | None = None
    post_url: str | None = None
    redis_url: str | None = None
    traffic_file: str | None = None  # the canary split's file (pod_layout.TRAFFIC_DIR); None: never forward
    security: SecuritySettings | None = None  # key file, limiter Redis (from the environment in a pod)


class Gateway:
    """Holds the long-lived clients (gRPC channel, HTTP pool, cache) for the process' lifetime."""

    def __init__(self, settings: GatewaySettings, metrics: GatewayMetrics | None = None) -> None:
        self.settings = settings
        spec = settings.config.spec
        self.revision = settings.config.revision
        self.max_bytes = spec.gateway.max_request_bytes
        self.default_timeout = spec.gateway.request_timeout_seconds
        self.metrics = metrics or GatewayMetrics()
        self.cache: cache_mod.ResponseCache | None = None
        self.unary: TritonHttp | None = None
        self.triton: Triton
        self.pipeline: Pipeline
        self.session: aiohttp.ClientSession
        self.stages: list[StageClient] = []
        self.forward_to: TritonHttp | None = None  # set when v2 requests go to Triton as they came
        # weight stays 0 (nothing forwarded) unless a traffic file names this revision as stable;
        # each change of the split sets the canary weight gauge.
        self.split = TrafficSplit(self.revision, on_change=self.metrics.set_canary_weight)
        self.canary: CanaryForwarder | None = None
        # The fingerprint of the certificate the API port serves (set with TLS: security/tls.py);
        # an https canary must present the same one.
        self.tls_pin: Callable[[], bytes] | None = None
        self._traffic_task: asyncio.Task[None] | None = None
        self.security = Security(spec.security, settings.security or SecuritySettings(), self.metrics.registry,
                                 namespace=f"{settings.config.namespace}/{settings.config.name}")
        self.audit = AuditLog(spec.security.audit, self.revision) if spec.security.audit.enabled else None
        self.signer = (Signer((settings.security or SecuritySettings()).signing_key_file)
                       if spec.security.sign_responses else None)
        self._signer_task: asyncio.Task[None] | None = None
        self.redaction = (RedactingFilter(Redactor(spec.security.redact_patterns or ()))
                          if spec.security.redact_pii else None)
        self._redacted: list[logging.Handler] = []
        self.has_stages = spec.preprocess is not None or spec.postprocess is not None
        self.served_model = spec.model.name
        # What the stage scripts declare (pre INPUTS, post OUTPUTS), asked once: a script changes only
        # with a new revision, which is a new pod.
        self._declared: tuple[tuple[signature.TensorSpec, ...] | None, tuple[signature.TensorSpec, ...] | None
                              ] | None = None
        if self.redaction is not None and self.audit is not None:
            self.audit.redact_with(self.redaction.redactor)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        await self.security.start()
        if self.redaction is not None:  # every handler of the process' log (cli.py sets it up first)
            self._redacted = list(logging.getLogger().handlers)
            for handler in self._redacted:
                handler.addFilter(self.redaction)
        if self.signer is not None:
            self._signer_task = asyncio.create_task(self.signer.watch())
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60, ttl_dns_cache=None),
            skip_auto_headers=("User-Agent",),
        )
        self.triton = Triton(s.triton_grpc)
        pre = StageClient("pre", s.pre_url) if s.pre_url else None
        post = StageClient("post", s.post_url) if s.post_url else None
        self.stages = [c for c in (pre, post) if c is not None]
        protocol = os.environ.get(TRITON_PROTOCOL_ENV, "http").lower()
        if protocol not in ("http", "grpc"):
            raise ValueError(f"{TRITON_PROTOCOL_ENV} must be http or grpc, not {protocol!r}")
        self.unary = TritonHttp(s.triton_http) if protocol == "http" else None
        spec = s.config.spec
        self.pipeline = Pipeline(self.triton, pre, post, self.unary,
                                 pre_skips_tensors=pre_passes_tensors(spec.preprocess),
                                 post_skips=post_passes_modes(spec.postprocess))
        cache_spec = spec.gateway.cache
        if cache_spec.enabled:
            if s.redis_url:
                self.cache = cache_mod.RedisCache(s.redis_url, cache_spec.ttl_seconds, cache_spec.max_entries,
                                                  namespace=f"{s.config.namespace}/{s.config.name}/{self.revision}")
            else:
                self.cache = cache_mod.MemoryCache(cache_spec.ttl_seconds, cache_spec.max_entries)
        if self.redaction is not None and spec.security.redact_responses:
            self.pipeline.redact = functools.partial(redact_result, redact=self.redaction.redactor)
        # v2 requests go to Triton byte for byte when nothing on the way needs their tensors.
        if (self.cache is None and self.pipeline.pre_tensors is None and self.pipeline.post_by_mode["v2"] is None
                and self.pipeline.redact is None):
            self.forward_to = self.unary
        if s.traffic_file:
            self.canary = CanaryForwarder(self.revision, self.metrics,
                                          lambda exc, request: _error_response(exc, request,
                                                                               request.state[REQUEST_ID_HEADER]),
                                          pin=self.tls_pin)
            await self.canary.start()
            traffic = TrafficFile(s.traffic_file, self.split)
            traffic.poll()
            self._traffic_task = asyncio.create_task(traffic.watch())

    async def stop(self) -> None:
        await self.security.stop()
        for handler in self._redacted:
            handler.removeFilter(self.redaction)
        if self._signer_task is not None:
            self._signer_task.cancel()
        if self.audit is not None:
            self.audit.close()
        if self._traffic_task is not None:
            self._traffic_task.cancel()
        if self.canary is not None:
            await self.canary.close()
        if self.cache is not None:
            await self.cache.close()
        await self.triton.close()
        if self.unary is not None:
            await self.unary.close()
        for stage in self.stages:
            await stage.close()
        await self.session.close()

    # -- request plumbing --------------------------------------------------------------------
    def deadline(self, request: Request) -> Deadline:
        """The request's deadline, fixed once when it arrives (set by the middleware)."""
        deadline: Deadline | None = request.state.get("deadline")
        if deadline is None:
            header = request.headers.get(_TIMEOUT_KEY) or request.headers.get("grpc-timeout")
            seconds = parse_timeout(header) if header else self.default_timeout
            deadline = request.state["deadline"] = Deadline(asyncio.get_running_loop().time() + seconds)
        return deadline

    def headers(self, request: Request, cache: str | None = None) -> dict[str, str]:
        h = {REQUEST_ID_HEADER: request.state[REQUEST_ID_HEADER], REVISION_HEADER: self.revision}
        if cache is not None and self.cache is not None:  # no cache: no hit/miss to tell
            h[CACHE_HEADER] = cache
        return h

    def model_label(self, model: str) -> str:
        """A request's model as a metrics label: the model this pod serves, else "". The client picks
        the name in the path; a label value per name would grow the registry (some 6 KiB a name) and
        every scrape without bound."""
        return model if model == self.served_model else ""

    async def cached(self, request: Request, model: str, key: str | None) -> Response | None:
        if self.cache is None or key is None:
            return None
        hit = await self.cache.get(key)
        self.metrics.cache.labels(self.model_label(model), "hit" if hit else "miss").inc()
        if hit is None:
            return None
        headers = {"Content-Type": hit.content_type, **hit.headers, **self.headers(request, "hit")}
        return Response(200, hit.body, headers)

    async def remember(self, key: str | None, body: bytes, content_type: str, headers: dict[str, str]) -> None:
        if self.cache is not None and key is not None:
            await self.cache.set(key, cache_mod.CachedResponse(body=body, content_type=content_type, headers=headers))

    # -- health and metadata -----------------------------------------------------------------
    async def live(self, request: Request) -> Response:
        return Response(200, b"", self.headers(request))

    async def ready(self, request: Request) -> Response:
        checks = await asyncio.gather(self.triton.ready(), *(s.ready() for s in self.stages))
        names = ["triton", *(s.name for s in self.stages)]
        down = [n for n, ok in zip(names, checks, strict=True) if not ok]
        if down:
            raise ApiError(503, "not_ready", f"not ready: {', '.join(down)}", field=down[0],
                           headers={"Retry-After": "1"})
        return Response(200, b"", self.headers(request))

    async def proxy_get(self, request: Request) -> Response:
        """Server metadata and statistics come from Triton's own HTTP API, byte for byte."""
        return await self._triton_get(request, request.path)

    async def _triton_get(self, request: Request, path: str) -> Response:
        url = self.settings.triton_http.rstrip("/") + path
        try:
            async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unavailable(f"Triton is unavailable: {exc or type(exc).__name__}") from None
        model = request.match_info.get("model")
        if status >= 400:
            # Triton's own error body ({"error": "..."}) would lack code and request_id: answer ours.
            if model and (status == 404 or b"unknown model" in body.lower()):
                raise ApiError(404, "model_not_found", f"model {model!r} is not served here", field="model")
            raise map_http_error(status, body, model or "")
        return Response(status, body, {"Content-Type": JSON, **self.headers(request)})

    async def model_metadata(self, request: Request) -> Response:
        """A model's metadata or config: with stages, the pipeline's (signature.py), else Triton's as is."""
        answer = await self._triton_get(request, request.path)
        if not self.has_stages:
            return answer
        model, version = request.match_info["model"], request.match_info.get("version", "")
        sig = await self.signature(model, version)
        core = orjson.loads(answer.body)
        doc = signature.config(core, sig) if request.path.endswith("/config") else signature.metadata(core, sig)
        return Response(200, orjson.dumps(doc), answer.headers)

    async def core_metadata(self, request: Request) -> Response:
        """/v2/models/NAME/core[/config]: the core model's own metadata and config, as Triton has them."""
        path = request.path
        at = path.rindex(signature.CORE_SUFFIX)  # the last one: a model may itself be named "core"
        return await self._triton_get(request, path[:at] + path[at + len(signature.CORE_SUFFIX):])

    async def signature(self, model: str, version: str) -> signature.Signature:
        """The pipeline's signature: the core model's tensors, the spec's stages, what their scripts declare."""
        info = await self.triton.model_info(model, version)
        spec = self.settings.config.spec
        if self._declared is None:
            stages = {stage.name: stage for stage in self.stages}
            self._declared = (await self._declared_by(stages.get("pre"), "inputs"),
                              await self._declared_by(stages.get("post"), "outputs"))
        return signature.pipeline_signature(info.inputs, info.outputs, info.max_batch_size, spec.preprocess,
                                            spec.postprocess, *self._declared)

    @staticmethod
    async def _declared_by(stage: StageClient | None, what: str) -> tuple[signature.TensorSpec, ...] | None:
        if stage is None:
            return None
        head, _, _ = await stage.call({"mode": "signature"}, request_id="", timeout=5.0)
        value = head.get(what)
        return signature.declared(value, what.upper(), f"the {stage.name} stage") if value else None

    async def repository_index(self, request: Request) -> Response:
        """Triton's model repository index (read-only: load/unload stay unexposed), for `models()` listings."""
        url = self.settings.triton_http.rstrip("/") + "/v2/repository/index"
        body = request.body
        try:
            async with self.session.post(url, data=body or b"{}", timeout=aiohttp.ClientTimeout(total=5),
                                         headers={"Content-Type": JSON}) as resp:
                answer, status = await resp.read(), resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unavailable(f"Triton is unavailable: {exc or type(exc).__name__}") from None
        if status == 400:
            raise ApiError(400, "invalid_input", answer.decode(errors="replace")[:500], field="body")
        return Response(status, answer, {"Content-Type": JSON, **self.headers(request)})

    async def model_ready(self, request: Request) -> Response:
        model, version = request.match_info["model"], request.match_info.get("version", "")
        if await self.triton.model_ready(model, version):
            return Response(200, b"", self.headers(request))
        await self.triton.model_info(model, version)  # raises 404 for an unknown model
        raise ApiError(503, "model_not_ready", f"model {model!r} is not ready", field="model",
                       headers={"Retry-After": "1"})

    # -- inference ---------------------------------------------------------------------------
    async def v2_infer(self, request: Request) -> Response:
        model, version = request.match_info["model"], request.match_info.get("version", "")
        if _media_type(request) not in _V2_TYPES:
            raise ApiError(415, "unsupported_media_type",
                           f"v2 infer takes application/json or the binary extension, not {_media_type(request)}",
                           field="Content-Type")
        body = request.body
        length = request.headers.get(_HEADER_LENGTH_KEY)
        try:
            header_length = int(length) if length else None
        except ValueError:
            raise bad_request(f"{HEADER_LENGTH} must be an integer", HEADER_LENGTH) from None
        if self.forward_to is not None:
            # Passed to Triton as it came, which parses it anyway; the deadline bounds the exchange
            # itself (dispatch sets no timeout block around this path: it costs more than the parse).
            # Only a request Triton refuses is parsed here: it answers 500 to some malformed ones,
            # and the client gets 400 naming the field instead.
            try:
                resp = await self.forward_to.forward(model, version, body, request.headers.get("content-type", ""),
                                                     length, self.deadline(request).at)
            except ApiError as exc:
                if exc.status in (400, 500):
                    parse_v2_request(body, header_length)
                raise
            headers = {"Content-Type": resp.headers.get("content-type", JSON), **self.headers(request, "miss")}
            answered_length = resp.headers.get(_HEADER_LENGTH_KEY)
            if answered_length:
                headers[HEADER_LENGTH] = answered_length
                return Response(200, resp.body, headers)
            return Response(200, json_safe(resp.body), headers)
        if self.pipeline.relays_v2:
            # Both stages called and nothing here needs the tensors: the bytes go through
            # (stages/v2_relay.py), and a malformed body is refused by the pre stage, naming the field.
            # The cache keys on the body's bytes: a request sent again as it was is a hit, the same
            # tensors encoded otherwise (JSON against binary, other spacing) a miss.
            key = (cache_mod.cache_key(model, version, "v2-bytes", (length or "").encode(), body)
                   if self.cache is not None else None)
            hit = await self.cached(request, model, key)
            if hit is not None:
                return hit
            info = await self.triton.model_info(model, version)
            payload, header_len = await self.pipeline.relay_v2(info, version, body, header_length,
                                                               request.state[REQUEST_ID_HEADER], self.deadline(request))
            return await self.v2_answer(request, key, payload, header_len)
        req = parse_v2_request(body, header_length)
        key = self.v2_key(model, version, req) if self.cache is not None else None
        hit = await self.cached(request, model, key)
        if hit is not None:
            return hit
        info = await self.triton.model_info(model, version)
        deadline = self.deadline(request)
        rid = request.state[REQUEST_ID_HEADER]
        params = model_parameters(req.parameters)
        tensors = await self.pipeline.prepare_tensors(info, req.inputs, params, rid, deadline)
        wanted = [o["name"] for o in req.outputs] if req.outputs else None
        result = await self.pipeline.infer(info, version, tensors, params, params, wanted, "v2", rid, deadline)
        payload, header_len = encode_v2_response(model, result.version or version or None, req, result.all_tensors())
        return await self.v2_answer(request, key, payload, header_len)

    async def v2_answer(self, request: Request, key: str | None, payload: bytes, header_len: int | None) -> Response:
        """A computed v2 answer, remembered under `key` when the cache is on."""
        extra = {HEADER_LENGTH: str(header_len)} if header_len is not None else {}
        content_type = "application/octet-stream" if header_len is not None else JSON
        await self.remember(key, payload, content_type, extra)
        return Response(200, payload, {"Content-Type": content_type, **extra, **self.headers(request, "miss")})

    def v2_key(self, model: str, version: str, req: V2Request) -> str:
        names = sorted(req.inputs)
        shape = dumps_request_json({
            "id": req.id, "parameters": req.parameters, "outputs": req.outputs,
            "inputs": [[n, str(req.inputs[n].dtype), list(req.inputs[n].shape)] for n in names],
        }, option=orjson.OPT_SORT_KEYS)
        return cache_mod.cache_key(model, version, "v2", shape, *(tensor_to_bytes(req.inputs[n]) for n in names))

    async def parse_invoke(self, request: Request) -> tuple[str, bytes, Any, dict[str, Any]]:
        """Body of an invoke/stream request: (media type, raw body, inputs, parameters)."""
        media = _media_type(request)
        body = request.body
        # curl's default for -d: the body was meant as JSON (an HTML form is no model payload), so it
        # is read as JSON, never handed to a pre stage as a raw payload it would misread.
        form = media == _FORM
        if media not in ("", JSON) and not media.endswith("+json") and not form:
            params = {k: v for k, v in request.query.items() if k != "version"}
            return media, body, None, params
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if form:
                raise bad_request(f"body is not JSON (Content-Type {_FORM}, curl's default for -d): send a JSON "
                                  "object with Content-Type: application/json", "body") from None
            raise bad_request(f"body is not valid JSON: {exc}", "body") from None
        if not isinstance(doc, dict):
            raise bad_request("body must be a JSON object", "body")
        unknown = sorted(set(doc) - {"inputs", "parameters"})
        if unknown:
            close = difflib.get_close_matches(unknown[0], ("inputs", "parameters"), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else " (an invoke body has inputs and parameters)"
            raise bad_request(f"unknown field {unknown[0]!r}{hint}", unknown[0])
        params = doc.get("parameters") or {}
        if not isinstance(params, dict):
            raise bad_request("parameters must be an object", "parameters")
        if "inputs" not in doc:
            raise bad_request("inputs is required", "inputs")
        if doc["inputs"] is None:  # None is how a body other than JSON travels on (prepare_invoke)
            raise bad_request("inputs must be an object of name -> value, not null", "inputs")
        return JSON, body, doc["inputs"], params

    async def prepare_invoke(self, request: Request, parsed: tuple[str, bytes, Any, dict[str, Any]],
                             deadline: Deadline, streaming: bool) -> tuple[Any, dict[str, Any], dict]:
        media, body, inputs, params = parsed
        model, version = request.match_info["model"], request.query.get("version", "")
        info = await self.triton.model_info(model, version)
        if info.decoupled and not streaming:
            raise bad_request(f"model {model!r} streams its responses: use /v1/models/{model}/stream", "model",
                              code="streaming_model")
        rid = request.state[REQUEST_ID_HEADER]
        if inputs is None:
            length = request.headers.get(_HEADER_LENGTH_KEY)
            if length is not None and not length.isdigit():
                raise bad_request(f"{HEADER_LENGTH} must be an integer", HEADER_LENGTH)
            tensors = await self.pipeline.prepare_raw(info, body, media, params, rid, deadline,
                                                      int(length) if length else None)
        else:
            tensors = await self.pipeline.prepare_json(info, inputs, params, rid, deadline)
        return info, params, tensors

    async def invoke(self, request: Request) -> Response:
        model, version = request.match_info["model"], request.query.get("version", "")
        deadline = self.deadline(request)
        key = None
        parsed = await self.parse_invoke(request)
        if self.cache is not None:
            media, body, inputs, params = parsed
            canonical = (dumps_request_json({"inputs": inputs, "parameters": params}, option=orjson.OPT_SORT_KEYS)
                         if inputs is not None else media.encode() + b"\0" + body)
            key = cache_mod.cache_key(model, version, "invoke", canonical)
            hit = await self.cached(request, model, key)
            if hit is not None:
                return hit
        info, params, tensors = await self.prepare_invoke(request, parsed, deadline, streaming=False)
        rid = request.state[REQUEST_ID_HEADER]
        result = await self.pipeline.infer(info, version, tensors, params, None, None, "invoke", rid, deadline)
        payload, content_type, extra = self.invoke_body(model, result)
        await self.remember(key, payload, content_type, extra)
        return Response(200, payload, {"Content-Type": content_type, **extra, **self.headers(request, "miss")})

    def invoke_body(self, model: str, result: Result) -> tuple[bytes, str, dict[str, str]]:
        if result.body is not None and result.content_type:
            return result.body, result.content_type, result.headers
        doc = {"model": model, "revision": self.revision, "outputs": result.json_outputs(), "text": result.text}
        return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), JSON, {}

    async def stream(self, request: Request) -> StreamResponse:
        """SSE: one `data:` event per model response, then `event: done` (or `event: error`)."""
        version = request.query.get("version", "")
        deadline = self.deadline(request)
        rid = request.state[REQUEST_ID_HEADER]
        response: StreamResponse | None = None
        try:
            async with asyncio.timeout_at(deadline.at):
                parsed = await self.parse_invoke(request)
                info, params, tensors = await self.prepare_invoke(request, parsed, deadline, streaming=True)
                async for result in self.pipeline.stream(info, version, tensors, params, rid, deadline):
                    if response is None:
                        response = await self._open_stream(request)
                    data = orjson.dumps({"outputs": result.json_outputs(), "text": result.text},
                                        option=orjson.OPT_SERIALIZE_NUMPY)
                    await response.write(b"data: " + data + b"\n\n")
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:
            if response is None:
                raise
            if isinstance(exc, ApiError):
                err = exc
            elif isinstance(exc, TimeoutError):
                err = ApiError(504, "deadline_exceeded", "the deadline passed")
            else:  # a bug: the stream's head is out, so the error travels as an event
                log.exception("unexpected error in the stream of %s", request.path)
                err = ApiError(500, "internal_error", f"internal error ({type(exc).__name__})")
            await response.write(b"event: error\ndata: " + err.to_json(rid) + b"\n\n")
            request.state["status"] = err.status
            return response
        if response is None:  # the model answered nothing at all
            response = await self._open_stream(request)
        await response.write(b"event: done\ndata: {}\n\n")
        return response

    async def _open_stream(self, request: Request) -> StreamResponse:
        response = StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache", **self.headers(request, "miss")})
        await response.prepare(request)
        return response


_FIXED_ENDPOINTS = {"/v2": "server", "/v2/health/live": "live", "/v2/health/ready": "ready"}
# Run under a timeout block. The stream handler bounds itself (its headers may already be sent), and
# so does a v2 infer passed through to Triton (Gateway.v2_infer).
_DEADLINE_ENDPOINTS = ("infer", "invoke")
_SPLIT_ENDPOINTS = frozenset(("infer", "invoke", "stream"))  # inference: the only requests a canary gets a share of
_INFERENCE_ENDPOINTS = _SPLIT_ENDPOINTS  # their time is a key's inference seconds


def _endpoint_label(pattern: str) -> str:
    """Metrics label of a route pattern (bounded cardinality: never the raw path)."""
    if not pattern:
        return "other"
    if pattern in _FIXED_ENDPOINTS:
        return _FIXED_ENDPOINTS[pattern]
    for suffix, name in (("/infer", "infer"), ("/invoke", "invoke"), ("/stream", "stream"),
                         ("/ready", "model_ready"), ("/config", "config"), ("/stats", "stats")):
        if pattern.endswith(suffix):
            return name
    return "metadata"


def build_router(gateway: Gateway) -> Router:
    r = Router()
    r.add("POST", "/v2/models/{model}/infer", gateway.v2_infer)
    r.add("POST", "/v2/models/{model}/versions/{version}/infer", gateway.v2_infer)
    r.add("GET", "/v2", gateway.proxy_get)
    r.add("POST", "/v2/repository/index", gateway.repository_index)
    r.add("GET", "/v2/health/live", gateway.live)
    r.add("GET", "/v2/health/ready", gateway.ready)
    for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        r.add("GET", prefix, gateway.model_metadata)
        r.add("GET", prefix + "/ready", gateway.model_ready)
        r.add("GET", prefix + "/config", gateway.model_metadata)
        r.add("GET", prefix + "/stats", gateway.proxy_get)
        r.add("GET", prefix + signature.CORE_SUFFIX, gateway.core_metadata)
        r.add("GET", prefix + signature.CORE_SUFFIX + "/config", gateway.core_metadata)
    r.add("POST", "/v1/models/{model}/invoke", gateway.invoke)
    r.add("POST", "/v1/models/{model}/stream", gateway.stream)
    return r


def build_handler(gateway: Gateway) -> Any:
    """The server's one handler: route, then run the route under the deadline, answer errors as JSON,
    and count and time every request."""
    router = build_router(gateway)
    labels: dict[str, str] = {}
    split = gateway.split
    security = gateway.security if gateway.security.enabled else None
    audit = gateway.audit
    signer = gateway.signer

    async def dispatch(request: Request) -> Response | StreamResponse:
        start = time.perf_counter()
        rid = request.headers.get(_REQUEST_ID_KEY) or new_request_id()
        request.state[REQUEST_ID_HEADER] = rid
        handler, request.match_info, request.route, allowed = router.resolve(request.method, request.path)
        endpoint = labels.get(request.route)
        if endpoint is None:
            endpoint = labels[request.route] = _endpoint_label(request.route)
        model = request.match_info.get("model", "")
        response: Response | StreamResponse
        try:
            if security is not None:  # before routing: an unknown path tells an unauthorised client nothing
                await security.admit(request, endpoint)
            if len(model) > MAX_MODEL_NAME:  # gRPC metadata to Triton would overflow (a 503 or 429 before)
                raise ApiError(400, "invalid_model_name", f"a model name is at most {MAX_MODEL_NAME} characters",
                               field="model")
            if handler is None:
                if allowed:
                    raise ApiError(405, "method_not_allowed", f"{request.method} is not allowed here",
                                   headers={"Allow": ", ".join(allowed)})
                raise ApiError(404, "not_found", f"no such endpoint: {request.path}")
            if split.weight and endpoint in _SPLIT_ENDPOINTS and gateway.canary is not None:
                # The deadline first: a malformed timeout header is this gateway's 400, and takes no share.
                deadline = gateway.deadline(request)
                target = split.route(request.headers)
                if target is not None:
                    forwarded = await gateway.canary.forward(request, target, deadline)
                    if forwarded is not None:
                        return forwarded  # the canary's request: counted in its own gateway's metrics
            if endpoint in _DEADLINE_ENDPOINTS and (endpoint != "infer" or gateway.forward_to is None):
                async with asyncio.timeout_at(gateway.deadline(request).at):
                    response = await handler(request)
            else:
                response = await handler(request)
            status = request.state.get("status", response.status)
        except ApiError as exc:
            response, status = _error_response(exc, request, rid), exc.status
        except TimeoutError:
            exc = ApiError(504, "deadline_exceeded", "the request deadline passed")
            response, status = _error_response(exc, request, rid), 504
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:  # a bug: still a JSON answer with the request id, and a log line
            log.exception("unexpected error in %s", request.path)
            err = ApiError(500, "internal_error", f"internal error ({type(exc).__name__})")
            response, status = _error_response(err, request, rid), 500
        if signer is not None and isinstance(response, Response) and endpoint not in OPEN_ENDPOINTS:
            response.headers[SIGNATURE_HEADER] = signer.sign(rid, response.body)  # errors too: all but streams
        elapsed = time.perf_counter() - start
        if audit is not None and endpoint not in OPEN_ENDPOINTS:  # before the model label is blanked below
            audit.record(request, endpoint=endpoint, model=model, status=status, seconds=elapsed,
                         key_id=request.state.get(KEY_ID_STATE), client=str(gateway.security.client(request) or "")
                         or None, cache=response.headers.get(CACHE_HEADER))
        # Never a label value per made-up model name (a 400 or 401 names one as easily as a 404).
        model = "" if status == 404 else gateway.model_label(model)
        if endpoint != "other" or status != 404:
            gateway.metrics.observe(model, endpoint, status, elapsed)
        if security is not None:
            sent = len(response.body) if isinstance(response, Response) else response.sent
            security.count(request, endpoint, status, sent, elapsed if endpoint in _INFERENCE_ENDPOINTS else 0.0)
        return response

    return dispatch


def error_body(status: int, code: str, message: str, target: str, headers: dict[str, str]) -> tuple[
        bytes, dict[str, str]]:
    """Answers the server gives before a handler runs (malformed request, body too large)."""
    rid = headers.get(_REQUEST_ID_KEY) or new_request_id()
    err = ApiError(status, code, message, field="body" if status == 413 else None)
    return err.to_json(rid, v2=target.startswith("/v2")), {REQUEST_ID_HEADER: rid}


def _error_response(exc: ApiError, request: Request, rid: str) -> Response:
    v2 = request.path.startswith("/v2")
    headers = {"Content-Type": JSON, REQUEST_ID_HEADER: rid, **exc.headers}
    return Response(exc.status, exc.to_json(rid, v2=v2), headers)


def redis_url_from_env() -> str | None:
    return os.environ.get(REDIS_URL_ENV) or None
