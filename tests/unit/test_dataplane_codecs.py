"""Tensor codecs: v2 JSON/binary requests and responses, the stage framing, JSON typing by model metadata."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tritium.dataplane.convert import inputs_from_json, text_of, values_to_tensors
from tritium.dataplane.errors import ApiError
from tritium.dataplane.gateway import new_request_id, parse_timeout
from tritium.dataplane.tensors import (
    V2Request,
    deserialize_bytes_tensor,
    encode_v2_response,
    pack_message,
    parse_v2_request,
    serialize_bytes_tensor,
    unpack_message,
)

MODEL = {"name": "m", "max_batch_size": 8,
         "inputs": {"x": ["FP32", [-1, 3]], "s": ["BYTES", [-1, 1]], "i": ["INT64", [-1, -1]]}}


def test_bytes_roundtrip() -> None:
    arr = np.array([b"a", b"", "\u00e9".encode(), b"\x00\xff"], dtype=object)
    np.testing.assert_array_equal(deserialize_bytes_tensor(serialize_bytes_tensor(arr)), arr)
    with pytest.raises(ApiError):
        deserialize_bytes_tensor(b"\x05\x00\x00\x00ab")


def test_v2_request_json_and_binary_parts() -> None:
    header = orjson.dumps({"id": "7", "inputs": [
        {"name": "a", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3, 4]]},
        {"name": "b", "datatype": "INT32", "shape": [3], "parameters": {"binary_data_size": 12}},
    ], "outputs": [{"name": "y"}]})
    req = parse_v2_request(header + np.array([5, 6, 7], np.int32).tobytes(), len(header))
    assert req.id == "7" and req.outputs == [{"name": "y"}]
    np.testing.assert_array_equal(req.inputs["a"], np.array([[1, 2], [3, 4]], np.float32))
    np.testing.assert_array_equal(req.inputs["b"], [5, 6, 7])


@pytest.mark.parametrize(("doc", "field"), [
    ({"inputs": []}, "inputs"),
    ({"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]}, "inputs[0].name"),
    ({"inputs": [{"name": "a", "datatype": "FP99", "shape": [1], "data": [1]}]}, "inputs[0].data"),
    ({"inputs": [{"name": "a", "datatype": "FP32", "shape": [-1], "data": [1]}]}, "inputs[0].shape"),
    ({"inputs": [{"name": "a", "datatype": "FP32", "shape": [2], "data": [1]}]}, "inputs[0].data"),
    ({"inputs": [{"name": "a", "datatype": "FP32", "shape": [1]}]}, "inputs[0].data"),
    ([1], "body"),
    ({"inputs": {"a": 1}}, "inputs"),
    ({"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data": [1]}, 7]}, "inputs[1]"),
    ({"inputs": [{"name": "", "datatype": "FP32", "shape": [1], "data": [1]}]}, "inputs[0].name"),
    ({"inputs": [{"name": "a", "shape": [1], "data": [1]}]}, "inputs[0].datatype"),
    ({"inputs": [{"name": "a", "datatype": "FP32", "shape": 1, "data": [1]}]}, "inputs[0].shape"),
    ({"inputs": [{"name": "a", "datatype": "FP32", "shape": [1.5], "data": [1]}]}, "inputs[0].shape"),
    ({"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data": [1], "parameters": [1]}]},
     "inputs[0].parameters"),
    ({"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}}]},
     "inputs[0].parameters"),
    ({"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": -1}}]},
     "inputs[0].parameters"),
    ({"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data": [1]}], "parameters": [1]}, "parameters"),
    ({"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data": [1]}], "outputs": [{"x": 1}]}, "outputs"),
    ({"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data": [1]}], "outputs": {"name": "y"}},
     "outputs"),
])
def test_v2_request_errors_name_the_field(doc: dict, field: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_v2_request(orjson.dumps(doc), None)
    assert err.value.status == 400 and err.value.field == field


def test_v2_request_binary_errors_name_the_field() -> None:
    header = orjson.dumps({"inputs": [{"name": "b", "datatype": "INT32", "shape": [3],
                                       "parameters": {"binary_data_size": 12}}]})
    with pytest.raises(ApiError) as err:  # 4 bytes more than the inputs claim
        parse_v2_request(header + bytes(16), len(header))
    assert err.value.status == 400 and err.value.field == "body" and "4 bytes" in err.value.message
    with pytest.raises(ApiError) as err:  # 4 bytes fewer
        parse_v2_request(header + bytes(8), len(header))
    assert err.value.status == 400 and err.value.field == "inputs[0].parameters"


def test_v2_request_keeps_input_parameters_but_the_binary_size() -> None:
    header = orjson.dumps({"inputs": [
        {"name": "a", "datatype": "INT32", "shape": [1], "parameters": {"binary_data_size": 4, "k": 1}},
        {"name": "b", "datatype": "INT32", "shape": [1], "parameters": {"binary_data_size": 4}},
        {"name": "c", "datatype": "INT32", "shape": [1], "data": [1], "parameters": {"binary_data_size": None}},
        {"name": "d", "datatype": "INT32", "shape": [1], "data": [1], "parameters": {"j": "x"}},
        {"name": "e", "datatype": "INT32", "shape": [1], "data": [1], "parameters": {}},
    ], "parameters": {"p": 2}})
    req = parse_v2_request(header + bytes(8), len(header))
    assert req.input_parameters == {"a": {"k": 1}, "d": {"j": "x"}}
    assert req.parameters == {"p": 2} and req.outputs is None and req.id is None
    assert sorted(req.inputs) == ["a", "b", "c", "d", "e"]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 40) | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12)
_INPUT = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["a", "b", ""]) | _JSON,
    "datatype": st.sampled_from(["FP32", "INT64", "BYTES", "X"]) | _JSON,
    "shape": st.lists(st.integers(-1, 3), max_size=3) | _JSON, "data": _JSON,
    "parameters": st.fixed_dictionaries({}, optional={"binary_data_size": st.integers(-1, 12) | _JSON}) | _JSON,
})


@settings(max_examples=300, deadline=None)
@given(inputs=st.lists(_INPUT, max_size=3) | _JSON,
       extra=st.dictionaries(st.sampled_from(["id", "parameters", "outputs"]), _JSON, max_size=3),
       binary=st.binary(max_size=16))
def test_v2_request_parses_or_names_the_field(inputs: object, extra: dict, binary: bytes) -> None:
    """Whatever the body, a parsed request or a 400 naming a field: never another exception."""
    header = orjson.dumps({"inputs": inputs, **extra})
    try:
        req = parse_v2_request(header + binary, len(header))
    except ApiError as exc:
        assert exc.status == 400 and exc.field
        return
    assert req.inputs and all(isinstance(v, np.ndarray) for v in req.inputs.values())


def test_v2_response_honours_binary_choices() -> None:
    outputs = {"y": np.array([[1.5, 2.5]], np.float32), "z": np.array([b"hi"], dtype=object)}
    req = V2Request(id="r", inputs={}, outputs=[{"name": "y", "parameters": {"binary_data": True}}, {"name": "z"}])
    body, length = encode_v2_response("m", "1", req, outputs)
    assert length is not None
    head = orjson.loads(body[:length])
    assert head["id"] == "r" and head["model_version"] == "1"
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 8
    assert head["outputs"][1]["data"] == ["hi"]
    assert np.frombuffer(body[length:], np.float32).tolist() == [1.5, 2.5]
    body, length = encode_v2_response("m", None, None, outputs)
    assert length is None and orjson.loads(body)["outputs"][0]["data"] == [1.5, 2.5]


def test_stage_message_roundtrip() -> None:
    tensors = {"a": np.arange(6, dtype=np.int64).reshape(2, 3), "s": np.array([b"x", b"yz"], dtype=object)}
    body, length = pack_message({"mode": "v2", "parameters": {"k": 1}}, tensors, raw=b"<raw>")
    header, out, raw = unpack_message(body, length)
    assert header == {"mode": "v2", "parameters": {"k": 1}} and raw == b"<raw>"
    np.testing.assert_array_equal(out["a"], tensors["a"])
    np.testing.assert_array_equal(out["s"], tensors["s"])


def test_json_inputs_typed_by_the_model() -> None:
    out = inputs_from_json({"x": [1, 2, 3], "s": "hello", "i": [[1, 2]]}, MODEL)
    assert out["x"].dtype == np.float32 and out["x"].shape == (1, 3)
    assert out["s"].shape == (1, 1) and out["s"][0, 0] == b"hello"
    assert out["i"].dtype == np.int64
    b64 = inputs_from_json({"x": {"b64": "AACAPwAAAEAAAEBA"}}, MODEL)["x"]
    np.testing.assert_array_equal(b64, [[1, 2, 3]])


@pytest.mark.parametrize(("inputs", "field"), [
    ({"nope": [1]}, "inputs.nope"),
    ({"x": [1, 2]}, "inputs.x"),
    ({"x": ["a", "b", "c"]}, "inputs.x"),
    ({"x": {"b64": "!!"}}, "inputs.x"),
    ([1], "inputs"),
])
def test_json_input_errors(inputs: object, field: str) -> None:
    with pytest.raises(ApiError) as err:
        inputs_from_json(inputs, MODEL)
    assert err.value.field == field


def test_text_and_values() -> None:
    assert text_of({"t": np.array([b"hi"], dtype=object), "n": np.array([1])}) == "hi"
    assert text_of({"t": np.array([b"a", b"b"], dtype=object)}) is None
    out = values_to_tensors({"w": ["a", "b"], "n": [1.5]})
    assert out["w"].dtype == object and out["w"][0] == b"a" and out["n"].dtype == np.float64


@pytest.mark.parametrize(("value", "seconds"), [("2.5", 2.5), ("200m", 0.2), ("3S", 3.0), ("1M", 60.0)])
def test_timeouts(value: str, seconds: float) -> None:
    assert parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["soon", "-1", "0", "5x", "inf", "1e309", "nan", "86401", "25H"])
def test_bad_timeouts(value: str) -> None:
    with pytest.raises(ApiError):
        parse_timeout(value)


def test_a_timeout_that_is_not_positive_is_named_with_its_value() -> None:
    with pytest.raises(ApiError) as caught:
        parse_timeout("0.000")
    assert "'0.000'" in str(caught.value.message)


def test_generated_request_ids_are_unique_uuid_sized_hex() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
