"""Tensor codecs: KServe v2 JSON and binary-extension requests/responses, and the stage wire format.

Tensors cross process boundaries (client -> gateway -> stages -> Triton) as raw little-endian
buffers; JSON number lists are only produced at the edge for clients that ask for JSON, because
encoding and parsing them costs more than the model itself for small models.
"""

from __future__ import annotations

import math
import struct
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from tritium.dataplane.errors import ApiError, bad_request

HEADER_LENGTH = "Inference-Header-Content-Length"

# v2 datatype <-> numpy dtype. BYTES tensors are numpy object arrays of bytes.
V2_TO_NUMPY: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
    "BYTES": np.object_,
}
_NUMPY_TO_V2 = {np.dtype(v).str: k for k, v in V2_TO_NUMPY.items() if k != "BYTES"}
# Hot-path lookups, built once: every tensor crosses several codecs per request, and building
# little-endian dtypes or dtype strings each time cost more than copying a small tensor.
_NATIVE_TO_V2: dict[np.dtype, str] = {np.dtype(v): k for k, v in V2_TO_NUMPY.items() if k != "BYTES"}
_NATIVE_LITTLE = sys.byteorder == "little"
_LITTLE_ENDIAN: dict[str, np.dtype] = {
    k: np.dtype(v).newbyteorder("<") for k, v in V2_TO_NUMPY.items() if k != "BYTES"
}


def numpy_dtype(datatype: str, field: str = "datatype") -> Any:
    try:
        return V2_TO_NUMPY[datatype]
    except KeyError:
        raise bad_request(f"unsupported datatype {datatype!r}", field) from None


def v2_datatype(arr: np.ndarray) -> str:
    """The v2 datatype of a numpy array (str/bytes/object arrays are BYTES)."""
    found = _NATIVE_TO_V2.get(arr.dtype)
    if found is not None:
        return found
    if arr.dtype.kind in "OSU":
        return "BYTES"
    try:
        return _NUMPY_TO_V2[arr.dtype.newbyteorder("<").str if arr.dtype.byteorder == ">" else arr.dtype.str]
    except KeyError:
        raise ApiError(500, "unsupported_dtype", f"numpy dtype {arr.dtype} has no v2 datatype") from None


def _as_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode()
    if isinstance(item, np.bytes_):
        return bytes(item)
    return str(item).encode()


