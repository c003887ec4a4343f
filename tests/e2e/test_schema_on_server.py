"""The CRD as kube-apiserver enforces it: every example accepted, every CEL rule's verdicts, schema refusals.

The unit tests evaluate the CRD's schema and rules with Python evaluators; here the real API
server does (its OpenAPI validation, defaulting and CEL), on the same table of cases
(tests/support/specs.py), so the two cannot disagree unnoticed. Every request is a server-side
dry run: validated and admitted exactly as a create, never stored.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Kube
from tests.support.specs import RULE_CASES, SCHEMA_BAD, RuleCase, example_paths, load_example, manifest, merge
from tritium.controller.kube import ApiError, KubeClient

COLLECTION = "/apis/serving.tritium.dev/v1alpha1/namespaces/{namespace}/inferenceservices"
# A dry run of a create, with unknown fields refused as `kubectl apply` does (strict field validation).
DRY_RUN = {"dryRun": "All", "fieldValidation": "Strict"}


@pytest.fixture(scope="module")
def dry_namespace(kube: Kube) -> Iterator[str]:
    """One namespace for the whole module: a dry run needs it to exist, and stores nothing in it."""
    name = f"tritium-e2e-schema-{secrets.token_hex(2)}"
    kube.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


async def dry_create(api: KubeClient, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
    body = merge(obj, {"metadata": {"namespace": namespace}})
    return await api._request("POST", COLLECTION.format(namespace=namespace), params=DRY_RUN, body=body)


async def refusal(api: KubeClient, namespace: str, obj: dict[str, Any]) -> ApiError:
    """The server's answer to a create it must refuse; fails when it accepts the object."""
    try:
        stored = await dry_create(api, namespace, obj)
    except ApiError as exc:
        return exc
    raise AssertionError(f"the API server accepted {obj['spec']} (as {stored.get('spec')})")


def _case_ids(kind: str) -> list[str]:
    return [f"{c.model}:{c.message}:{i}" for c in RULE_CASES for i, _ in enumerate(getattr(c, kind))]


# --- examples ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", example_paths(), ids=lambda p: p.name)
async def test_every_example_is_accepted(api: KubeClient, dry_namespace: str, path: Path) -> None:
    obj = load_example(path)
    stored = await dry_create(api, dry_namespace, obj)
    assert stored["metadata"]["name"] == obj["metadata"]["name"]
    # The server's defaults were applied (what the operator will read): a runtime always results.
    assert stored["spec"]["runtime"]["resources"]["memory"]


def test_there_are_examples() -> None:
    assert len(example_paths()) >= 2


# --- CEL rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "patch"), [(c, b) for c in RULE_CASES for b in c.bad], ids=_case_ids("bad"))
async def test_the_server_refuses_what_a_rule_forbids(
    api: KubeClient, dry_namespace: str, case: RuleCase, patch: dict[str, Any]
) -> None:
    error = await refusal(api, dry_namespace, manifest(patch))
    assert error.status == 422, error
    assert case.message in error.message, error.message
    assert f"{case.field}: Invalid value" in error.message, f"reported on the wrong field: {error.message}"


@pytest.mark.parametrize(("case", "patch"), [(c, g) for c in RULE_CASES for g in c.good], ids=_case_ids("good"))
async def test_the_server_accepts_what_a_rule_allows(
    api: KubeClient, dry_namespace: str, case: RuleCase, patch: dict[str, Any]
) -> None:
    stored = await dry_create(api, dry_namespace, manifest(patch))
    assert stored["kind"] == "InferenceService"


def test_every_rule_has_good_and_bad_cases() -> None:
    assert all(c.bad for c in RULE_CASES)
    assert sum(len(c.good) for c in RULE_CASES) >= len(RULE_CASES) - 1


# --- schema (no CEL) ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patch", "meta", "field"), SCHEMA_BAD, ids=[f"{c[2]}:{i}" for i, c in enumerate(SCHEMA_BAD)]
)
async def test_the_server_refuses_what_the_schema_forbids(
    api: KubeClient, dry_namespace: str, patch: dict[str, Any], meta: dict[str, Any], field: str
) -> None:
    error = await refusal(api, dry_namespace, manifest(patch, **meta))
    assert error.status == 422, error
    assert f"{field}: " in error.message, f"the refusal does not name {field}: {error.message}"


async def test_an_unknown_enum_value_names_the_allowed_ones(api: KubeClient, dry_namespace: str) -> None:
    error = await refusal(api, dry_namespace, manifest({"model": {"format": "caffe"}}))
    assert error.status == 422
    assert 'spec.model.format: Unsupported value: "caffe"' in error.message, error.message
    assert '"onnx"' in error.message and '"tensorrt"' in error.message


async def test_min_replicas_above_max_replicas(api: KubeClient, dry_namespace: str) -> None:
    error = await refusal(api, dry_namespace, manifest({"autoscaling": {"minReplicas": 4, "maxReplicas": 2}}))
    assert error.status == 422
    assert "spec.autoscaling.minReplicas" in error.message and "minReplicas must be <= maxReplicas" in error.message


async def test_an_unknown_field_is_refused_under_strict_validation(api: KubeClient, dry_namespace: str) -> None:
    error = await refusal(api, dry_namespace, merge(manifest(), {"spec": {"model": {"storageURI": "s3://x/y"}}}))
    assert error.status == 400, error  # a decoding error (BadRequest), not a validation one
    assert 'unknown field "spec.model.storageURI"' in error.message, error.message


async def test_a_missing_required_field_is_refused(api: KubeClient, dry_namespace: str) -> None:
    obj = manifest()
    del obj["spec"]["model"]["storageUri"]
    error = await refusal(api, dry_namespace, obj)
    assert error.status == 422
    assert "spec.model.storageUri: Required value" in error.message, error.message


async def test_a_dry_run_stores_nothing(api: KubeClient, dry_namespace: str) -> None:
    await dry_create(api, dry_namespace, manifest())
    assert await api.get("InferenceService", dry_namespace, "demo") is None
