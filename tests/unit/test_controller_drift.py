"""Drift: the live child read through the desired one's shape. A false alarm is a write per
reconcile, a missed one leaves a hand edit running; both are tested here on rendered children."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.support.specs import manifest
from tritium.api.resource import parse_inference_service
from tritium.controller.drift import differences
from tritium.controller.reconcile import ChildRef, owner_of, revision_from_name
from tritium.render import render_children

CHILDREN = render_children(parse_inference_service(
    {**manifest(), "metadata": {"name": "m", "namespace": "ns", "uid": "u-1"}}
))


def _by_kind(kind: str) -> dict[str, Any]:
    return copy.deepcopy(next(c for c in CHILDREN if c["kind"] == kind))


def _as_stored(obj: Any) -> Any:
    """What kube-apiserver gives back: zero values dropped (omitempty), defaults and status added."""
    if isinstance(obj, dict):
        out = {k: _as_stored(v) for k, v in obj.items() if v not in (False, 0, "", None) or isinstance(v, dict)}
        return out
    if isinstance(obj, list):
        return [_as_stored(v) for v in obj]
    return obj


def _live(kind: str) -> dict[str, Any]:
    live = _as_stored(_by_kind(kind))
    live["metadata"].update({"uid": "c-1", "resourceVersion": "42", "creationTimestamp": "2026-01-01T00:00:00Z",
                             "managedFields": [{"manager": "tritium-operator"}]})
    live["status"] = {"observedGeneration": 1}
    if kind == "Deployment":
        pod = live["spec"]["template"]["spec"]
        pod.update({"restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler"})
        for c in pod["containers"]:
            c.update({"imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log"})
    return live


@pytest.mark.parametrize("kind", sorted({c["kind"] for c in CHILDREN}))
def test_what_the_server_adds_is_not_drift(kind: str) -> None:
    assert differences(_by_kind(kind), _live(kind)) == []


def test_a_hand_set_image_is_drift() -> None:
    live = _live("Deployment")
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "evil.example/triton:hacked"
    name = live["spec"]["template"]["spec"]["containers"][0]["name"]
    assert differences(_by_kind("Deployment"), live) == [f".spec.template.spec.containers[{name}].image"]


def test_edited_config_and_labels_are_drift() -> None:
    live = _live("ConfigMap")
    live["data"]["config.pbtxt"] += "\n# edited"
    live["metadata"]["labels"].pop("serving.tritium.dev/inferenceservice")
    found = differences(_by_kind("ConfigMap"), live)
    assert ".data.config.pbtxt" in found
    assert ".metadata.labels.serving.tritium.dev/inferenceservice" in found


def test_items_added_by_others_are_theirs() -> None:
    """Server-side apply merges named items: another manager's container is not ours to remove."""
    live = _live("Deployment")
    live["spec"]["template"]["spec"]["containers"].append({"name": "debug", "image": "busybox"})
    live["metadata"]["labels"]["team"] = "ml"
    assert differences(_by_kind("Deployment"), live) == []


def test_a_removed_container_is_drift() -> None:
    live = _live("Deployment")
    gone = live["spec"]["template"]["spec"]["containers"].pop()
    assert differences(_by_kind("Deployment"), live) == [f".spec.template.spec.containers[{gone['name']}]"]


@pytest.mark.parametrize(("want", "have", "same"), [
    ("1", "1000m", True), ("500m", "0.5", True), ("2Gi", "2048Mi", True), ("1", 1, True),
    ("1", "2", False), ("1Gi", "1G", False), ("8", "eight", False),
])
def test_quantities_compare_by_value(want: str, have: Any, same: bool) -> None:
    desired = {"resources": {"requests": {"cpu": want}}}
    live = {"resources": {"requests": {"cpu": have}}}
    assert (differences(desired, live) == []) is same


def test_outside_quantities_spelling_matters() -> None:
    assert differences({"data": {"size": "1"}}, {"data": {"size": "1000m"}}) == [".data.size"]
    assert differences({"spec": {"replicas": 1}}, {"spec": {"replicas": True}}) == [".spec.replicas"]


def test_zero_values_the_server_leaves_out() -> None:
    desired = {"mount": {"readOnly": False, "subPath": "", "port": 0, "items": [], "extra": {}}}
    assert differences(desired, {"mount": {}}) == []
    assert differences({"mount": {"readOnly": True}}, {"mount": {}}) == [".mount.readOnly"]


scalars = st.one_of(st.booleans(), st.integers(-5, 5), st.text(max_size=3))
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=12,
)


@given(trees)
def test_an_object_never_drifts_from_itself(obj: Any) -> None:
    assert differences(obj, copy.deepcopy(obj)) == []


@given(st.dictionaries(st.text(min_size=1, max_size=3), trees, min_size=1, max_size=4), st.data())
def test_a_changed_value_is_always_found(obj: dict[str, Any], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(obj)))
    assume(obj[key] is not False and obj[key] not in (0, "", [], {}))  # zero values may be left out
    live = {**copy.deepcopy(obj), key: "changed by hand"}
    assume(obj[key] != live[key])
    assert differences(obj, live)


def test_revision_is_read_from_the_name() -> None:
    assert revision_from_name("minilm-0123456789") == "0123456789"
    assert revision_from_name("minilm") == ""
    assert revision_from_name("minilm-xyz0123456") == ""


def test_owner_is_the_controlling_inference_service() -> None:
    def obj(*refs: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"ownerReferences": list(refs)}}

    isvc = {"apiVersion": "serving.tritium.dev/v1alpha1", "kind": "InferenceService", "name": "m", "controller": True}
    assert owner_of(obj(isvc), "ns") == ("ns", "m")
    assert owner_of(obj({**isvc, "controller": False}), "ns") is None
    assert owner_of(obj({**isvc, "apiVersion": "other.dev/v1"}), "ns") is None
    assert owner_of(obj({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r", "controller": True}), "ns") is None
    assert owner_of({"metadata": {}}, "ns") is None


def test_child_ref_keeps_the_live_body_without_managed_fields() -> None:
    live = _live("Deployment")
    ref = ChildRef.from_object("Deployment", live)
    assert ref.revision == revision_from_name(live["metadata"]["name"])
    assert ref.resource_version == "42"
    assert "managedFields" not in ref.body["metadata"]
    assert ref.deployment is not None and ref.deployment.revision == ref.revision
