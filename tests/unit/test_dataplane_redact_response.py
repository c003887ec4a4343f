"""Redaction of answers (security/redact_response.py): text redacted, numbers and binary never touched."""

from __future__ import annotations

import numpy as np
import orjson
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tritium.dataplane.pipeline import Result
from tritium.dataplane.security.redact import Redactor
from tritium.dataplane.security.redact_response import redact_body, redact_result, redact_tensor, redact_value

REDACT = Redactor(["cust-[0-9]+"])
CARD = "4111 1111 1111 1111"  # a Luhn-valid Visa test number


def test_bytes_tensors_are_redacted_element_by_element() -> None:
    tensor = np.array([[b"mail alice@example.com", b"no data here"], [b"\xff\xfe binary", b"cust-42"]], dtype=object)
    out = redact_tensor(tensor, REDACT)
    assert out.shape == (2, 2) and out.dtype == object
    assert out.tolist() == [[b"mail [email]", b"no data here"], [b"\xff\xfe binary", b"[redacted]"]]
    assert tensor[0, 0] == b"mail alice@example.com", "the input is not changed"
    fixed = np.array([b"call +44 20 7946 0958"], dtype="S30")
    assert redact_tensor(fixed, REDACT).tolist() == [b"call [phone]"]


def test_numeric_tensors_pass_unchanged_even_when_they_look_like_a_card() -> None:
    tensor = np.array([4111111111111111, 5500000000000004], dtype=np.int64)
    assert redact_tensor(tensor, REDACT) is tensor


def test_values_and_text() -> None:
    values = {"note": ["write to bob@example.org"], "card": CARD, "score": 4111111111111111, "nested": {
        "alice@example.com": [1.5, "cust-7"]}}
    assert redact_value(values, REDACT) == {"note": ["write to [email]"], "card": "[card]",
                                            "score": 4111111111111111, "nested": {"[email]": [1.5, "[redacted]"]}}
    result = redact_result(Result(values=values, text=f"paid with {CARD}"), REDACT)
    assert result.text == "paid with [card]" and result.values["card"] == "[card]"
    assert values["card"] == CARD, "the input is not changed"


def test_rendered_bodies_by_media_type() -> None:
    doc = orjson.dumps({"to": "alice@example.com", "ids": [4111111111111111, 12345], "n": 1.25})
    out = orjson.loads(redact_body(doc, "application/json; charset=utf-8", REDACT))
    assert out == {"to": "[email]", "ids": [4111111111111111, 12345], "n": 1.25}
    xml = b"<r><to>alice@example.com</to><n>4111111111111111</n></r>"
    assert redact_body(xml, "application/xml", REDACT) == b"<r><to>[email]</to><n>[card]</n></r>"
    assert redact_body(b"hi alice@example.com", "text/plain", REDACT) == b"hi [email]"
    binary = b"\x00alice@example.com\x01"
    assert redact_body(binary, "application/octet-stream", REDACT) == binary
    assert redact_body(b"{not json alice@example.com", "application/json", REDACT) == b"{not json alice@example.com"
    result = redact_result(Result(body=xml, content_type="application/xml", headers={"X-Mail": "a@b.example"}),
                           REDACT)
    assert b"[email]" in (result.body or b"") and result.headers == {"X-Mail": "a@b.example"}


@given(hnp.arrays(st.sampled_from([np.float32, np.int64, np.uint8, np.bool_]), hnp.array_shapes(max_dims=3)))
def test_no_numeric_tensor_ever_changes(tensor: np.ndarray) -> None:
    out = redact_result(Result(tensors={"x": tensor}), REDACT).tensors["x"]
    assert out.dtype == tensor.dtype and np.array_equal(out, tensor, equal_nan=True)


json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False,
              allow_infinity=False), st.text(max_size=30)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=15)


def _numbers(value: object) -> list[object]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [] if isinstance(value, str) else [value]


@given(json_value)
def test_a_json_body_stays_json_with_its_numbers(value: object) -> None:
    out = orjson.loads(redact_body(orjson.dumps(value), "application/json", REDACT))
    assert _numbers(out) == _numbers(value)
