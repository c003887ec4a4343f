"""The audit log: one JSON record per metadata/inference call on stdout (and a file), never a key or a body.

The gateway runs in this test's loop (tests/support/gateway_inproc.py); stdout is pytest's capture.
The response cache's hit and miss are checked with a real gateway process in front of the real
Triton (tests/support/dataplane.py's deploy, as in test_cache.py): the stand-in Triton answers only
the pass-through path, which a cached service does not take.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

from tests.integration.test_gateway_api_keys import SecretDir
from tests.support.dataplane import base_spec, deploy
from tests.support.gateway_inproc import INFER_BODY, serving
from tritium.dataplane.security.apikeys import entry, new_key
from tritium.dataplane.security.layers import SecuritySettings
from tritium.local.tritonserver import TritonServer

JSON = {"Content-Type": "application/json"}


def _records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_one_record_per_call_with_its_fields_and_no_secret(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    secret = SecretDir(tmp_path)
    key = new_key()
    secret.write(entry("alice", key) + "\n")
    audit_file = tmp_path / "audit.log"
    security = {"apiKeysSecretRef": {"name": "keys", "key": "keys"}, "trustedProxies": ["127.0.0.1/32"],
                "audit": {"enabled": True, "file": str(audit_file)}}
    async with serving(tmp_path, security, SecuritySettings(api_keys_file=str(secret.path))) as (url, gateway), \
            httpx.AsyncClient() as client:
        capsys.readouterr()  # anything before the first call
        auth = {"Authorization": f"Bearer {key}", "X-Forwarded-For": "203.0.113.7", "X-Request-Id": "req-1"}
        ok = await client.post(f"{url}/v2/models/add/versions/1/infer", content=INFER_BODY, headers={**JSON, **auth})
        assert ok.status_code == 200, ok.text
        meta = await client.get(f"{url}/v2/models/add", headers={"X-API-Key": key, "X-Request-Id": "req-2"})
        assert meta.status_code == 200
        denied = await client.get(f"{url}/v2/models/add", headers={"Authorization": "Bearer not-a-key"})
        assert denied.status_code == 401
        assert (await client.get(f"{url}/v2/health/live")).status_code == 200  # probes are not audited
        metrics = generate_latest(gateway.metrics.registry).decode()
    out = capsys.readouterr().out
    records = _records(out)
    assert len(records) == 3, out
    infer, metadata, refused = records
    assert infer["request_id"] == "req-1" and infer["key_id"] == "alice" and infer["client"] == "203.0.113.7"
    assert (infer["endpoint"], infer["model"], infer["version"], infer["revision"]) == ("infer", "add", "1", "r1")
    assert infer["status"] == 200 and infer["latency_ms"] > 0
    assert infer["cache"] is None  # no response cache here: neither hit nor miss
    assert infer["request_sha256"] == hashlib.sha256(INFER_BODY).hexdigest()
    assert infer["time"].endswith("Z")
    assert metadata["request_id"] == "req-2" and metadata["endpoint"] == "metadata"
    assert metadata["request_sha256"] is None
    assert refused["status"] == 401 and refused["key_id"] is None and refused["client"] == "127.0.0.1"
    for secret_text in (key, "not-a-key", "Bearer", '"data"'):
        assert secret_text not in out  # keys, Authorization values and the body never reach the log
    assert _records(audit_file.read_text()) == records  # the file has the same records
    assert 'tritium_gateway_key_received_bytes_total{key="alice"} ' + f"{float(len(INFER_BODY))}" in metrics
    assert 'tritium_gateway_key_sent_bytes_total{key="alice"} ' + f"{float(len(ok.content) + len(meta.content))}" \
        in metrics
    assert 'tritium_gateway_key_inference_seconds_total{key="alice"}' in metrics
    assert 'tritium_gateway_key_requests_total{code="200",endpoint="infer",key="alice"} 1.0' in metrics


def _wait_records(path: Path, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The records of ``path`` once it holds ``count`` (they are written in batches, soon after each call)."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        if len(text.splitlines()) >= count or time.monotonic() >= deadline:
            return _records(text)
        time.sleep(0.05)


def test_records_say_whether_the_response_cache_hit(triton: TritonServer, tmp_path: Path) -> None:
    audit_file = tmp_path / "audit.log"
    spec = base_spec("add", gateway={"cache": {"enabled": True, "ttlSeconds": 60, "maxEntries": 10}},
                     security={"audit": {"enabled": True, "file": str(audit_file)}})
    dep = deploy(tmp_path, triton, spec, name="auditcache")
    other_body = INFER_BODY.replace(b"[3,4]", b"[3,5]")
    assert other_body != INFER_BODY
    try:
        url = f"{dep.url}/v2/models/add/infer"
        answers = [httpx.post(url, content=body, headers={**JSON, "X-Request-Id": f"req-{i}"}, timeout=10)
                   for i, body in enumerate((INFER_BODY, INFER_BODY, other_body))]
        records = _wait_records(audit_file, 3)
    finally:
        dep.stop()
    for answer in answers:
        assert answer.status_code == 200, answer.text
    assert [a.headers["X-Tritium-Cache"] for a in answers] == ["miss", "hit", "miss"]
    assert len(records) == 3, records
    assert [r["request_id"] for r in records] == ["req-0", "req-1", "req-2"]
    assert [r["cache"] for r in records] == ["miss", "hit", "miss"]  # as the answers' X-Tritium-Cache said
    assert all(r["endpoint"] == "infer" and r["status"] == 200 and r["model"] == "add" for r in records)
    first, hit, other = records
    assert first["request_sha256"] == hit["request_sha256"] == hashlib.sha256(INFER_BODY).hexdigest()
    assert other["request_sha256"] == hashlib.sha256(other_body).hexdigest()


async def test_no_audit_when_disabled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with serving(tmp_path, {}) as (url, gateway), httpx.AsyncClient() as client:
        assert gateway.audit is None
        assert (await client.post(f"{url}/v2/models/add/infer", content=INFER_BODY, headers=JSON)).status_code == 200
    assert "request_sha256" not in capsys.readouterr().out


async def test_redaction_applies_to_audit_records_and_the_log(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             caplog: pytest.LogCaptureFixture) -> None:
    import logging
    security = {"audit": {"enabled": True}, "redactPII": True, "redactPatterns": [r"secret-\d+"]}
    async with serving(tmp_path, security) as (url, _), httpx.AsyncClient() as client:
        capsys.readouterr()
        rid = "eve@example.com-secret-42"
        assert (await client.get(f"{url}/v2/models/add", headers={"X-Request-Id": rid})).status_code == 200
        logging.getLogger("tritium.gateway").warning("client %s", "eve@example.com")
    out = capsys.readouterr().out  # the audit's last records are written by the gateway's shutdown at the latest
    assert _records(out)[0]["request_id"] == "[email]-[redacted]"
    assert _records(out)[0]["client"] == "[ip]"
    assert "client [email]" in caplog.text and "eve@example.com" not in caplog.text
