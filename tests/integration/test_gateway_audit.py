"""The audit log: one JSON record per metadata/inference call on stdout (and a file), never a key or a body.

The gateway runs in this test's loop (tests/support/gateway_inproc.py); stdout is pytest's capture.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

from tests.integration.test_gateway_api_keys import SecretDir
from tests.support.gateway_inproc import INFER_BODY, serving
from tritium.dataplane.security.apikeys import entry, new_key
from tritium.dataplane.security.layers import SecuritySettings

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
