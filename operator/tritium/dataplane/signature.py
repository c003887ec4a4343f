"""A pipeline's signature: the tensors a service with stages takes and returns.

With stages, what a client sends is what the pre stage takes, and what it gets is what the post
stage returns; the core model's own tensors are an implementation detail between them. A v2
client (tritonclient, perf_analyzer) learns a model's tensors from `GET /v2/models/NAME` and
`/config`, so with stages those describe the pipeline, built here from:

- a pre *script*: its module-level ``INPUTS`` (undeclared: the core's, as a pass-through has);
- a pre built-in, or no pre stage: the core model's inputs (v2 tensors pass through unchanged);
- a post *script*: its module-level ``OUTPUTS`` (undeclared: the core's), then the output filter;
- a post built-in, or no post stage: the core model's outputs, reshaped by topK, then the filter.

The core model's own metadata and config stay at ``/v2/models/NAME/core`` and ``.../core/config``.
Pure functions only: the gateway and the stages do the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tritium.api.spec import OutputFilter, PostprocessSpec, PreprocessSpec
from tritium.dataplane.config import ConfigError
from tritium.dataplane.convert import as_array, input_from_json
from tritium.dataplane.errors import ApiError, bad_request
from tritium.dataplane.tensors import numpy_dtype, tensor_from_json, v2_datatype

DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BF16", "BYTES")
PLATFORM = "tritium_pipeline"
CORE_SUFFIX = "/core"  # /v2/models/NAME/core: the core model's own metadata (and /core/config)


@dataclass(frozen=True)
class TensorSpec:
    """One tensor as KServe v2 metadata describes it; -1 in `shape` is any size."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def config(self, batched: bool) -> dict[str, Any]:
        """The model-config form: TYPE_ names, and dims without the batch dimension when batched."""
        data_type = "TYPE_STRING" if self.datatype == "BYTES" else f"TYPE_{self.datatype}"
        return {"name": self.name, "data_type": data_type, "dims": list(self.shape[1:] if batched else self.shape)}


@dataclass(frozen=True)
class Signature:
    """What the pipeline takes and returns."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int  # the core's when the inputs are the core's, else 0 (declared shapes are whole)


def declared(value: Any, what: str, where: str) -> tuple[TensorSpec, ...]:
    """A script's INPUTS or OUTPUTS -> tensor specs; a mistake is a ConfigError naming the entry."""
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(f"{where}: {what} must be a non-empty list of {{name, datatype, shape}}")
    out: list[TensorSpec] = []
    for i, entry in enumerate(value):
        at = f"{where}: {what}[{i}]"
        if not isinstance(entry, dict) or set(entry) - {"name", "datatype", "shape"}:
            raise ConfigError(f"{at} must be a dict with name, datatype and shape only")
        name, datatype, shape = entry.get("name"), entry.get("datatype"), entry.get("shape")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{at}.name must be a non-empty string")
        if datatype not in DATATYPES:
            raise ConfigError(f"{at}.datatype must be one of {', '.join(DATATYPES)}, got {datatype!r}")
        if (not isinstance(shape, list | tuple)
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape)):
            raise ConfigError(f"{at}.shape must be a list of sizes (-1: any), got {shape!r}")
        if any(t.name == name for t in out):
            raise ConfigError(f"{at}.name {name!r} appears twice")
        out.append(TensorSpec(name, datatype, tuple(shape)))
    return tuple(out)


def _specs(tensors: dict[str, tuple[str, tuple[int, ...]]]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(name, dt, tuple(shape)) for name, (dt, shape) in tensors.items())


def filtered(outputs: tuple[TensorSpec, ...], spec: OutputFilter | None) -> tuple[TensorSpec, ...]:
    if spec is None:
        return outputs
    kept = [t for t in outputs if spec.include is None or t.name in spec.include]
    return tuple(TensorSpec(spec.rename.get(t.name, t.name), t.datatype, t.shape) if spec.rename else t
                 for t in kept)


