"""Built-in postprocessing: select/rename outputs, top-k, and the response format (JSON, XML, binary)."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from tritium.api.spec import OutputFilter, PostTopK
from tritium.dataplane.errors import ApiError
from tritium.dataplane.tensors import encode_v2_response, tensor_to_json, v2_datatype


def top_k(outputs: dict[str, Any], spec: PostTopK) -> dict[str, Any]:
    """Replace one output by its k largest values (last axis) and add `<name>_indices`."""
    if spec.output not in outputs:
        raise ApiError(500, "postprocess_error", f"topK output {spec.output!r} is not among the model's outputs",
                       field="postprocess.builtin.topK.output")
    arr = np.asarray(outputs[spec.output])
    if arr.ndim == 0:
        arr = arr.reshape(1)
    k = min(spec.k, arr.shape[-1])
    idx = np.argsort(-arr, axis=-1, kind="stable")[..., :k]
    out = dict(outputs)
    out[spec.output] = np.take_along_axis(arr, idx, axis=-1)
    out[spec.output + "_indices"] = idx.astype(np.int64)
    return out


def apply_filter(outputs: dict[str, Any], spec: OutputFilter | None) -> dict[str, Any]:
    """spec.postprocess.filter: keep `include` (all when unset), then rename."""
    if spec is None:
        return outputs
    if spec.include is not None:
        outputs = {k: v for k, v in outputs.items() if k in spec.include}
    if spec.rename:
        outputs = {spec.rename.get(k, k): v for k, v in outputs.items()}
    return outputs


def to_xml(outputs: dict[str, Any], text: str | None) -> bytes:
    """<response><output name= datatype= shape=>values</output>...<text>..</text></response>."""
    parts = ["<?xml version=\"1.0\" encoding=\"utf-8\"?>", "<response>"]
    for name, value in outputs.items():
        if isinstance(value, np.ndarray):
            flat = tensor_to_json(value.reshape(-1)) if value.ndim else [tensor_to_json(value)]
            attrs = f" datatype={quoteattr(v2_datatype(value))} shape={quoteattr(','.join(map(str, value.shape)))}"
        else:
            flat = np.asarray(value, dtype=object).reshape(-1).tolist()
            attrs = ""
        body = " ".join(escape(str(v)) for v in flat)
        parts.append(f"<output name={quoteattr(name)}{attrs}>{body}</output>")
    if text is not None:
        parts.append(f"<text>{escape(text)}</text>")
    parts.append("</response>")
    return "".join(parts).encode()


def to_binary(model: str, outputs: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """All outputs as one KServe v2 binary-extension response body."""
    from tritium.dataplane.convert import values_to_tensors
    from tritium.dataplane.tensors import HEADER_LENGTH, V2Request

    tensors = {k: v for k, v in outputs.items() if isinstance(v, np.ndarray)}
    tensors.update(values_to_tensors({k: v for k, v in outputs.items() if not isinstance(v, np.ndarray)}))
    req = V2Request(id=None, inputs={}, parameters={"binary_data_output": True})
    body, header_length = encode_v2_response(model, None, req, tensors)
    return body, ({HEADER_LENGTH: str(header_length)} if header_length is not None else {})
