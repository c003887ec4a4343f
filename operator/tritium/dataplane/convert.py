"""JSON values <-> Triton tensors, typed by the model's own metadata.

The invoke API takes plain JSON (`{"inputs": {"INPUT0": [1, 2, 3]}}`): the datatype and the
batch dimension come from the model, so SDK users never spell out v2 tensor descriptions.
Used by the built-in pre stage and by the gateway itself when no pre stage is configured.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from tritium.dataplane.errors import bad_request
from tritium.dataplane.tensors import numpy_dtype, tensor_from_json, tensor_to_json


def _b64(value: dict[str, Any], field: str) -> bytes:
    data = value.get("b64")
    if not isinstance(data, str) or len(value) != 1:
        raise bad_request('an object value must be {"b64": "<base64 text>"}', field)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("not valid base64", field) from None


def input_from_json(name: str, value: Any, datatype: str, shape: list[int] | tuple[int, ...],
                    field: str) -> np.ndarray:
    """One JSON value -> a tensor of the model's datatype, with leading 1-dims up to the model's rank."""
    if isinstance(value, dict):
        raw = _b64(value, field)
        if datatype == "BYTES":
            arr = np.empty(1, dtype=np.object_)
            arr[0] = raw
        else:
            dtype = np.dtype(numpy_dtype(datatype, field)).newbyteorder("<")
            if len(raw) % dtype.itemsize:
                raise bad_request(f"{len(raw)} bytes is not a whole number of {datatype} values", field)
            arr = np.frombuffer(raw, dtype=dtype)
    else:
        arr = tensor_from_json(value, datatype, None, field)
    rank = len(shape)
    if rank and arr.ndim < rank:
        arr = arr.reshape((1,) * (rank - arr.ndim) + arr.shape)
    if rank and arr.ndim != rank:
        raise bad_request(f"has {arr.ndim} dimensions, the model expects {rank}", field)
    for i, (got, want) in enumerate(zip(arr.shape, shape, strict=True)):
        if want >= 0 and got != want:
            raise bad_request(f"dimension {i} is {got}, the model expects {want}", field)
    return arr


def inputs_from_json(values: Any, model: dict[str, Any]) -> dict[str, np.ndarray]:
    """Invoke inputs ({name: JSON value}) -> tensors, using the model metadata (ModelInfo.wire())."""
    if not isinstance(values, dict) or not values:
        raise bad_request("inputs must be a non-empty object of name -> value", "inputs")
    specs: dict[str, Any] = model.get("inputs", {})
    out: dict[str, np.ndarray] = {}
    for name, value in values.items():
        field = f"inputs.{name}"
        if name not in specs:
            known = ", ".join(sorted(specs)) or "none"
            raise bad_request(f"unknown input {name!r} (the model takes: {known})", field)
        datatype, shape = specs[name]
        out[name] = input_from_json(name, value, datatype, shape, field)
    return out


def outputs_to_json(outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    return {name: tensor_to_json(arr) for name, arr in outputs.items()}


def text_of(outputs: dict[str, np.ndarray]) -> str | None:
    """The response text when the model answers with exactly one single-element BYTES output."""
    texts = [arr for arr in outputs.values() if isinstance(arr, np.ndarray) and arr.dtype.kind in "OSU"]
    if len(texts) != 1 or texts[0].size != 1:
        return None
    item = texts[0].reshape(-1)[0]
    if isinstance(item, str):
        return item
    try:
        return bytes(item).decode()
    except (UnicodeDecodeError, TypeError):
        return None


def as_array(value: Any) -> np.ndarray:
    """A JSON-able value -> an array; text becomes an object array of bytes (Triton's BYTES)."""
    arr = np.asarray(value)
    if arr.dtype.kind in "SU":
        arr = arr.astype(np.object_)
    if arr.dtype.kind == "O":
        flat = np.empty(arr.size, dtype=np.object_)
        flat[:] = [x.encode() if isinstance(x, str) else x for x in arr.reshape(-1)]
        arr = flat.reshape(arr.shape)
    return arr


def values_to_tensors(values: dict[str, Any]) -> dict[str, np.ndarray]:
    """JSON-able values a post stage returned -> tensors (for v2 responses)."""
    return {name: as_array(value) for name, value in values.items()}