def serialize_bytes_tensor(arr: np.ndarray) -> bytes:
    """BYTES tensor -> the v2 wire form: each element as a 4-byte little-endian length + bytes."""
    parts: list[bytes] = []
    pack = struct.Struct("<I").pack
    for item in arr.reshape(-1):
        b = _as_bytes(item)
        parts.append(pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def deserialize_bytes_tensor(buf: bytes | memoryview, field: str = "data") -> np.ndarray:
    """The v2 BYTES wire form -> a flat object array of bytes."""
    view = memoryview(buf)
    items: list[bytes] = []
    offset, size = 0, len(view)
    while offset < size:
        if offset + 4 > size:
            raise bad_request("truncated BYTES element length", field)
        (length,) = struct.unpack_from("<I", view, offset)
        offset += 4
        if offset + length > size:
            raise bad_request("BYTES element longer than its buffer", field)
        items.append(bytes(view[offset:offset + length]))
        offset += length
    out = np.empty(len(items), dtype=np.object_)
    out[:] = items
    return out


def _little_endian(dtype: np.dtype) -> bool:
    order = dtype.byteorder
    return order == "<" or order == "|" or (order == "=" and _NATIVE_LITTLE)


def tensor_to_bytes(arr: np.ndarray) -> bytes:
    if arr.dtype.kind in "OSU":
        return serialize_bytes_tensor(arr)
    if _little_endian(arr.dtype):
        return arr.tobytes()  # C order whatever the memory layout
    return np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def tensor_buffer(arr: np.ndarray) -> bytes | memoryview:
    """The tensor's wire bytes, without a copy when its memory already is the wire form.

    Messages are joined into one body anyway, so a view of a C-contiguous little-endian tensor
    (typically one decoded from a previous hop) saves a copy of every tensor on every hop.
    """
    # A zero-size tensor has no bytes to view (memoryview cannot cast a shape with a 0 in it).
    if arr.dtype.kind not in "OSU" and arr.ndim and arr.size and arr.flags.c_contiguous and _little_endian(arr.dtype):
        return arr.data.cast("B")
    return tensor_to_bytes(arr)


def tensor_from_bytes(buf: bytes | memoryview, datatype: str, shape: list[int], field: str = "data") -> np.ndarray:
    count = math.prod(shape)
    dtype = _LITTLE_ENDIAN.get(datatype)
    if dtype is not None:
        if len(buf) != count * dtype.itemsize:
            raise bad_request(
                f"binary data is {len(buf)} bytes, shape {shape} of {datatype} needs {count * dtype.itemsize}", field
            )
        return np.frombuffer(buf, dtype=dtype).reshape(shape)
    if datatype == "BYTES":
        flat = deserialize_bytes_tensor(buf, field)
        if flat.size != count:
            raise bad_request(f"BYTES data has {flat.size} elements, shape {shape} needs {count}", field)
        return flat.reshape(shape)
    dtype = np.dtype(numpy_dtype(datatype, field)).newbyteorder("<")
    if len(buf) != count * dtype.itemsize:
        raise bad_request(
            f"binary data is {len(buf)} bytes, shape {shape} of {datatype} needs {count * dtype.itemsize}", field
        )
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def _checked(raw: np.ndarray, dtype: Any, datatype: str, field: str) -> np.ndarray:
    """``raw`` (as JSON gave it) as ``dtype``, refusing what a cast would silently change: an integer
    out of the type's range (-1 as UINT8 would become 255), booleans as numbers, fractions or
    booleans as integers. Triton refuses these too, but later, as a model error."""
    target = np.dtype(dtype)
    kind = raw.dtype.kind
    if target.kind == "b" or raw.size == 0:
        return raw.astype(target)
    if kind == "b":
        raise bad_request(f"true/false are not {datatype} values", field)
    if target.kind in "iu":
        if kind == "f":
            raise bad_request(f"{datatype} values must be integers", field)
        if kind in "iu" or kind == "O":
            info = np.iinfo(target)
            low, high = raw.min(), raw.max()
            if low < info.min or high > info.max:
                raise bad_request(f"{datatype} values must be within {info.min} and {info.max}", field)
    with np.errstate(over="ignore"):  # an overflow is found below and refused, not warned about
        out = raw.astype(target)
    if target.kind == "f" and kind in "iuf" and not np.isfinite(out).all() and np.isfinite(raw).all():
        raise bad_request(f"a value is out of the range of {datatype}", field)  # 1e39 as FP32 is inf
    return out


def tensor_from_json(data: Any, datatype: str, shape: list[int] | None, field: str) -> np.ndarray:
    """A JSON value (nested or flat list, scalar) -> a numpy tensor of the given datatype and shape."""
    dtype = numpy_dtype(datatype, field)
    try:
        if datatype == "BYTES":
            flat = np.asarray(data, dtype=np.object_).reshape(-1)
            arr = np.empty(flat.size, dtype=np.object_)
            arr[:] = [_as_bytes(x) for x in flat]
        else:
            arr = _checked(np.asarray(data), dtype, datatype, field)
    except (ValueError, TypeError, OverflowError) as exc:  # OverflowError: e.g. 2**64 as INT64
        raise bad_request(f"cannot convert to {datatype}: {exc}", field) from None
    if shape is not None:
        if arr.size != math.prod(shape):
            raise bad_request(f"{arr.size} values do not fill shape {shape}", field)
        arr = arr.reshape(shape)
    return arr


def tensor_to_json(arr: np.ndarray) -> Any:
    """A tensor -> a JSON-able value; BYTES elements become str (UTF-8) or, when not text, {"b64": ...}."""
    if arr.dtype.kind in "OSU":
        import base64

        def conv(x: Any) -> Any:
            if isinstance(x, str):
                return x
            b = _as_bytes(x)
            try:
                return b.decode()
            except UnicodeDecodeError:
                return {"b64": base64.b64encode(b).decode()}

        flat = [conv(x) for x in arr.reshape(-1)]
        return np.array(flat, dtype=object).reshape(arr.shape).tolist() if arr.ndim else flat[0]
    return arr.tolist()


# -- KServe v2 infer requests and responses ------------------------------------------------------

@dataclass
class V2Request:
    """A parsed v2 infer request: tensors by name plus what the client asked about the outputs."""

    id: str | None
    inputs: dict[str, np.ndarray]
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[dict[str, Any]] | None = None
    input_parameters: dict[str, dict[str, Any]] = field(default_factory=dict)


# Parameters of the client's HTTP exchange only (how the answer is encoded), never passed to Triton.
HTTP_ONLY_PARAMETERS = ("binary_data_output",)


def model_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """A v2 request's parameters for the scripts and Triton: those of the HTTP exchange left out."""
    return {k: v for k, v in parameters.items() if k not in HTTP_ONLY_PARAMETERS}


def split_binary(body: bytes, header_length: int | None) -> tuple[Any, memoryview]:
    """Split a v2 body into its JSON header (parsed) and the binary section that follows it."""
    view = memoryview(body)
    if header_length is None:
        header_bytes, rest = view, view[len(view):]
    else:
        if header_length < 0 or header_length > len(body):
            raise bad_request(f"{HEADER_LENGTH} {header_length} is outside the body", HEADER_LENGTH)
        header_bytes, rest = view[:header_length], view[header_length:]
    try:
        header = orjson.loads(header_bytes)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"body is not valid JSON: {exc}", "body") from None
    return header, rest


