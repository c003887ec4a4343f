"""Checks a spec must pass beyond the CRD schema, and the objects it refers to.

The schema cannot know which storage schemes the fetcher speaks or whether a CIDR parses; these
checks can. A failure becomes Ready=False/InvalidSpec with the field named, and the operator then
leaves every running child untouched: what serves keeps serving.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from tritium.api.resource import InferenceService, SpecError
from tritium.api.spec import AutoscalingSpec, SecuritySpec
from tritium.api.support import check_supported

STORAGE_SCHEMES = ("s3", "gs", "http", "https", "file", "pvc")


@dataclass(frozen=True)
class Reference:
    """An object in the service's namespace the pods need: its absence is an InvalidSpec."""

    kind: str  # "Secret" or "ConfigMap"
    name: str
    key: str  # "" when the whole object is used
    field: str  # spec path that names it
    # The optional child kind that writes it, when one does (a Certificate writes the TLS Secret):
    # then its absence only means not yet issued, while the cluster serves that kind.
    issued_by: str | None = None


def storage_scheme(uri: str) -> str:
    """The scheme of a storageUri; a bare absolute path counts as a mounted volume (file)."""
    if uri.startswith("/"):
        return "file"
    return urlparse(uri).scheme.lower()


def check_storage_uri(uri: str, field: str = "spec.model.storageUri") -> None:
    scheme = storage_scheme(uri)
    if scheme not in STORAGE_SCHEMES:
        raise SpecError(
            field, f"unsupported scheme {scheme + '://' if scheme else '(none)'} in {uri!r}; "
            f"use one of {', '.join(s + '://' for s in STORAGE_SCHEMES)}"
        )
    parsed = urlparse(uri)
    if scheme in {"s3", "gs", "http", "https", "pvc"} and not parsed.netloc:
        what = "claim name" if scheme == "pvc" else "bucket or host"
        raise SpecError(field, f"{uri!r} has no {what}")


def _check_cidrs(values: list[str] | None, field: str) -> None:
    for i, value in enumerate(values or []):
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise SpecError(f"{field}[{i}]", f"{value!r} is not an IP address or CIDR") from None


def check_spec(isvc: InferenceService) -> None:
    """Raise SpecError for the first problem the schema could not catch, or a field that does
    nothing yet (api/support.py)."""
    check_values(isvc)
    check_supported(isvc)


# The target field of each metric that has one of its own (targetUtilization is cpu's and gpu's).
_OWN_TARGET = {"rps": "targetRequestsPerSecond", "queueTime": "targetQueueTimeMs", "pending": "targetPendingRequests"}


def _check_scaling_target(scaling: AutoscalingSpec) -> None:
    """targetUtilization away from its default is refused for a metric that does not read it. (The
    API server writes the default into every stored object, so only a changed value can be told.)"""
    own = _OWN_TARGET.get(scaling.metric)
    default = AutoscalingSpec.model_fields["target_utilization"].default
    if own is not None and scaling.target_utilization != default:
        raise SpecError("spec.autoscaling.targetUtilization", f"is the target of metrics cpu and gpu only; metric "
                        f"{scaling.metric} scales at {own}")


def _reads_client_address(security: SecuritySpec) -> bool:
    """Whether a layer uses the client address that trustedProxies resolves: the allowlist, a rate
    limit counted per address (per=clientAddress, or per=key without API keys), or the audit log."""
    limit = security.rate_limit
    per_address = limit is not None and (limit.per == "clientAddress" or security.api_keys_secret_ref is None)
    return bool(security.ip_allowlist) or per_address or security.audit.enabled


