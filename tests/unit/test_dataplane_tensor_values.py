"""JSON tensor values a cast would silently change are refused with a 400 naming the input.

Found by a black-box probe: 2**64 as INT64 was a 500 ("Python int too large"), a zero-size
tensor a 500 (memoryview cannot cast a zero shape), and -1 as UINT8 or booleans as FP32 reached
Triton, which refused them as a model error (500).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tritium.dataplane.errors import ApiError
from tritium.dataplane.tensors import tensor_buffer, tensor_from_json

FIELD = "inputs.x"


@pytest.mark.parametrize(("data", "datatype", "says"), [
    ([2**64], "INT64", "within"),
    ([2**64], "UINT64", "within"),
    ([-1], "UINT8", "within 0 and 255"),
    ([128], "INT8", "within -128 and 127"),
    ([True, False], "FP32", "true/false"),
    ([1.5], "INT32", "integers"),
    ([1e39], "FP32", "out of the range"),
    (["a"], "FP32", "cannot convert"),
    ([[1, 2], [3]], "INT32", "cannot convert"),
    ([1, None], "INT32", "cannot convert"),
])
def test_values_a_cast_would_change_are_a_400_naming_the_input(data: list, datatype: str, says: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ApiError) as caught:
        tensor_from_json(data, datatype, None, FIELD)
    assert caught.value.status == 400 and caught.value.field == FIELD and says in str(caught.value)


@pytest.mark.parametrize(("data", "datatype", "expected"), [
    ([255], "UINT8", [255]),
    ([-128, 127], "INT8", [-128, 127]),
    ([2**63 - 1], "INT64", [2**63 - 1]),
    ([2**64 - 1], "UINT64", [2**64 - 1]),
    ([1, 2], "FP32", [1.0, 2.0]),
    ([True, False], "BOOL", [True, False]),
    ([], "FP32", []),
])
def test_values_in_range_are_kept_exactly(data: list, datatype: str, expected: list) -> None:  # type: ignore[type-arg]
    assert tensor_from_json(data, datatype, None, FIELD).tolist() == expected


def test_a_zero_size_tensor_has_empty_wire_bytes() -> None:
    assert bytes(tensor_buffer(np.zeros((0, 2), dtype=np.float32))) == b""
    assert bytes(tensor_buffer(tensor_from_json([], "INT64", [0], FIELD))) == b""


@given(st.sampled_from(["INT8", "UINT8", "INT16", "UINT16", "INT32", "UINT32", "INT64", "UINT64"]),
       st.lists(st.integers(-(2**70), 2**70), min_size=1, max_size=8))
def test_an_integer_is_kept_or_refused_never_wrapped(datatype: str, values: list[int]) -> None:
    info = np.iinfo(np.dtype(datatype.lower()))
    fits = all(info.min <= v <= info.max for v in values)
    try:
        out = tensor_from_json(values, datatype, None, FIELD).tolist()
    except ApiError as exc:
        assert not fits and exc.status == 400
    else:
        assert fits and out == values


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=8))
def test_a_float_is_finite_or_refused(values: list[float]) -> None:
    try:
        out = tensor_from_json(values, "FP32", None, FIELD)
    except ApiError as exc:
        assert exc.status == 400 and any(abs(v) > np.finfo(np.float32).max for v in values)
    else:
        assert all(math.isfinite(v) for v in out.tolist())


@pytest.mark.parametrize(("body", "field"), [
    # What a real Triton (r24.10) answers, with a 500, to bodies it cannot parse:
    (b'{"error":"Unable to parse \'data\': attempt to access JSON non-number as double"}', "data"),
    (b'{"error":"Unable to parse \'id\': attempt to access JSON non-string as string"}', "id"),
    (b'{"error":"Unable to parse \'priority\': attempt to access JSON non-unsigned-integer as unsigned-integer"}',
     "priority"),
    (b'{"error":"failed to parse the request JSON buffer: Invalid value. at 0"}', "body"),
])
def test_a_body_triton_cannot_parse_is_the_clients_error(body: bytes, field: str) -> None:
    from tritium.dataplane.triton import map_http_error

    err = map_http_error(500, body, "add")
    assert (err.status, err.code, err.field) == (400, "invalid_input", field)


def test_a_model_that_fails_is_still_a_500() -> None:
    from tritium.dataplane.triton import map_http_error

    err = map_http_error(500, b'{"error":"Failed to process the request(s) for model instance"}', "add")
    assert (err.status, err.code) == (500, "model_error")