def _builtin_outputs(core: tuple[TensorSpec, ...], section: PostprocessSpec) -> tuple[TensorSpec, ...]:
    builtin = section.builtin
    if builtin is None or builtin.top_k is None:
        return core
    k, name = builtin.top_k.k, builtin.top_k.output
    out: list[TensorSpec] = []
    for t in core:
        if t.name != name:
            out.append(t)
            continue
        shape = t.shape or (1,)
        last = shape[-1]
        shape = (*shape[:-1], min(k, last) if last >= 0 else -1)
        out += [TensorSpec(name, t.datatype, shape), TensorSpec(f"{name}_indices", "INT64", shape)]
    return tuple(out)


def pipeline_signature(core_inputs: dict[str, tuple[str, tuple[int, ...]]],
                       core_outputs: dict[str, tuple[str, tuple[int, ...]]], core_max_batch_size: int,
                       pre: PreprocessSpec | None, post: PostprocessSpec | None,
                       pre_declared: tuple[TensorSpec, ...] | None,
                       post_declared: tuple[TensorSpec, ...] | None) -> Signature:
    """The signature from the core model's metadata, the spec's stages and what their scripts declare.

    A script that declares nothing is taken to pass the core's tensors through: the best guess, and
    what pass-through scripts do (the stage warns at start that it should declare them).
    """
    core_in, core_out = _specs(core_inputs), _specs(core_outputs)
    pre_declares = pre is not None and pre.script is not None and pre_declared is not None
    inputs = pre_declared if pre_declares and pre_declared is not None else core_in
    if post is None:
        outputs = core_out
    elif post.script is not None:
        outputs = filtered(post_declared if post_declared is not None else core_out, post.filter)
    else:
        outputs = filtered(_builtin_outputs(core_out, post), post.filter)
    return Signature(inputs, outputs, 0 if pre_declares else core_max_batch_size)


def metadata(core: dict[str, Any], signature: Signature) -> dict[str, Any]:
    """Triton's metadata document of the core model, with the pipeline's tensors."""
    return {
        "name": core.get("name"),
        "versions": core.get("versions", []),
        "platform": PLATFORM,
        "inputs": [t.metadata() for t in signature.inputs],
        "outputs": [t.metadata() for t in signature.outputs],
    }


def config(core: dict[str, Any], signature: Signature) -> dict[str, Any]:
    """Triton's model config of the core model, with the pipeline's tensors and batch size."""
    batched = signature.max_batch_size > 0
    doc = dict(core)
    doc.update(
        platform=PLATFORM,
        max_batch_size=signature.max_batch_size,
        input=[t.config(batched) for t in signature.inputs],
        output=[t.config(batched) for t in signature.outputs],
    )
    if not batched:
        doc.pop("dynamic_batching", None)  # whole tensors go in: the pipeline batches nothing itself
    return doc


# -- values a script sees ---------------------------------------------------------------------
def _text(item: Any) -> Any:
    if isinstance(item, bytes | bytearray | memoryview | np.bytes_):
        raw = bytes(item)
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return raw
    return item


def script_value(arr: np.ndarray) -> Any:
    """A v2 tensor as a script gets it: BYTES -> (nested lists of) str when UTF-8, else bytes;
    numbers stay numpy arrays. The same values an invoke request's JSON gives."""
    if arr.dtype.kind not in "OSU":
        return arr
    if arr.ndim == 0:
        return _text(arr.item())
    return np.frompyfunc(_text, 1, 1)(arr).tolist()


def _json_value(name: str, value: Any, spec: TensorSpec) -> Any:
    """An invoke JSON input declared in INPUTS -> the value its v2 form would give."""
    field = f"inputs.{name}"
    if spec.datatype == "BYTES":
        return _bytes_value(value, field)
    arr = tensor_from_json(value, spec.datatype, None, field)
    _check_shape(arr.shape, spec, field)
    return arr


