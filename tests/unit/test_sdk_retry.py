"""The SDK's pure parts: when to retry and how long to wait, Retry-After, error mapping, SSE, values."""

from __future__ import annotations

import random
import subprocess
import sys
from email.utils import formatdate

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tritium.cli import UsageError
from tritium.client import (
    DeadlineExceededError,
    InvalidInputError,
    ModelNotFoundError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    TritiumError,
)
from tritium.client.cli import parse_pairs
from tritium.client.errors import error_from_payload
from tritium.client.response import SSEParser, decode_value, encode_inputs
from tritium.client.retry import RetryPolicy, backoff_delay, parse_retry_after, retry_delay, should_retry


@given(attempt=st.integers(0, 200), base=st.floats(0, 10), cap=st.floats(0, 60), seed=st.integers())
def test_full_jitter_stays_within_the_exponential_cap(attempt: int, base: float, cap: float, seed: int) -> None:
    policy = RetryPolicy(backoff_base=base, backoff_max=cap)
    delay = backoff_delay(attempt, policy, random.Random(seed))
    assert 0 <= delay <= min(cap, base * 2 ** min(attempt, 32))


def test_jitter_spreads_delays() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(4, RetryPolicy(backoff_base=0.1, backoff_max=10), rng) for _ in range(200)]
    assert max(delays) > 1.2 and min(delays) < 0.3  # uniform over [0, 1.6]


@pytest.mark.parametrize(("value", "expected"), [
    ("1", 1.0), (" 2 ", 2.0), ("0", 0.0), ("0.5", 0.5), ("-3", 0.0), ("", None), (None, None), ("soon", None),
    ("nan", None), ("inf", None),
])
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0


@pytest.mark.parametrize(("kwargs", "expected"), [
    # transport failures: only "never connected" is safe for invoke
    ({"transport": "connect"}, True),
    ({"transport": "sent"}, False),
    ({"transport": "sent", "idempotent": True}, True),
    # an untrusted TLS certificate: the next attempt meets the same one
    ({"transport": "certificate"}, False),
    ({"transport": "certificate", "idempotent": True}, False),
    # 429: refused before running
    ({"status": 429, "code": "overloaded", "retry_after": 1.0}, True),
    ({"status": 429}, True),
    # 503: only with Retry-After, never after the model ran (post stage)
    ({"status": 503, "code": "triton_unavailable", "retry_after": 1.0}, True),
    ({"status": 503, "code": "stage_unavailable", "field": "pre", "retry_after": 1.0}, True),
    ({"status": 503, "code": "stage_unavailable", "field": "post", "retry_after": 1.0}, False),
    ({"status": 503, "code": "triton_unavailable"}, False),
    ({"status": 503, "retry_after": 0.0}, True),
    # may have run
    ({"status": 502}, False),
    ({"status": 504, "code": "deadline_exceeded"}, False),
    ({"status": 500, "code": "model_error"}, False),
    # reads retry every retryable status, nothing else
    ({"status": 502, "idempotent": True}, True),
    ({"status": 504, "idempotent": True}, True),
    ({"status": 503, "code": "stage_unavailable", "field": "post", "idempotent": True}, True),
    ({"status": 500, "idempotent": True}, False),
    ({"status": 400, "idempotent": True}, False),
    ({"status": 404}, False),
])
def test_should_retry_rule(kwargs: dict, expected: bool) -> None:
    kwargs.setdefault("idempotent", False)
    assert should_retry(**kwargs) is expected


def test_retry_delay_honours_retry_after_limits_and_budget() -> None:
    policy = RetryPolicy(max_retries=2, backoff_base=0.1, backoff_max=1.0, max_retry_after=5)
    rng = random.Random(0)
    assert retry_delay(0, policy, 2.0, None, rng) == 2.0  # never sooner than the server asked
    assert 0 <= retry_delay(1, policy, None, None, rng) <= 0.2  # type: ignore[operator]
    assert retry_delay(2, policy, None, None, rng) is None  # retries used up
    assert retry_delay(0, policy, 6.0, None, rng) is None  # asks for longer than we accept
    assert retry_delay(0, policy, 2.0, 1.5, rng) is None  # would pass the total timeout
    assert retry_delay(0, RetryPolicy(max_retries=0), None, None) is None
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)


@pytest.mark.parametrize(("status", "cls"), [
    (400, InvalidInputError), (413, InvalidInputError), (415, InvalidInputError), (404, ModelNotFoundError),
    (429, RateLimitError), (503, ServiceUnavailableError), (504, DeadlineExceededError), (500, ServerError),
    (502, ServerError), (418, TritiumError),
])
def test_error_types_by_status(status: int, cls: type) -> None:
    err = error_from_payload(status, {"error": {"code": "c", "message": "m", "field": "inputs.X", "request_id": "r"}})
    assert type(err) is cls and err.status_code == status and (err.message, err.field, err.request_id) == \
        ("m", "inputs.X", "r")


