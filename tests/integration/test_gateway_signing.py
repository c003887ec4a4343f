"""Signed responses: X-Tritium-Signature verifies with tritium.client.verify_response, a tampered
body or request id does not, health is unsigned, the key rotates live, no key: no start."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.support.gateway_inproc import INFER_BODY, serving
from tritium.client import verify_response
from tritium.client.signing import SIGNATURE_HEADER, response_signature
from tritium.dataplane.security.layers import SecuritySettings
from tritium.dataplane.security.signing import Signer

KEY = b"k" * 40
SIGNING = {"signResponses": True, "signingKeySecretRef": {"name": "sig", "key": "hmac"}}
JSON = {"Content-Type": "application/json"}


def _key_file(tmp_path: Path, key: bytes = KEY) -> Path:
    path = tmp_path / "hmac"
    path.write_bytes(key + b"\n")  # a trailing newline, as `kubectl create secret --from-file` keeps it
    return path


async def test_answers_are_signed_and_verify(tmp_path: Path) -> None:
    path = _key_file(tmp_path)
    async with serving(tmp_path, SIGNING, SecuritySettings(signing_key_file=str(path))) as (url, _), \
            httpx.AsyncClient() as client:
        ok = await client.post(f"{url}/v2/models/add/infer", content=INFER_BODY,
                               headers={**JSON, "X-Request-Id": "r-1"})
        assert ok.status_code == 200
        assert ok.headers[SIGNATURE_HEADER].startswith("v1=")
        assert verify_response(KEY, ok.content, ok.headers)
        assert verify_response(KEY.decode(), ok.content, dict(ok.headers))  # str key, plain dict headers
        assert not verify_response(KEY, ok.content.replace(b"4", b"5"), ok.headers)  # tampered body
        assert not verify_response(KEY, ok.content, ok.headers, request_id="r-2")  # another request's id
        assert not verify_response(b"x" * 40, ok.content, ok.headers)  # another key
        assert not verify_response(KEY, ok.content, {"X-Request-Id": "r-1"})  # unsigned is not verified
        meta = await client.get(f"{url}/v2/models/add")
        assert verify_response(KEY, meta.content, meta.headers)  # generated request ids are signed too
        missing = await client.get(f"{url}/v2/models/nope")
        assert missing.status_code == 404 and verify_response(KEY, missing.content, missing.headers)  # errors too
        live = await client.get(f"{url}/v2/health/live")
        assert SIGNATURE_HEADER not in live.headers  # probes are not signed

        path.write_bytes(b"n" * 32)  # rotation: the gateway re-reads the file every second
        for _ in range(60):
            again = await client.get(f"{url}/v2/models/add")
            if verify_response(b"n" * 32, again.content, again.headers):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the new signing key was not picked up")


def test_the_signature_is_over_request_id_newline_body() -> None:
    import hashlib
    import hmac
    expected = "v1=" + hmac.new(KEY, b"rid\n{}", hashlib.sha256).hexdigest()
    assert response_signature(KEY, "rid", b"{}") == expected
    # The separator keeps (id, body) pairs apart: ("ab", "c") and ("a", "bc") sign differently.
    assert response_signature(KEY, "ab", b"c") != response_signature(KEY, "a", b"bc")


def test_no_key_or_a_short_one_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="TRITIUM_SIGNING_KEY_FILE"):
        Signer(None)
    with pytest.raises(ValueError, match="fewer than 32"):
        Signer(str(_key_file(tmp_path, b"short")))
    with pytest.raises(ValueError, match="signing key"):
        Signer(str(tmp_path / "missing"))
    signer = Signer(str(_key_file(tmp_path)))
    (tmp_path / "hmac").write_bytes(b"short")
    signer.poll()
    assert signer.key == KEY  # a bad edit keeps the last good key
