"""Every manifest Tritium produces, validated strictly against the official Kubernetes schemas.

The renderers build plain dicts, so a misspelt field or a wrong type would only show up when
kube-apiserver refuses the object. kubernetes-validate carries the published schemas of each
Kubernetes release; strict mode refuses unknown fields as `kubectl apply` does.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from tests.support.k8s_schema import DEFAULT_VERSION, NO_SCHEMA_ALLOWED, ManifestInvalid, validate_strict
from tests.support.specs import VARIANTS, example_paths, load_example, manifest, merge
from tritium.api.crd import build_crd
from tritium.api.resource import parse_inference_service
from tritium.render import render_children

SOURCES: dict[str, dict[str, Any]] = {
    **{p.name: load_example(p) for p in example_paths()},
    **{name: manifest(patch) for name, patch in VARIANTS.items()},
}
VERSIONS = sorted({DEFAULT_VERSION, kubernetes_validate.latest_version()})


def children_of(source: dict[str, Any]) -> list[dict[str, Any]]:
    return render_children(parse_inference_service(merge(source, {"metadata": {"uid": "0d3c-uid"}})))


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", list(SOURCES))
def test_rendered_children_are_valid(name: str, version: str) -> None:
    for child in children_of(SOURCES[name]):
        # Other projects' kinds (PodMonitor, PrometheusRule) are validated by a real API server
        # with their CRDs instead: tests/e2e/test_optional_crds.py.
        expected = None if (child["apiVersion"], child["kind"]) in NO_SCHEMA_ALLOWED else ".".join(
            version.split(".")[:2])
        assert validate_strict(child, version) == expected, child["kind"]


def test_variations_cover_the_optional_parts() -> None:
    """A guard on the guard: the variations really switch on what they are named after."""
    assert {"tls", "api-keys", "redis-cache", "pvc", "scripts"} <= set(SOURCES)
    assert len(example_paths()) >= 2


@pytest.mark.parametrize("name", list(SOURCES))
def test_inference_services_match_the_crd(name: str) -> None:
    assert validate_strict(SOURCES[name]) == "crd"


def test_the_crd_itself_is_a_valid_customresourcedefinition() -> None:
    assert validate_strict(build_crd()) is not None


# --- the helper itself ----------------------------------------------------------------------------


def _deployment() -> dict[str, Any]:
    (deployment,) = [c for c in children_of(manifest()) if c["kind"] == "Deployment"]
    return deployment


def test_unknown_field_is_an_error() -> None:
    bad = merge(_deployment(), {"spec": {"template": {"spec": {"containers": []}}}})
    bad["spec"]["template"]["spec"]["containers"] = [
        {"name": "x", "image": "x", "imagePullPolicy": "Always", "readinessprobe": {}}
    ]
    with pytest.raises(ManifestInvalid, match=r"Deployment/demo-.*readinessprobe"):
        validate_strict(bad)


def test_wrong_type_is_an_error() -> None:
    bad = merge(_deployment(), {"spec": {"replicas": "two"}})
    with pytest.raises(ManifestInvalid, match=r"spec\.replicas"):
        validate_strict(bad)


def test_kind_without_schema_fails_unless_allow_listed() -> None:
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "m"}}
    assert ("monitoring.coreos.com/v1", "ServiceMonitor") in NO_SCHEMA_ALLOWED
    assert validate_strict(monitor) is None
    with pytest.raises(ManifestInvalid, match="not allow-listed"):
        validate_strict(monitor, allow_without_schema=())
    with pytest.raises(ManifestInvalid, match="not allow-listed"):
        validate_strict({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})


def test_not_an_object_is_an_error() -> None:
    with pytest.raises(ManifestInvalid):
        validate_strict({"kind": "ConfigMap"})


def test_inference_service_checked_against_the_crd() -> None:
    with pytest.raises(ManifestInvalid, match="storageURI"):
        validate_strict(merge(manifest(), {"spec": {"model": {"storageURI": "s3://x"}}}))
    with pytest.raises(ManifestInvalid, match="minReplicas"):
        validate_strict(manifest({"autoscaling": {"minReplicas": -1}}))
