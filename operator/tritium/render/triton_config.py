"""Triton's model configuration (config.pbtxt, protobuf text format) from the ModelSpec.

Only what the spec decides is written; inputs/outputs are left to Triton's auto-complete unless
the spec lists them, so a model file that describes itself needs no duplication here.
"""

from __future__ import annotations

import json

from tritium.api.spec import ModelSpec

# Model format -> (field, value) selecting the Triton backend or platform.
BACKENDS: dict[str, tuple[str, str]] = {
    "python": ("backend", "python"),
    "onnx": ("backend", "onnxruntime"),
    "pytorch": ("backend", "pytorch"),
    "tensorflow": ("platform", "tensorflow_savedmodel"),
    "tensorrt": ("backend", "tensorrt"),
    "openvino": ("backend", "openvino"),
    "ensemble": ("platform", "ensemble"),
}


# API tensor type -> Triton DataType enum name (Triton calls BYTES tensors TYPE_STRING).
DATA_TYPES: dict[str, str] = {"BYTES": "TYPE_STRING"}


def _q(text: str) -> str:
    """A protobuf text-format string literal.

    JSON escaping is a subset of text format's, except ``\\uXXXX``: protobuf parsers disagree on
    it (Python's reads it as a single byte), so non-ASCII text is written as plain UTF-8.
    """
    return json.dumps(text, ensure_ascii=False)


def _data_type(name: str) -> str:
    return DATA_TYPES.get(name, f"TYPE_{name}")


def _ints(values: list[int]) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def _tensors(field: str, tensors: list) -> list[str]:
    lines = [f"{field} ["]
    for i, t in enumerate(tensors):
        sep = "," if i < len(tensors) - 1 else ""
        lines.append(f"  {{ name: {_q(t.name)} data_type: {_data_type(t.data_type)} dims: {_ints(t.dims)} }}{sep}")
    lines.append("]")
    return lines


def render_config(model: ModelSpec) -> str:
    field, value = BACKENDS[model.format]
    lines = [f"name: {_q(model.name)}", f"{field}: {_q(value)}", f"max_batch_size: {model.max_batch_size}"]
    if model.version is not None:
        lines.append(f"version_policy: {{ specific: {{ versions: [ {model.version} ] }} }}")
    if model.inputs:
        lines += _tensors("input", model.inputs)
    if model.outputs:
        lines += _tensors("output", model.outputs)
    if model.dynamic_batching is not None:
        db = model.dynamic_batching
        lines.append("dynamic_batching {")
        if db.preferred_batch_sizes:
            lines.append(f"  preferred_batch_size: {_ints(db.preferred_batch_sizes)}")
        lines.append(f"  max_queue_delay_microseconds: {db.max_queue_delay_microseconds}")
        lines.append("}")
    if model.instance_groups:
        lines.append("instance_group [")
        for i, g in enumerate(model.instance_groups):
            gpus = f" gpus: {_ints(g.gpus)}" if g.gpus else ""
            sep = "," if i < len(model.instance_groups) - 1 else ""
            lines.append(f"  {{ count: {g.count} kind: KIND_{g.kind}{gpus} }}{sep}")
        lines.append("]")
    if model.response_cache.enabled:
        lines.append("response_cache { enable: true }")
    for key in sorted(model.parameters or {}):
        lines.append(f"parameters {{ key: {_q(key)} value: {{ string_value: {_q(model.parameters[key])} }} }}")
    return "\n".join(lines) + "\n"
