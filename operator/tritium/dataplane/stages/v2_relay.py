"""A v2 infer request relayed through the stages as bytes: the gateway does not decode the tensors.

On the usual path the gateway parses the client's v2 body into tensors, packs them for the pre
stage, unpacks the stage's answer, encodes Triton's request, decodes Triton's answer, packs it
for the post stage, unpacks that answer and encodes the client's: twelve passes over the tensors
per request, in a process whose CPU goes mostly to the Python interpreter, on cold caches
(docs/benchmarks.md, "Where the called-stage path's CPU goes, on the CPU"). Relayed, the pre
stage reads the client's body and writes Triton's request, the post stage reads Triton's answer
and writes the client's, and the gateway only moves bytes between them: four passes, none in the
gateway.

The two modes here (`v2-request` for pre, `v2-answer` for post) run the same conversions and
scripts as the tensor modes, so a script sees the same values either way (docs/stages.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tritium.dataplane.convert import values_to_tensors
from tritium.dataplane.errors import bad_request
from tritium.dataplane.tensors import (
    V2Request,
    encode_v2_request,
    encode_v2_response,
    model_parameters,
    parse_v2_request,
    parse_v2_response,
)

if TYPE_CHECKING:
    from tritium.dataplane.stages.server import StageProcessor

REQUEST_MODE = "v2-request"
ANSWER_MODE = "v2-answer"


def _header_length(header: dict[str, Any]) -> int | None:
    """The relayed body's JSON header length (None: the whole body is JSON)."""
    length = header.get("header_length")
    return length if isinstance(length, int) else None


async def relay_request(processor: StageProcessor, header: dict[str, Any], raw: bytes | None
                        ) -> tuple[dict[str, Any], dict[str, np.ndarray], bytes]:
    """The client's v2 body -> Triton's v2 request body (binary tensors, every output asked for).

    The answer's header carries what the post stage needs to answer as the client asked: the
    request's id, parameters and outputs list, and the parameters the scripts were given.
    """
    if processor.stage != "pre":
        raise bad_request(f"the {processor.stage} stage does not take {REQUEST_MODE} messages", "mode")
    request = parse_v2_request(raw or b"", _header_length(header))
    params = model_parameters(request.parameters)
    tensors = await processor.pre({"mode": "tensors", "model": header.get("model") or {}},
                                  request.inputs, None, params)
    # Parameters nested deeper than orjson writes fail here: StageService answers that as the 400.
    body, triton_length = encode_v2_request(tensors, None, str(header.get("request_id") or ""), params)
    answer = {
        "header_length": triton_length,
        "parameters": params,
        "request": {"id": request.id, "parameters": request.parameters, "outputs": request.outputs},
    }
    return answer, {}, body


async def relay_answer(processor: StageProcessor, header: dict[str, Any], raw: bytes | None
                       ) -> tuple[dict[str, Any], dict[str, np.ndarray], bytes]:
    """Triton's v2 answer body -> the client's v2 answer body, after the post script."""
    if processor.stage != "post":
        raise bad_request(f"the {processor.stage} stage does not take {ANSWER_MODE} messages", "mode")
    triton_head, outputs = parse_v2_response(raw or b"", _header_length(header))
    params = header.get("parameters") or {}
    head, tensors, _ = await processor.post({"mode": "v2"}, outputs, params)
    asked = header.get("request") or {}
    request = V2Request(id=asked.get("id"), inputs={}, parameters=asked.get("parameters") or {},
                        outputs=asked.get("outputs"))
    version = str(triton_head.get("model_version") or header.get("version") or "") or None
    answered = dict(tensors)
    answered.update(values_to_tensors(head.get("values") or {}))
    body, answer_length = encode_v2_response(str(header.get("model_name") or ""), version, request, answered)
    return {"header_length": answer_length}, {}, body