def check_values(isvc: InferenceService) -> None:
    """Raise SpecError for the first value the schema could not judge (schemes, CIDRs, outputs)."""
    spec = isvc.spec
    if spec.autoscaling.enabled and spec.replicas is not None:
        raise SpecError("spec.replicas", "the HorizontalPodAutoscaler sets the replica count while "
                        "autoscaling.enabled is true; set autoscaling.enabled: false to scale by hand")
    if not spec.rollout.surge:
        if spec.autoscaling.enabled:
            raise SpecError("spec.rollout.surge", "surge false needs autoscaling.enabled: false (an autoscaler "
                            "would give the stable revision back the pods its canary takes)")
        # Without autoscaling the pods are spec.replicas, else minReplicas (render.deployment.replicas_of).
        pods = spec.replicas if spec.replicas is not None else spec.autoscaling.min_replicas
        if pods < 2:
            raise SpecError("spec.rollout.surge", "surge false needs 2 or more pods (replicas, or "
                            "autoscaling.minReplicas when replicas is unset): the canary takes a pod from the "
                            "stable revision, which must keep one to serve")
    check_storage_uri(spec.model.storage_uri)
    if spec.model.sha256 and spec.model.storage_uri.endswith("/"):
        raise SpecError("spec.model.sha256", "checks a single-file model archive, but storageUri ends with '/' (a "
                        "directory or prefix): remove sha256, or point storageUri at the archive")
    if spec.preprocess is not None and spec.preprocess.input_schema:
        _check_json_schema(spec.preprocess.input_schema)
    _check_scaling_target(spec.autoscaling)
    if spec.monitoring.alerts and not spec.monitoring.service_monitor:
        raise SpecError("spec.monitoring.alerts", "needs monitoring.serviceMonitor: true (the rules read the series "
                        "its PodMonitor scrapes and labels with inferenceservice and revision: without it no "
                        "alert could ever fire)")
    _check_cidrs(spec.security.ip_allowlist, "spec.security.ipAllowlist")
    _check_cidrs(spec.security.trusted_proxies, "spec.security.trustedProxies")
    if spec.security.trusted_proxies and not _reads_client_address(spec.security):
        raise SpecError("spec.security.trustedProxies", "needs ipAllowlist, a rateLimit per client address or "
                        "audit.enabled: true (nothing reads the client address without them)")
    if spec.security.sign_responses and spec.security.signing_key_secret_ref is None:
        raise SpecError("spec.security.signingKeySecretRef", "signResponses needs the Secret key to sign with")
    if spec.security.signing_key_secret_ref is not None and not spec.security.sign_responses:
        raise SpecError("spec.security.signingKeySecretRef", "needs signResponses: true (nothing is signed without it)")
    if spec.security.redact_responses and not spec.security.redact_pii:
        raise SpecError("spec.security.redactResponses", "needs redactPII: true (the patterns it applies)")
    for i, pattern in enumerate(spec.security.redact_patterns or []):
        if not spec.security.redact_pii:
            raise SpecError("spec.security.redactPatterns", "needs redactPII: true (nothing is redacted without it)")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise SpecError(f"spec.security.redactPatterns[{i}]", f"{pattern!r} is not a regular expression: "
                            f"{exc}") from None
    if spec.security.audit.file and not spec.security.audit.enabled:
        raise SpecError("spec.security.audit.file", "needs audit.enabled: true (no record is written without it)")
    post = spec.postprocess
    if post and post.builtin and post.builtin.top_k and spec.model.outputs:
        names = {o.name for o in spec.model.outputs}
        if post.builtin.top_k.output not in names:
            raise SpecError(
                "spec.postprocess.builtin.topK.output",
                f"{post.builtin.top_k.output!r} is not one of the model outputs {sorted(names)}",
            )


def _check_json_schema(schema: dict[str, Any]) -> None:
    """The pre stage validates inputs against this schema (Draft 2020-12, as the stage does); one it
    cannot use would stop the stage at start, so its pods would never be Ready."""
    import jsonschema  # imported only for a spec with an inputSchema (about 3 MB of the operator's memory)

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.path)
        raise SpecError(f"spec.preprocess.inputSchema{where}", f"not a valid JSON Schema: {exc.message}") from None


def references(isvc: InferenceService) -> list[Reference]:
    """Every Secret/ConfigMap key the pods of this service will mount or read."""
    spec = isvc.spec
    refs: list[Reference] = []
    for stage_name, stage in (("preprocess", spec.preprocess), ("postprocess", spec.postprocess)):
        if stage and stage.script and stage.script.config_map_ref:
            ref = stage.script.config_map_ref
            refs.append(Reference("ConfigMap", ref.name, ref.key, f"spec.{stage_name}.script.configMapRef"))
    if spec.model.storage_secret_name:
        refs.append(Reference("Secret", spec.model.storage_secret_name, "", "spec.model.storageSecretName"))
    sec = spec.security
    if sec.api_keys_secret_ref:
        refs.append(
            Reference("Secret", sec.api_keys_secret_ref.name, sec.api_keys_secret_ref.key,
                      "spec.security.apiKeysSecretRef")
        )
    if sec.tls:
        refs.append(Reference("Secret", sec.tls.secret_name, "tls.crt", "spec.security.tls.secretName",
                              issued_by="Certificate" if sec.tls.cert_manager else None))
    if sec.signing_key_secret_ref:
        refs.append(Reference("Secret", sec.signing_key_secret_ref.name, sec.signing_key_secret_ref.key,
                              "spec.security.signingKeySecretRef"))
    if spec.gateway.cache.enabled and spec.gateway.cache.redis:
        ref = spec.gateway.cache.redis.url_secret_ref
        refs.append(Reference("Secret", ref.name, ref.key, "spec.gateway.cache.redis.urlSecretRef"))
    if spec.monitoring.webhook and spec.monitoring.webhook.secret_ref:
        ref = spec.monitoring.webhook.secret_ref
        refs.append(Reference("Secret", ref.name, ref.key, "spec.monitoring.webhook.secretRef"))
    if spec.monitoring.webhook and spec.monitoring.webhook.signing_secret_ref:
        ref = spec.monitoring.webhook.signing_secret_ref
        refs.append(Reference("Secret", ref.name, ref.key, "spec.monitoring.webhook.signingSecretRef"))
    return refs
