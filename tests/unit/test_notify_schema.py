"""The webhook body and its signature: what a receiver parses and verifies, byte for byte."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json

import pytest

from tritium.controller.notify import (
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AnalysisSummary,
    EventType,
    Notification,
    redact,
    request_headers,
    retry_after_seconds,
    sign,
    verify_signature,
)

T = datetime.datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=datetime.UTC)


def _failed() -> Notification:
    return Notification(
        type=EventType.ANALYSIS_FAILED, namespace="prod", name="resnet", message="error ratio 3.40% (max 1.00%)",
        stable_revision="resnet-7d9f", canary_revision="resnet-5c2a", canary_weight=10, phase="Progressing",
        analysis=AnalysisSummary("Failed", error_ratio=0.034, p99_latency_ms=812.5, requests=1199.6),
        time=T, id="0123abcd",
    )


def test_body_has_the_documented_schema() -> None:
    assert json.loads(_failed().to_json()) == {
        "schemaVersion": 1,
        "id": "0123abcd",
        "type": "AnalysisFailed",
        "time": "2025-06-01T12:00:00.123Z",
        "inferenceService": {"namespace": "prod", "name": "resnet"},
        "stableRevision": "resnet-7d9f",
        "canaryRevision": "resnet-5c2a",
        "canaryWeight": 10,
        "phase": "Progressing",
        "message": "error ratio 3.40% (max 1.00%)",
        "analysis": {"verdict": "Failed", "errorRatio": 0.034, "p99LatencyMs": 812.5, "requests": 1200},
    }


def test_analysis_is_left_out_when_there_is_none_and_unknowns_are_null() -> None:
    body = json.loads(Notification(EventType.ROLLOUT_STARTED, "ns", "m", "rollout of m-1 started", time=T).to_json())
    assert "analysis" not in body
    assert body["stableRevision"] is None and body["canaryRevision"] is None and body["phase"] is None
    assert body["canaryWeight"] == 0


def test_time_is_utc_whatever_zone_it_was_given_in() -> None:
    cest = datetime.timezone(datetime.timedelta(hours=2))
    n = Notification(EventType.PROMOTED, "ns", "m", "", time=datetime.datetime(2025, 6, 1, 14, 0, tzinfo=cest))
    assert json.loads(n.to_json())["time"] == "2025-06-01T12:00:00.000Z"
    with pytest.raises(ValueError, match="timezone"):
        Notification(EventType.PROMOTED, "ns", "m", "", time=datetime.datetime(2025, 6, 1)).to_json()


def test_each_event_gets_its_own_id_and_a_current_time() -> None:
    a, b = (Notification(EventType.ROLLED_BACK, "ns", "m", "") for _ in range(2))
    assert a.id != b.id
    assert abs((a.time - datetime.datetime.now(tz=datetime.UTC)).total_seconds()) < 5


def test_event_type_names() -> None:
    assert [str(t) for t in EventType] == [
        "RolloutStarted", "CanaryStarted", "AnalysisFailed", "Promoted", "RolledBack", "DeadlineExceeded",
    ]
    with pytest.raises(ValueError):
        Notification("Exploded", "ns", "m", "").to_json()  # type: ignore[arg-type]


def test_body_is_compact_utf8() -> None:
    body = Notification(EventType.PROMOTED, "ns", "m", "größer", time=T).to_json()
    assert "größer".encode() in body and b": " not in body


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = _failed().to_json()
    expected = hmac.new(b"s3cret", b"1748779200." + body, hashlib.sha256).hexdigest()
    assert sign(b"s3cret", 1748779200, body) == f"sha256={expected}"


def test_headers_with_and_without_a_secret() -> None:
    n, body = _failed(), _failed().to_json()
    signed = request_headers(n, body, b"s3cret", 1748779200)
    assert signed["Content-Type"] == "application/json"
    assert signed[EVENT_HEADER] == "AnalysisFailed"
    assert signed[TIMESTAMP_HEADER] == "1748779200"
    assert signed[SIGNATURE_HEADER] == sign(b"s3cret", 1748779200, body)
    assert SIGNATURE_HEADER not in request_headers(n, body, None, 1748779200)


def test_verify_signature() -> None:
    body, ts = _failed().to_json(), 1748779200
    header = sign(b"s3cret", ts, body)
    assert verify_signature(b"s3cret", ts, body, header, now=ts)
    assert verify_signature(b"s3cret", str(ts), body, header, now=ts + 299)
    assert not verify_signature(b"wrong", ts, body, header, now=ts)
    assert not verify_signature(b"s3cret", ts, body + b" ", header, now=ts)
    assert not verify_signature(b"s3cret", ts + 1, body, header, now=ts)
    assert not verify_signature(b"s3cret", ts, body, header.upper(), now=ts)
    assert not verify_signature(b"s3cret", ts, body, header.removeprefix("sha256="), now=ts)
    assert not verify_signature(b"s3cret", "soon", body, header, now=ts)
    assert not verify_signature(b"s3cret", ts, body, "sha256=ü", now=ts)


def test_an_old_timestamp_is_a_replay() -> None:
    body, ts = _failed().to_json(), 1748779200
    header = sign(b"s3cret", ts, body)
    assert not verify_signature(b"s3cret", ts, body, header, now=ts + 301)
    assert not verify_signature(b"s3cret", ts, body, header, now=ts - 301)
    assert verify_signature(b"s3cret", ts, body, header, now=ts + 10_000, max_age_s=None)


def test_redact_keeps_only_scheme_and_host() -> None:
    assert redact("https://hooks.slack.com/services/T000/B000/XXXX?token=1") == "https://hooks.slack.com"
    assert redact("http://127.0.0.1:8080/hook") == "http://127.0.0.1:8080"


def test_retry_after() -> None:
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("") is None
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Sun, 01 Jun 2025 12:00:30 GMT", now=T.replace(microsecond=0).timestamp()) == 30.0
    assert retry_after_seconds("Sun, 01 Jun 2025 11:00:00 GMT", now=T.timestamp()) == 0.0
    assert retry_after_seconds("later") is None
