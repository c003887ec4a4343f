"""Strict validation of Kubernetes manifests against the official schemas (kubernetes-validate).

Without an API server, this is how a rendered manifest meets the real API: the schemas published
for each Kubernetes version, in strict mode (unknown fields are errors, as with `kubectl apply`'s
default strict field validation). A kind without a schema is an error too, so that a new child
kind cannot slip through unvalidated; kinds defined by other projects' CRDs must be allow-listed
explicitly, and Tritium's own InferenceService is validated against the generated CRD instead.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from functools import cache
from typing import Any

import kubernetes_validate

from tests.support.crd_structural import schema_errors

# A recent release; kubernetes-validate ships schemas for 1.25 to 1.37.
DEFAULT_VERSION = "1.35.0"

# Kinds from other projects' CRDs: kubernetes-validate has no schema for them.
NO_SCHEMA_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PodMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
        ("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig"),
        ("gateway.networking.k8s.io/v1", "HTTPRoute"),
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("cert-manager.io/v1", "Certificate"),
    }
)


class ManifestInvalid(AssertionError):
    """A manifest the API server would refuse (or one no schema could check)."""


def describe(obj: dict[str, Any]) -> str:
    """``Kind/name`` for messages."""
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


@cache
def _tritium_crd_schema() -> dict[str, Any]:
    from tritium.api.crd import build_crd

    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def validate_strict(
    obj: dict[str, Any],
    version: str = DEFAULT_VERSION,
    *,
    allow_without_schema: Collection[tuple[str, str]] = NO_SCHEMA_ALLOWED,
) -> str | None:
    """Validate one manifest strictly; raise ManifestInvalid naming the object, field and problem.

    Returns the Kubernetes minor version the schema came from ("1.35"), "crd" for an
    InferenceService (checked against the generated CRD) or None for an allow-listed kind.
    """
    if not isinstance(obj, dict) or not obj.get("apiVersion") or not obj.get("kind"):
        raise ManifestInvalid(f"not a Kubernetes object (apiVersion and kind are required): {obj!r:.200}")
    from tritium.api.resource import API_VERSION, KIND

    if (obj["apiVersion"], obj["kind"]) == (API_VERSION, KIND):
        errors = schema_errors(obj, _tritium_crd_schema(), strict=True)
        if errors:
            raise ManifestInvalid(f"{describe(obj)} does not match the InferenceService CRD: {errors[0]}")
        return "crd"
    try:
        return kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path) or "(root)"
        raise ManifestInvalid(
            f"{describe(obj)} is invalid for Kubernetes {exc.version}: {path}: {exc.message}"
        ) from None
    except kubernetes_validate.SchemaNotFoundError as exc:
        if (obj["apiVersion"], obj["kind"]) in allow_without_schema:
            return None
        raise ManifestInvalid(f"{describe(obj)}: {exc.message}, and the kind is not allow-listed") from None


def validate_all_strict(objs: Iterable[dict[str, Any]], version: str = DEFAULT_VERSION) -> list[str | None]:
    """validate_strict for each object, in order."""
    return [validate_strict(o, version) for o in objs]
