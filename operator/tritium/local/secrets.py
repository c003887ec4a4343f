"""Secrets in local mode: ``tritium up --secrets DIR`` reads Secret NAME's key KEY from DIR/NAME/KEY.

That is the layout a pod's Secret volume has, so the gateway reads its key file exactly as in a
pod (the same path variable, the same polling: editing DIR/NAME/KEY rotates keys live), and
values a pod takes from a Secret into its environment are read from those files here.
"""

from __future__ import annotations

from pathlib import Path

from tritium.api.resource import InferenceService
from tritium.api.spec import SecretKeyRef
from tritium.cli import UsageError
from tritium.dataplane.gateway import REDIS_URL_ENV
from tritium.dataplane.security.layers import API_KEYS_FILE_ENV, RATELIMIT_REDIS_URL_ENV
from tritium.dataplane.security.signing import SIGNING_KEY_FILE_ENV
from tritium.dataplane.security.tls import CERT_FILE_ENV, KEY_FILE_ENV, MIN_VERSION_ENV


def _path(ref: SecretKeyRef, secrets_dir: Path | None, field: str) -> Path:
    if secrets_dir is None:
        raise UsageError(f"{field} names Secret {ref.name!r}: pass --secrets DIR with the file "
                         f"DIR/{ref.name}/{ref.key}")
    path = secrets_dir / ref.name / ref.key
    if not path.is_file():
        raise UsageError(f"{field}: {path} is missing (Secret {ref.name!r}, key {ref.key!r})")
    return path


def _value(ref: SecretKeyRef, secrets_dir: Path | None, field: str) -> str:
    return _path(ref, secrets_dir, field).read_text(encoding="utf-8").strip()


def secret_environment(isvc: InferenceService, secrets_dir: str | None) -> dict[str, str]:
    """The variables the pod's containers get from the Secrets the spec names, from ``secrets_dir``.

    A Secret the gateway needs and cannot find is a usage error: starting without it would serve
    an unprotected gateway (API keys), a process that refuses to start (the limiter's Redis, the
    TLS certificate) or a cache other than the spec's (the response cache's Redis: in memory).
    """
    base = Path(secrets_dir).resolve() if secrets_dir else None
    if base is not None and not base.is_dir():
        raise UsageError(f"--secrets {secrets_dir}: not a directory")
    spec = isvc.spec
    env: dict[str, str] = {}
    sec = spec.security
    if sec.api_keys_secret_ref:
        env[API_KEYS_FILE_ENV] = str(_path(sec.api_keys_secret_ref, base, "spec.security.apiKeysSecretRef"))
    if sec.sign_responses and sec.signing_key_secret_ref:  # the path: editing it changes the key live
        env[SIGNING_KEY_FILE_ENV] = str(_path(sec.signing_key_secret_ref, base, "spec.security.signingKeySecretRef"))
    if sec.tls:
        # The paths, as for the keys: replacing DIR/NAME/tls.crt and tls.key renews the certificate
        # in the running gateway, as kubelet's swap of the mounted Secret does in a pod.
        for key, variable in (("tls.crt", CERT_FILE_ENV), ("tls.key", KEY_FILE_ENV)):
            ref = SecretKeyRef(name=sec.tls.secret_name, key=key)
            env[variable] = str(_path(ref, base, "spec.security.tls.secretName"))
        env[MIN_VERSION_ENV] = sec.tls.min_version
    if sec.rate_limit and sec.rate_limit.redis:
        env[RATELIMIT_REDIS_URL_ENV] = _value(sec.rate_limit.redis.url_secret_ref, base,
                                              "spec.security.rateLimit.redis.urlSecretRef")
    if spec.gateway.cache.enabled and spec.gateway.cache.redis:  # else the gateway would cache in memory instead
        env[REDIS_URL_ENV] = _value(spec.gateway.cache.redis.url_secret_ref, base,
                                    "spec.gateway.cache.redis.urlSecretRef")
    storage = spec.model.storage_secret_name
    if storage and base is not None and (base / storage).is_dir():
        # envFrom: every key of the Secret becomes a variable of the same name (the fetcher's credentials).
        for item in sorted((base / storage).iterdir()):
            if item.is_file() and not item.name.startswith("."):
                env[item.name] = item.read_text(encoding="utf-8").strip()
    return env
