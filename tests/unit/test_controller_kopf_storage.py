"""The lean diff base builds exactly kopf's essence, from bodies with status, managedFields and
annotations of every kind (kopf's own, other operators', kubectl's)."""

from __future__ import annotations

import copy
from typing import Any

import kopf
import pytest

from tritium.controller.kopf_storage import LeanStatusDiffBaseStorage

FIELD = "status.kopf.lastHandled"


def _body(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "serving.tritium.dev/v1alpha1", "kind": "InferenceService",
        "metadata": {
            "name": "m", "namespace": "ns", "uid": "u-1", "generation": 3, "resourceVersion": "77",
            "finalizers": ["serving.tritium.dev/finalizer"],
            "labels": {"team": "search"},
            "annotations": {"note": "x", "kopf.zalando.org/last-handled-configuration": "{}",
                            "kubectl.kubernetes.io/last-applied-configuration": "{}",
                            "serving.tritium.dev/pause": "true"},
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"model": {"name": "m", "storageUri": "pvc://a/b"}, "rollout": {"canaryPercent": 5}},
        "status": {"phase": "Ready", "kopf": {"lastHandled": "{}"}, "analysis": [{"result": "Pass"}] * 10},
    }
    body.update(extra)
    return body


BODIES = [
    _body(),
    _body(status=None),
    _body(metadata={"name": "bare", "namespace": "ns"}),
    {k: v for k, v in _body().items() if k != "status"},
    _body(extra={"field": [1, 2]}),
]


@pytest.mark.parametrize("body", BODIES)
def test_same_essence_as_kopf(body: dict[str, Any]) -> None:
    original = copy.deepcopy(body)
    lean = LeanStatusDiffBaseStorage(field=FIELD).build(body=kopf.Body(body))
    assert lean == kopf.StatusDiffBaseStorage(field=FIELD).build(body=kopf.Body(body))
    assert body == original  # nothing of the event's body changed


def test_essence_is_a_copy() -> None:
    body = _body()
    essence = LeanStatusDiffBaseStorage(field=FIELD).build(body=kopf.Body(body))
    essence["spec"]["model"]["name"] = "changed"
    essence["metadata"]["labels"]["team"] = "changed"
    assert body["spec"]["model"]["name"] == "m" and body["metadata"]["labels"]["team"] == "search"
