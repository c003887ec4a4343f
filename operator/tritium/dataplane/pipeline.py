"""pre -> Triton -> post for one request, independent of the HTTP API that carried it.

The gateway's handlers parse their API (v2 infer, invoke, stream) into tensors or JSON values
and call this; stages are skipped when the spec has none, in which case the same built-in JSON
conversions run in the gateway process. A stage is also skipped for a request it would hand
back unchanged (see `pre_passes_tensors` and `post_passes_modes`): each hop costs two messages
between processes, which on a small model is most of the gateway's own cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tritium.api.spec import PostprocessSpec, PreprocessSpec
from tritium.dataplane.convert import inputs_from_json, outputs_to_json, text_of, values_to_tensors
from tritium.dataplane.errors import ApiError
from tritium.dataplane.http.stage_client import StageClient
from tritium.dataplane.stages.v2_relay import ANSWER_MODE as V2_ANSWER_MODE
from tritium.dataplane.stages.v2_relay import REQUEST_MODE as V2_REQUEST_MODE
from tritium.dataplane.tensors import HEADER_LENGTH
from tritium.dataplane.triton import ModelInfo, Triton, TritonHttp

_HEADER_LENGTH_KEY = HEADER_LENGTH.lower()  # response header names arrive lower-cased


@dataclass
class Deadline:
    """Absolute deadline of a request (loop time), handed down as remaining seconds."""

    at: float

    def remaining(self) -> float:
        left = self.at - asyncio.get_running_loop().time()
        if left <= 0:
            raise ApiError(504, "deadline_exceeded", "the request deadline passed")
        return left


@dataclass
class Result:
    """What the pipeline produced: tensors, JSON values, text, or a body the post stage rendered."""

    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    body: bytes | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    version: str = ""

    def json_outputs(self) -> dict[str, Any]:
        out = outputs_to_json(self.tensors)
        out.update(self.values)
        return out

    def all_tensors(self) -> dict[str, np.ndarray]:
        out = dict(self.tensors)
        out.update(values_to_tensors(self.values))
        return out


MODES = ("v2", "invoke", "stream")


def pre_passes_tensors(section: PreprocessSpec | None) -> bool:
    """Whether the pre stage returns model tensors (a v2 request) unchanged: no script, no schema.

    Its built-in formats only decode payloads other than tensors (JSON values, XML, binary).
    """
    return section is not None and section.script is None and not section.input_schema


def post_passes_modes(section: PostprocessSpec | None) -> frozenset[str]:
    """The request modes for which the post stage's answer equals the gateway's own (no hop needed).

    No script, no top-k, no filter: it returns the outputs as they are, with the same text the
    gateway derives; its xml and binary formats apply to invoke answers only.
    """
    if section is None or section.script is not None or section.filter is not None:
        return frozenset()
    builtin = section.builtin
    if builtin is not None and builtin.top_k is not None:
        return frozenset()
    if builtin is not None and builtin.format != "json":
        return frozenset({"v2", "stream"})
    return frozenset(MODES)


class Pipeline:
    def __init__(self, triton: Triton, pre: StageClient | None, post: StageClient | None,
                 unary: Triton | TritonHttp | None = None, *, pre_skips_tensors: bool = False,
                 post_skips: frozenset[str] = frozenset()) -> None:
        self.triton = triton
        self.unary = unary or triton  # who answers unary inference (HTTP by default, see TritonHttp)
        self.pre = pre
        self.pre_tensors = None if pre_skips_tensors else pre  # who prepares v2 tensors
        self.post_by_mode = {mode: None if mode in post_skips else post for mode in MODES}
        # spec.security.redactResponses (security/redact_response.py): applied to every Result.
        self.redact: Callable[[Result], Result] | None = None
        # Whether a v2 request can go through as bytes (stages/v2_relay.py): both stages take
        # it, and Triton is spoken to over HTTP, where the stages' bodies are Triton's own format.
        self._relay_v2 = (self.pre_tensors is not None and self.post_by_mode["v2"] is not None
                          and isinstance(self.unary, TritonHttp))

    @property
    def relays_v2(self) -> bool:
        """Redaction reads the answer's tensors in this process, so it keeps the decoded path."""
        return self._relay_v2 and self.redact is None

    # -- pre ---------------------------------------------------------------------------------
    async def prepare_json(self, info: ModelInfo, inputs: Any, parameters: dict[str, Any], request_id: str,
                           deadline: Deadline) -> dict[str, np.ndarray]:
        """Invoke JSON inputs -> model tensors (through the pre stage when there is one)."""
        if self.pre is None:
            return inputs_from_json(inputs, info.wire())
        header = {"mode": "json", "model": info.wire(), "inputs": inputs, "parameters": parameters}
        _, tensors, _ = await self.pre.call(header, request_id=request_id, timeout=deadline.remaining())
        return tensors

    async def prepare_raw(self, info: ModelInfo, body: bytes, content_type: str, parameters: dict[str, Any],
                          request_id: str, deadline: Deadline, header_length: int | None = None
                          ) -> dict[str, np.ndarray]:
        """A non-JSON payload (XML, raw bytes, base64 text) -> tensors: only a pre stage knows how."""
        if self.pre is None:
            raise ApiError(415, "unsupported_media_type",
                           f"content type {content_type or '(none)'} needs a preprocess stage; send application/json",
                           field="Content-Type")
        header = {"mode": "raw", "model": info.wire(), "content_type": content_type, "parameters": parameters,
                  "header_length": header_length}
        _, tensors, _ = await self.pre.call(header, raw=body, request_id=request_id, timeout=deadline.remaining())
        return tensors

    async def prepare_tensors(self, info: ModelInfo, tensors: dict[str, np.ndarray], parameters: dict[str, Any],
                              request_id: str, deadline: Deadline) -> dict[str, np.ndarray]:
        if self.pre_tensors is None:
            return tensors
        header = {"mode": "tensors", "model": info.wire(), "parameters": parameters}
        _, out, _ = await self.pre_tensors.call(header, tensors, request_id=request_id, timeout=deadline.remaining())
        return out

    # -- post --------------------------------------------------------------------------------
    async def finish(self, outputs: dict[str, np.ndarray], parameters: dict[str, Any], mode: str, request_id: str,
                     deadline: Deadline) -> Result:
        post = self.post_by_mode[mode]
        if post is None:
            result = Result(tensors=outputs, text=text_of(outputs) if mode != "v2" else None)
        else:
            header = {"mode": mode, "parameters": parameters}
            head, tensors, raw = await post.call(header, outputs, request_id=request_id,
                                                 timeout=deadline.remaining())
            result = Result(
                tensors=tensors, values=head.get("values") or {}, text=head.get("text"),
                body=raw if head.get("content_type") else None, content_type=head.get("content_type"),
                headers=head.get("headers") or {},
            )
        return result if self.redact is None else self.redact(result)

    # -- whole requests ----------------------------------------------------------------------
    async def relay_v2(self, info: ModelInfo, version: str, body: bytes, header_length: int | None,
                       request_id: str, deadline: Deadline) -> tuple[bytes, int | None]:
        """A v2 body -> pre -> Triton -> post -> the answer's body, as bytes (see `relays_v2`)."""
        assert self.pre_tensors is not None and isinstance(self.unary, TritonHttp)
        post = self.post_by_mode["v2"]
        assert post is not None
        header = {"mode": V2_REQUEST_MODE, "model": info.wire(), "request_id": request_id,
                  "header_length": header_length}
        asked, _, triton_body = await self.pre_tensors.call(header, raw=body, request_id=request_id,
                                                            timeout=deadline.remaining())
        resp = await self.unary.forward(info.name, version, triton_body or b"", "application/octet-stream",
                                        str(asked["header_length"]))
        length = resp.headers.get(_HEADER_LENGTH_KEY)
        header = {"mode": V2_ANSWER_MODE, "model_name": info.name, "version": version,
                  "header_length": int(length) if length else None,
                  "parameters": asked.get("parameters") or {}, "request": asked.get("request") or {}}
        answer, _, payload = await post.call(header, raw=resp.body, request_id=request_id,
                                             timeout=deadline.remaining())
        return payload or b"", answer.get("header_length")

    async def infer(self, info: ModelInfo, version: str, tensors: dict[str, np.ndarray], parameters: dict[str, Any],
                    triton_parameters: dict[str, Any] | None, outputs: list[str] | None, mode: str,
                    request_id: str, deadline: Deadline) -> Result:
        """Model tensors (already pre-processed) -> Triton -> post."""
        out, answered = await self.unary.infer(
            info.name, version, tensors, outputs=outputs if self.post_by_mode[mode] is None else None,
            request_id=request_id, timeout=deadline.remaining(), parameters=triton_parameters,
        )
        result = await self.finish(out, parameters, mode, request_id, deadline)
        result.version = answered
        return result

    async def stream(self, info: ModelInfo, version: str, tensors: dict[str, np.ndarray],
                     parameters: dict[str, Any], request_id: str, deadline: Deadline) -> AsyncIterator[Result]:
        async for out in self.triton.stream(info.name, version, tensors, request_id=request_id,
                                            timeout=deadline.remaining()):
            yield await self.finish(out, parameters, "stream", request_id, deadline)