def _bytes_value(value: Any, field: str) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return _text(input_from_json("", value, "BYTES", (1,), field)[0])
    if isinstance(value, list):
        return [_bytes_value(v, f"{field}[{i}]") for i, v in enumerate(value)]
    raise bad_request(f"must be text (a string or a list of strings), got {type(value).__name__}", field)


def _check_shape(shape: tuple[int, ...], spec: TensorSpec, field: str) -> None:
    if len(shape) != len(spec.shape) or any(w >= 0 and g != w for g, w in zip(shape, spec.shape, strict=True)):
        raise bad_request(f"has shape {list(shape)}, the pipeline takes {list(spec.shape)}", field)


def _takes(inputs: tuple[TensorSpec, ...]) -> str:
    return ", ".join(f"{t.name} ({t.datatype} {list(t.shape)})" for t in inputs)


def check_names(given: list[str], inputs: tuple[TensorSpec, ...]) -> None:
    """Every declared input present, none unknown: a 400 naming the input and what the pipeline takes."""
    names = {t.name for t in inputs}
    for name in given:
        if name not in names:
            raise bad_request(f"unknown input {name!r}: the pipeline takes {_takes(inputs)}", f"inputs.{name}")
    for t in inputs:
        if t.name not in given:
            raise bad_request(f"input {t.name!r} is required: the pipeline takes {_takes(inputs)}",
                              f"inputs.{t.name}")


def tensors_for_script(tensors: dict[str, np.ndarray], inputs: tuple[TensorSpec, ...] | None) -> dict[str, Any]:
    """v2 tensors -> script values, checked against the declared inputs (datatype, rank, sizes)."""
    if inputs is not None:
        check_names(list(tensors), inputs)
        for spec in inputs:
            arr, field = tensors[spec.name], f"inputs.{spec.name}"
            if v2_datatype(arr) != spec.datatype:
                raise bad_request(f"is {v2_datatype(arr)}, the pipeline takes {spec.datatype}", field)
            _check_shape(arr.shape, spec, field)
    return {name: script_value(arr) for name, arr in tensors.items()}


def json_for_script(values: dict[str, Any], inputs: tuple[TensorSpec, ...] | None) -> dict[str, Any]:
    """Invoke JSON inputs -> script values: declared inputs typed as their v2 form would be."""
    if inputs is None:
        return values
    check_names(list(values), inputs)
    return {t.name: _json_value(t.name, values[t.name], t) for t in inputs}


def raw_for_script(body: bytes, content_type: str, inputs: tuple[TensorSpec, ...] | None) -> dict[str, Any]:
    """A body that is not JSON (an image, a document) -> script values: ``{"body": bytes}``, or, when
    the script declares one BYTES input, that input: str when UTF-8, else bytes, as v2 would carry it."""
    if inputs is None:
        return {"body": body}
    if len(inputs) == 1 and inputs[0].datatype == "BYTES":
        return {inputs[0].name: _text(body)}
    raise ApiError(415, "unsupported_media_type",
                   f"content type {content_type or '(none)'}: the pipeline takes {_takes(inputs)}; send them as "
                   "JSON (application/json) or KServe v2", field="Content-Type")


def outputs_from_script(result: dict[str, Any], outputs: tuple[TensorSpec, ...]) -> dict[str, np.ndarray]:
    """A post script's result -> the declared outputs as typed tensors (a v2 answer)."""
    out: dict[str, np.ndarray] = {}
    for spec in outputs:
        if spec.name not in result:
            raise ApiError(500, "script_error", f"post script returned no {spec.name!r} (declared in OUTPUTS)")
        arr = as_array(result[spec.name])
        if spec.datatype != "BYTES":
            try:
                arr = np.asarray(arr, dtype=numpy_dtype(spec.datatype))
            except (TypeError, ValueError):
                raise ApiError(500, "script_error", f"post script output {spec.name!r} is not {spec.datatype}"
                               ) from None
        out[spec.name] = arr
    return out