def test_error_shapes_v2_proxy_page_and_stream_event() -> None:
    v2 = error_from_payload(400, {"error": "bad shape", "code": "invalid_input", "field": "inputs[0].shape"},
                            request_id="hdr")
    assert (v2.message, v2.code, v2.field, v2.request_id) == ("bad shape", "invalid_input", "inputs[0].shape", "hdr")
    page = error_from_payload(502, None, fallback="<h1>Bad Gateway</h1>")
    assert isinstance(page, ServerError) and page.message == "<h1>Bad Gateway</h1>"
    event = error_from_payload(None, {"error": {"code": "deadline_exceeded", "message": "late"}})
    assert isinstance(event, DeadlineExceededError) and event.status_code == 504
    rate = error_from_payload(429, {}, retry_after=2.0)
    assert rate.retry_after == 2.0 and str(rate) == "429: HTTP 429"


def test_sse_parser() -> None:
    parser = SSEParser()
    lines = ["data: {\"a\": 1}", "", ": keep-alive", "", "event: error", "data: {\"x\":", "data: 2}", "",
             "event: done", "data: {}"]
    events = [e for line in lines if (e := parser.feed(line)) is not None]
    assert events == [("message", '{"a": 1}'), ("error", '{"x":\n2}')]
    assert parser.flush() == ("done", "{}")
    assert parser.flush() is None


def test_values_in_and_out() -> None:
    body = orjson.loads(encode_inputs({"A": np.arange(3, dtype=np.float32), "B": b"\x00\x01", "C": "text",
                                       "D": [[1, 2], [3, 4]], "E": np.array(["x", "y"])}, {"k": True}))
    assert body == {"inputs": {"A": [0.0, 1.0, 2.0], "B": {"b64": "AAE="}, "C": "text", "D": [[1, 2], [3, 4]],
                               "E": ["x", "y"]}, "parameters": {"k": True}}
    assert "parameters" not in orjson.loads(encode_inputs({"A": 1}, None))
    with pytest.raises(TypeError):
        encode_inputs([1, 2], None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_inputs({"A": object()}, None)
    assert decode_value([[1.5, 2.0]]).dtype == np.float64
    assert decode_value([1, 2]).dtype == np.int64
    assert decode_value(["a", "b"]) == ["a", "b"]
    assert decode_value([[1], [2, 3]]) == [[1], [2, 3]]
    assert decode_value("text") == "text" and decode_value([]) == []


def test_cli_pairs() -> None:
    assert parse_pairs(["A=[1, 2]", "B=hello world", "C=3", "D=", "E=a=b"], "--input") == \
        {"A": [1, 2], "B": "hello world", "C": 3, "D": "", "E": "a=b"}
    with pytest.raises(UsageError, match="expected NAME=VALUE"):
        parse_pairs(["A"], "--input")
    with pytest.raises(UsageError, match="given twice"):
        parse_pairs(["A=1", "A=2"], "--input")


def test_importing_tritium_does_not_import_httpx() -> None:
    code = ("import sys, tritium; assert 'httpx' not in sys.modules and 'tritium.client' not in sys.modules; "
            "from tritium import InferenceClient, AsyncInferenceClient; assert 'httpx' in sys.modules; "
            "assert InferenceClient.__name__ == 'InferenceClient' and 'InferenceClient' in dir(tritium)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_client_configuration_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from tritium.client import InferenceClient

    monkeypatch.delenv("TRITIUM_ENDPOINT", raising=False)
    with pytest.raises(ValueError, match="TRITIUM_ENDPOINT"):
        InferenceClient()
    with pytest.raises(ValueError, match="http:// or https://"):
        InferenceClient(endpoint="ftp://x")
    with pytest.raises(ValueError, match="does not exist"):
        InferenceClient(endpoint="https://x", verify="/nonexistent/ca.pem")
    with InferenceClient(endpoint="http://127.0.0.1:1/") as client:
        assert client.endpoint == "http://127.0.0.1:1"
        with pytest.raises(ValueError, match="inputs or content"):
            client.invoke(model_id="m", inputs={"a": 1}, content=b"x")
        with pytest.raises(ValueError, match="model_id"):
            client.invoke(model_id="", inputs={"a": 1})


def test_the_cli_loads_no_data_plane_or_sdk_libraries() -> None:
    """Every `tritium` command builds the full parser: the operator process must not carry httpx,
    numpy or tritonclient just because other subcommands exist (its memory is a target)."""
    code = ("import sys; import tritium.cli as c; c.build_parser(); "
            "loaded = [m for m in ('httpx', 'numpy', 'tritonclient', 'fsspec', 'grpc') if m in sys.modules]; "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("budget", [0.0004, 0.25, 2.5])
def test_the_deadline_header_carries_any_positive_budget(budget: float) -> None:
    """A budget under half a millisecond once went out as "0.000", which the gateway refuses as not positive."""
    import time

    from tritium.client._core import TIMEOUT_HEADER, Call, Core
    from tritium.dataplane.gateway import parse_timeout

    core = Core("http://127.0.0.1:1", None, budget, 0, None)
    call = Call("POST", "/v1/models/m/invoke", None, b"{}", {}, budget, False, time.monotonic())
    headers, timeout = core.attempt_headers(call)
    seconds = parse_timeout(headers[TIMEOUT_HEADER])
    assert 0 < seconds <= budget and timeout is not None