def _is_shape(shape: Any) -> bool:
    """A list of non-negative ints (a plain loop: all() over a generator costs more per request)."""
    if not isinstance(shape, list):
        return False
    for d in shape:  # noqa: SIM110
        if not isinstance(d, int) or d < 0:
            return False
    return True


def _are_outputs(outputs: Any) -> bool:
    """A list of objects with a string name (a plain loop, as in _is_shape)."""
    if not isinstance(outputs, list):
        return False
    for o in outputs:  # noqa: SIM110
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            return False
    return True


def parse_v2_request(body: bytes, header_length: int | None) -> V2Request:
    """A v2 infer body -> its tensors and what it asks of the answer, every field checked.

    Runs on every v2 request (in the gateway, or in the pre stage when relayed), so the common case
    builds no error text and no throwaway dict: a field's path is written only when it is wrong.
    """
    header, binary = split_binary(body, header_length)
    if not isinstance(header, dict):
        raise bad_request("request must be a JSON object", "body")
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise bad_request("inputs must be a non-empty list", "inputs")
    inputs: dict[str, np.ndarray] = {}
    input_params: dict[str, dict[str, Any]] = {}
    offset = 0
    available = len(binary)
    for i, item in enumerate(raw_inputs):
        if not isinstance(item, dict):
            raise bad_request("each input must be an object", f"inputs[{i}]")
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if not isinstance(name, str) or not name:
            raise bad_request("name is required", f"inputs[{i}].name")
        if not isinstance(datatype, str):
            raise bad_request("datatype is required", f"inputs[{i}].datatype")
        if not _is_shape(shape):
            raise bad_request("shape must be a list of non-negative integers", f"inputs[{i}].shape")
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise bad_request("parameters must be an object", f"inputs[{i}].parameters")
        size = params.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > available:
                raise bad_request("binary_data_size runs past the end of the body", f"inputs[{i}].parameters")
            inputs[name] = tensor_from_bytes(binary[offset:offset + size], datatype, shape, f"inputs[{i}].data")
            offset += size
        elif "data" in item:
            inputs[name] = tensor_from_json(item["data"], datatype, shape, f"inputs[{i}].data")
        else:
            raise bad_request("data (or binary_data_size) is required", f"inputs[{i}].data")
        if len(params) > ("binary_data_size" in params):  # any parameter but the binary size
            input_params[name] = {k: v for k, v in params.items() if k != "binary_data_size"}
    if offset != available:
        raise bad_request(f"{available - offset} bytes of binary data are not claimed by any input", "body")
    params = header.get("parameters") or {}
    if not isinstance(params, dict):
        raise bad_request("parameters must be an object", "parameters")
    outputs = header.get("outputs")
    if outputs is not None and not _are_outputs(outputs):
        raise bad_request("outputs must be a list of objects with a name", "outputs")
    req_id = header.get("id")
    return V2Request(str(req_id) if req_id is not None else None, inputs, params, outputs, input_params)


