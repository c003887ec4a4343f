"""The per-revision HorizontalPodAutoscaler and the replica count the operator writes beside it."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.k8s_schema import validate_strict
from tests.support.specs import manifest
from tritium.api.checks import check_spec
from tritium.api.resource import parse_inference_service
from tritium.api.spec import AutoscalingSpec
from tritium.render import hpa, render_children
from tritium.rollout.revisions import DeploymentObservation, target_replicas


def _hpa(patch: dict[str, Any] | None = None) -> dict[str, Any] | None:
    return hpa.render(parse_inference_service(manifest(patch or {})), "0123456789")


def test_one_hpa_per_revision_targets_its_deployment() -> None:
    obj = _hpa({"autoscaling": {"minReplicas": 2, "maxReplicas": 8, "targetUtilization": 0.7}})
    assert obj is not None
    children = render_children(parse_inference_service(manifest({"autoscaling": {"minReplicas": 2, "maxReplicas": 8}})),
                               "0123456789")
    deployment = next(c for c in children if c["kind"] == "Deployment")
    assert obj["metadata"]["name"] == deployment["metadata"]["name"]
    assert obj["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert (obj["spec"]["minReplicas"], obj["spec"]["maxReplicas"]) == (2, 8)
    assert obj["spec"]["metrics"][0]["resource"] == {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}


def test_behavior_answers_bursts_and_waits_before_scaling_down() -> None:
    obj = _hpa({"autoscaling": {"scaleDownCooldownSeconds": 300}})
    assert obj is not None
    up, down = obj["spec"]["behavior"]["scaleUp"], obj["spec"]["behavior"]["scaleDown"]
    assert up["stabilizationWindowSeconds"] == 0
    assert {p["type"]: p["value"] for p in up["policies"]} == {"Percent": 100, "Pods": 4}
    assert all(p["periodSeconds"] == 15 for p in up["policies"]) and up["selectPolicy"] == "Max"
    assert down["stabilizationWindowSeconds"] == 300


def test_no_hpa_when_autoscaling_is_off() -> None:
    assert _hpa({"autoscaling": {"enabled": False}}) is None


def test_the_hpa_passes_the_official_schema() -> None:
    obj = _hpa()
    assert obj is not None
    assert validate_strict(obj) is not None


WATCHED = {"monitoring": {"serviceMonitor": True}}
# autoscaling patch -> the one metric entry the HPA must carry.
METRICS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "cpu": ({"metric": "cpu", "targetUtilization": 0.6},
            {"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": 60}}}),
    "rps": ({"metric": "rps", "targetRequestsPerSecond": 25},
            {"type": "Pods", "pods": {"metric": {"name": "tritium_requests_per_second"},
                                      "target": {"type": "AverageValue", "averageValue": "25"}}}),
    "rps-fraction": ({"metric": "rps", "targetRequestsPerSecond": 2.5},
                     {"type": "Pods", "pods": {"metric": {"name": "tritium_requests_per_second"},
                                               "target": {"type": "AverageValue", "averageValue": "2500m"}}}),
    "gpu": ({"metric": "gpu", "targetUtilization": 0.7},
            {"type": "Pods", "pods": {"metric": {"name": "tritium_gpu_utilization"},
                                      "target": {"type": "AverageValue", "averageValue": "700m"}}}),
    "queueTime": ({"metric": "queueTime", "targetQueueTimeMs": 20},
                  {"type": "Pods", "pods": {"metric": {"name": "tritium_queue_time_per_request_ms"},
                                            "target": {"type": "AverageValue", "averageValue": "20"}}}),
    "queueTime-default": ({"metric": "queueTime"},
                          {"type": "Pods", "pods": {"metric": {"name": "tritium_queue_time_per_request_ms"},
                                                    "target": {"type": "AverageValue", "averageValue": "50"}}}),
    "pending": ({"metric": "pending", "targetPendingRequests": 1.5},
                {"type": "Pods", "pods": {"metric": {"name": "tritium_pending_requests"},
                                          "target": {"type": "AverageValue", "averageValue": "1500m"}}}),
    "pending-default": ({"metric": "pending"},
                        {"type": "Pods", "pods": {"metric": {"name": "tritium_pending_requests"},
                                                  "target": {"type": "AverageValue", "averageValue": "4"}}}),
}


@pytest.mark.parametrize(("scaling", "expected"), METRICS.values(), ids=METRICS.keys())
def test_each_metric_renders_its_hpa_metric(scaling: dict[str, Any], expected: dict[str, Any]) -> None:
    patch = {"autoscaling": scaling, **WATCHED, "runtime": {"resources": {"gpu": 1}}}
    isvc = parse_inference_service(manifest(patch))
    check_spec(isvc)  # a spec the operator accepts, not only one the renderer takes
    obj = hpa.render(isvc, "0123456789")
    assert obj is not None
    assert obj["spec"]["metrics"] == [expected]
    assert validate_strict(obj) is not None
    cpu = _hpa()  # the behavior does not depend on the metric
    assert cpu is not None and obj["spec"]["behavior"] == cpu["spec"]["behavior"]


def test_every_pods_metric_is_named() -> None:
    metrics = get_args(AutoscalingSpec.model_fields["metric"].annotation)
    assert set(metrics) - {"cpu"} == set(hpa.POD_METRICS)


@given(st.floats(min_value=0.0001, max_value=1_000_000, allow_nan=False))
def test_a_target_quantity_is_positive_and_close(value: float) -> None:
    text = hpa.quantity(value)
    parsed = int(text[:-1]) / 1000 if text.endswith("m") else int(text)
    assert parsed > 0
    assert abs(parsed - value) <= max(0.0005, value * 1e-9) or parsed == 0.001


def _obs(revision: str, desired: int) -> DeploymentObservation:
    return DeploymentObservation(revision=revision, desired=desired, replicas=desired, ready=desired, current=True)


def test_replicas_follow_the_hpa_within_the_bounds() -> None:
    kw: dict[str, Any] = {"base": 2, "autoscaled": True, "lowest": 2, "highest": 10, "stable": None}
    assert target_replicas(target="a", observed={}, **kw) == 2
    assert target_replicas(target="a", observed={"a": _obs("a", 7)}, **kw) == 7
    assert target_replicas(target="a", observed={"a": _obs("a", 1)}, **kw) == 2
    assert target_replicas(target="a", observed={"a": _obs("a", 40)}, **kw) == 10


def test_a_new_revision_starts_at_the_stable_size() -> None:
    observed = {"old": _obs("old", 6)}
    assert target_replicas(base=2, autoscaled=True, lowest=2, highest=10, target="new", stable="old",
                           observed=observed) == 6


def test_without_autoscaling_the_spec_decides() -> None:
    assert target_replicas(base=3, autoscaled=False, lowest=2, highest=10, target="a", stable=None,
                           observed={"a": _obs("a", 9)}) == 3


@given(st.integers(1, 50), st.integers(1, 50), st.integers(0, 100), st.booleans())
def test_the_count_is_always_within_the_bounds(lowest: int, span: int, live: int, new: bool) -> None:
    highest = lowest + span
    observed = {"old": _obs("old", live)} if new else {"a": _obs("a", live)}
    got = target_replicas(base=lowest, autoscaled=True, lowest=lowest, highest=highest, target="a",
                          stable="old" if new else None, observed=observed)
    assert lowest <= got <= highest
