"""`tritium up --secrets DIR`: Secret NAME's key KEY is DIR/NAME/KEY, as the pod mounts it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.specs import manifest
from tritium.api.resource import parse_inference_service
from tritium.cli import UsageError
from tritium.local.secrets import secret_environment

KEYS = {"apiKeysSecretRef": {"name": "gw-keys", "key": "keys"}}


def _isvc(spec: dict[str, Any]) -> Any:
    return parse_inference_service(manifest(spec))


def test_the_key_file_is_read_in_place(tmp_path: Path) -> None:
    (tmp_path / "gw-keys").mkdir()
    (tmp_path / "gw-keys" / "keys").write_text("a:" + "0" * 64 + "\n")
    env = secret_environment(_isvc({"security": KEYS}), str(tmp_path))
    # The path, not a copy: editing the file rotates keys in the running gateway, as in a pod.
    assert env == {"TRITIUM_API_KEYS_FILE": str(tmp_path.resolve() / "gw-keys" / "keys")}


def test_values_a_pod_takes_into_its_environment(tmp_path: Path) -> None:
    for name, key, value in (("limits", "url", "redis://127.0.0.1:6379/1\n"), ("cache", "url", "redis://127.0.0.1/2"),
                             ("s3", "AWS_ACCESS_KEY_ID", "AKIA"), ("s3", "AWS_SECRET_ACCESS_KEY", "shh")):
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / key).write_text(value)
    spec = {
        "model": {"storageSecretName": "s3"},
        "security": {"rateLimit": {"requestsPerSecond": 5,
                                   "redis": {"urlSecretRef": {"name": "limits", "key": "url"}}}},
        "gateway": {"cache": {"enabled": True, "redis": {"urlSecretRef": {"name": "cache", "key": "url"}}}},
    }
    env = secret_environment(_isvc(spec), str(tmp_path))
    assert env == {"TRITIUM_RATELIMIT_REDIS_URL": "redis://127.0.0.1:6379/1", "TRITIUM_REDIS_URL": "redis://127.0.0.1/2",
                   "AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "shh"}


def test_a_spec_without_secrets_needs_no_dir() -> None:
    assert secret_environment(_isvc({}), None) == {}


@pytest.mark.parametrize(("make", "message"), [
    (False, "pass --secrets DIR with the file DIR/gw-keys/keys"),
    (True, "gw-keys/keys is missing"),
])
def test_keys_that_cannot_be_found_are_a_usage_error(tmp_path: Path, make: bool, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        secret_environment(_isvc({"security": KEYS}), str(tmp_path) if make else None)


def test_up_refuses_to_serve_without_its_keys(tmp_path: Path) -> None:
    """Never an unprotected gateway: `tritium up` stops with exit code 2 before starting anything."""
    path = tmp_path / "isvc.yaml"
    path.write_text(yaml.safe_dump(manifest({"security": KEYS})))
    out = subprocess.run([sys.executable, "-m", "tritium.cli", "up", "-f", str(path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2, out.stderr
    assert "--secrets" in out.stderr


def test_the_tls_secret_is_read_in_place(tmp_path: Path) -> None:
    (tmp_path / "gw-tls").mkdir()
    for key in ("tls.crt", "tls.key"):
        (tmp_path / "gw-tls" / key).write_text("PEM\n")
    env = secret_environment(_isvc({"security": {"tls": {"secretName": "gw-tls", "minVersion": "1.3"}}}),
                             str(tmp_path))
    # The paths the gateway polls, as in a pod: replacing the files renews the certificate live.
    assert env == {"TRITIUM_TLS_CERT_FILE": str(tmp_path.resolve() / "gw-tls" / "tls.crt"),
                   "TRITIUM_TLS_KEY_FILE": str(tmp_path.resolve() / "gw-tls" / "tls.key"),
                   "TRITIUM_TLS_MIN_VERSION": "1.3"}


@pytest.mark.parametrize(("files", "message"), [
    (None, "pass --secrets DIR with the file DIR/gw-tls/tls.crt"),
    (("tls.crt",), "gw-tls/tls.key is missing"),
])
def test_a_tls_secret_that_cannot_be_found_is_a_usage_error(tmp_path: Path, files: tuple[str, ...] | None,
                                                             message: str) -> None:
    if files is not None:
        (tmp_path / "gw-tls").mkdir()
        for key in files:
            (tmp_path / "gw-tls" / key).write_text("PEM\n")
    with pytest.raises(UsageError, match=message):
        secret_environment(_isvc({"security": {"tls": {"secretName": "gw-tls"}}}),
                           str(tmp_path) if files is not None else None)


def test_the_signing_key_is_read_in_place(tmp_path: Path) -> None:
    (tmp_path / "sig").mkdir()
    (tmp_path / "sig" / "hmac").write_text("k" * 32)
    spec = {"security": {"signResponses": True, "signingKeySecretRef": {"name": "sig", "key": "hmac"}}}
    env = secret_environment(_isvc(spec), str(tmp_path))
    assert env == {"TRITIUM_SIGNING_KEY_FILE": str(tmp_path.resolve() / "sig" / "hmac")}
    with pytest.raises(UsageError, match="signingKeySecretRef"):
        secret_environment(_isvc(spec), None)


CACHE_REDIS = {"gateway": {"cache": {"enabled": True, "redis": {"urlSecretRef": {"name": "cache", "key": "url"}}}}}


@pytest.mark.parametrize("make", [False, True])
def test_a_cache_redis_that_cannot_be_found_is_a_usage_error(tmp_path: Path, make: bool) -> None:
    """Not a quiet in-memory cache instead of the spec's Redis: the same error as the limiter's Redis."""
    with pytest.raises(UsageError) as err:
        secret_environment(_isvc(CACHE_REDIS), str(tmp_path) if make else None)
    message = str(err.value)
    assert message.startswith("spec.gateway.cache.redis.urlSecretRef") and "\n" not in message
    assert ("cache/url is missing" if make else "pass --secrets DIR with the file DIR/cache/url") in message