def parse_v2_response(body: bytes, header_length: int | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A v2 infer response (JSON or binary extension) -> (its JSON header, output tensors by name)."""
    header, binary = split_binary(body, header_length)
    if not isinstance(header, dict):
        raise ApiError(502, "bad_upstream_response", "Triton's response is not a JSON object")
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for item in header.get("outputs") or []:
        size = (item.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            tensors[item["name"]] = tensor_from_bytes(binary[offset:offset + size], item["datatype"], item["shape"])
            offset += size
        else:
            tensors[item["name"]] = tensor_from_json(item.get("data"), item["datatype"], item["shape"], "outputs")
    return header, tensors


def encode_v2_request(inputs: dict[str, np.ndarray], outputs: list[str] | None, request_id: str,
                      parameters: dict[str, Any] | None) -> tuple[bytes, int]:
    """A binary-extension v2 infer request (all tensors binary, all outputs asked for as binary)."""
    metas: list[dict[str, Any]] = []
    buffers: list[bytes] = []
    for name, arr in inputs.items():
        buf = tensor_buffer(arr)
        metas.append({"name": name, "datatype": v2_datatype(arr), "shape": list(arr.shape),
                      "parameters": {"binary_data_size": len(buf)}})
        buffers.append(buf)
    params = dict(parameters or {})
    doc: dict[str, Any] = {"inputs": metas}
    if request_id:
        doc["id"] = request_id
    if outputs:
        doc["outputs"] = [{"name": n, "parameters": {"binary_data": True}} for n in outputs]
    else:
        params["binary_data_output"] = True
    doc["parameters"] = params
    header = orjson.dumps(doc)
    return b"".join([header, *buffers]), len(header)


def encode_v2_response(
    model: str,
    version: str | None,
    request: V2Request | None,
    outputs: dict[str, np.ndarray],
    *,
    extra_parameters: dict[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """A v2 infer response honouring the request's outputs list and binary_data choices.

    Returns the body and, when it has a binary section, the JSON header length for
    Inference-Header-Content-Length.
    """
    binary_default = bool(request and request.parameters.get("binary_data_output"))
    wanted: dict[str, bool] | None = None
    if request is not None and request.outputs:
        wanted = {}
        for o in request.outputs:
            p = o.get("parameters") or {}
            wanted[o["name"]] = bool(p.get("binary_data", binary_default))
    out_meta: list[dict[str, Any]] = []
    buffers: list[bytes] = []
    for name, arr in outputs.items():
        if wanted is not None and name not in wanted:
            continue
        binary = wanted[name] if wanted is not None else binary_default
        meta: dict[str, Any] = {"name": name, "datatype": v2_datatype(arr), "shape": list(arr.shape)}
        if binary:
            buf = tensor_buffer(arr)
            meta["parameters"] = {"binary_data_size": len(buf)}
            buffers.append(buf)
        else:
            data = tensor_to_json(arr)
            meta["data"] = np.asarray(data, dtype=object).reshape(-1).tolist() if arr.ndim else [data]
        out_meta.append(meta)
    resp: dict[str, Any] = {"model_name": model, "outputs": out_meta}
    if version:
        resp["model_version"] = version
    if request is not None and request.id is not None:
        resp["id"] = request.id
    if extra_parameters:
        resp["parameters"] = extra_parameters
    header = orjson.dumps(resp, option=orjson.OPT_SERIALIZE_NUMPY)
    if not buffers:
        return header, None
    return b"".join([header, *buffers]), len(header)


# -- the stage wire format ----------------------------------------------------------------------

STAGE_CONTENT_TYPE = "application/x-tritium-tensors"


def pack_message(header: dict[str, Any], tensors: dict[str, np.ndarray] | None = None,
                 raw: bytes | None = None) -> tuple[bytes, int]:
    """Header JSON + tensor buffers (+ an opaque raw payload), framed like the v2 binary extension.

    The header lists each tensor's name, datatype, shape and size; the buffers follow in order.
    """
    metas: list[dict[str, Any]] = []
    buffers: list[bytes] = []
    for name, arr in (tensors or {}).items():
        arr = np.asarray(arr)
        buf = tensor_buffer(arr)
        metas.append({"name": name, "datatype": v2_datatype(arr), "shape": list(arr.shape), "size": len(buf)})
        buffers.append(buf)
    head = dict(header)
    head["tensors"] = metas
    if raw is not None:
        head["raw_size"] = len(raw)
        buffers.append(raw)
    encoded = orjson.dumps(head, option=orjson.OPT_SERIALIZE_NUMPY)
    return b"".join([encoded, *buffers]), len(encoded)


def unpack_message(
    body: bytes, header_length: int | None
) -> tuple[dict[str, Any], dict[str, np.ndarray], bytes | None]:
    header, binary = split_binary(body, header_length)
    if not isinstance(header, dict):
        raise bad_request("stage message header must be an object", "body")
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for meta in header.pop("tensors", []):
        size = int(meta["size"])
        tensors[meta["name"]] = tensor_from_bytes(binary[offset:offset + size], meta["datatype"], meta["shape"])
        offset += size
    raw: bytes | None = None
    raw_size = header.pop("raw_size", None)
    if raw_size is not None:
        raw = bytes(binary[offset:offset + int(raw_size)])
    return header, tensors, raw
