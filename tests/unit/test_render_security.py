"""The gateway's security wiring in the pod: the keys mounted where TRITIUM_API_KEYS_FILE points,
the limiter's Redis URL from its Secret."""

from __future__ import annotations

from tests.support.specs import manifest
from tritium import pod_layout as L
from tritium.api.resource import parse_inference_service
from tritium.render import render_children


def _gateway(security: dict) -> dict:
    children = render_children(parse_inference_service(manifest({"security": security})))
    deployment = next(c for c in children if c["kind"] == "Deployment")
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == L.GATEWAY_CONTAINER)


def test_keys_file_is_mounted_where_the_env_points() -> None:
    gateway = _gateway({"apiKeysSecretRef": {"name": "keys", "key": "hashes"}})
    env = {e["name"]: e.get("value") for e in gateway["env"]}
    mount = next(m for m in gateway["volumeMounts"] if m["name"] == "api-keys")
    assert env["TRITIUM_API_KEYS_FILE"] == f"{mount['mountPath']}/hashes"
    assert mount["readOnly"] is True


def test_rate_limit_redis_url_comes_from_its_secret() -> None:
    ref = {"name": "limits", "key": "url"}
    gateway = _gateway({"rateLimit": {"requestsPerSecond": 10, "redis": {"urlSecretRef": ref}}})
    assert {"name": "TRITIUM_RATELIMIT_REDIS_URL", "valueFrom": {"secretKeyRef": ref}} in gateway["env"]


def test_in_memory_limits_and_allowlists_need_no_env() -> None:
    gateway = _gateway({"rateLimit": {"requestsPerSecond": 10}, "ipAllowlist": ["10.0.0.0/8"]})
    assert "env" not in gateway


def test_signing_key_is_mounted_where_the_env_points() -> None:
    gateway = _gateway({"signResponses": True, "signingKeySecretRef": {"name": "sig", "key": "hmac"}})
    env = {e["name"]: e.get("value") for e in gateway["env"]}
    mount = next(m for m in gateway["volumeMounts"] if m["name"] == "signing")
    assert env["TRITIUM_SIGNING_KEY_FILE"] == f"{mount['mountPath']}/hmac"
    assert mount["readOnly"] is True
