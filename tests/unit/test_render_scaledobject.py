"""The per-revision KEDA ScaledObject of autoscaler keda, checked against KEDA's official CRD schema.

The schema is the v1alpha1 openAPIV3Schema of keda.sh_scaledobjects.yaml from the Go module
github.com/kedacore/keda/v2 (scripts/optional-crds.sh), applied the way kube-apiserver would
(tests/support/optional_crds.py: strict OpenAPI validation, pruning, defaulting, CEL rules).
The prometheus queries are run by a real promtool on the series of tests/support/promtool.py:
for one revision they give the sum of what the adapter gives its pods.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.support.optional_crds import crd_schema, problems
from tests.support.promtool import EXPECTED, INPUT, NAMESPACE, run_promtool, series
from tests.support.specs import manifest
from tritium.api.checks import check_spec
from tritium.api.resource import InferenceService, parse_inference_service
from tritium.controller.reconcile import ChildRef, _handed_over, _monitoring
from tritium.render import hpa, prometheusrule, render_children, scaledobject
from tritium.render.routing import Routing

REVISION = "0123456789"
PROMETHEUS = "http://prometheus-operated.monitoring:9090"
WATCHED = {"monitoring": {"serviceMonitor": True}, "runtime": {"resources": {"gpu": 1}}}


def _isvc(scaling: dict[str, Any] | None = None, **spec: Any) -> InferenceService:
    patch = {"autoscaling": {"autoscaler": "keda", **(scaling or {})}, **spec}
    isvc = parse_inference_service(manifest(patch, namespace=NAMESPACE, uid="0f0f0f0f-0000-4000-8000-000000000002"))
    check_spec(isvc)  # a spec the operator accepts, not only one the renderer takes
    return isvc


def _scaled(scaling: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    obj = scaledobject.render(_isvc(scaling, **spec), REVISION)
    assert obj is not None
    return obj


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """KEDA's ScaledObject v1alpha1 schema (skipped locally without it, failed in CI)."""
    return crd_schema("keda.sh_scaledobjects.yaml", "v1alpha1")


# --- shape -----------------------------------------------------------------------------------------


def test_one_scaledobject_per_revision_targets_its_deployment_and_no_hpa() -> None:
    isvc = _isvc({"minReplicas": 2, "maxReplicas": 8, "scaleDownCooldownSeconds": 120})
    children = render_children(isvc, REVISION)
    kinds = [c["kind"] for c in children]
    assert "HorizontalPodAutoscaler" not in kinds and kinds.count("ScaledObject") == 1
    obj = next(c for c in children if c["kind"] == "ScaledObject")
    deployment = next(c for c in children if c["kind"] == "Deployment")
    name = deployment["metadata"]["name"]
    assert (obj["apiVersion"], obj["metadata"]["name"]) == ("keda.sh/v1alpha1", name)
    assert obj["metadata"]["ownerReferences"][0]["uid"] == isvc.metadata.uid
    assert obj["metadata"]["labels"]["serving.tritium.dev/revision"] == REVISION
    spec = obj["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 8)
    assert spec["advanced"] == {"horizontalPodAutoscalerConfig": {"behavior": hpa.behavior(isvc.spec.autoscaling)}}
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
        "stabilizationWindowSeconds"] == 120


def test_the_hpa_autoscaler_renders_no_scaledobject() -> None:
    isvc = parse_inference_service(manifest())
    kinds = [c["kind"] for c in render_children(isvc, REVISION)]
    assert "ScaledObject" not in kinds and "HorizontalPodAutoscaler" in kinds


def test_no_autoscaler_when_autoscaling_is_off() -> None:
    isvc = parse_inference_service(manifest({"autoscaling": {"enabled": False, "autoscaler": "keda"}, "replicas": 2}))
    assert scaledobject.render(isvc, REVISION) is None and hpa.render(isvc, REVISION) is None


def test_a_canary_gets_no_scaledobject() -> None:
    isvc = _isvc()
    routing = Routing(stable="aaaaaaaaaa", canary=REVISION, weight=5, revisions=("aaaaaaaaaa", REVISION))
    kinds = [c["kind"] for c in render_children(isvc, REVISION, routing=routing, replicas=1)]
    assert "ScaledObject" not in kinds and "HorizontalPodAutoscaler" not in kinds


def _matchers() -> str:
    return f'namespace="{NAMESPACE}",inferenceservice="demo",revision="{REVISION}"'


# autoscaling patch -> the one trigger the ScaledObject must carry (the query is checked below).
TRIGGERS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "cpu": ({"metric": "cpu", "targetUtilization": 0.6},
            {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}),
    "rps": ({"metric": "rps", "targetRequestsPerSecond": 25}, {"threshold": "25"}),
    "rps-fraction": ({"metric": "rps", "targetRequestsPerSecond": 2.5}, {"threshold": "2.5"}),
    "gpu": ({"metric": "gpu", "targetUtilization": 0.7}, {"threshold": "0.7"}),
    "queueTime": ({"metric": "queueTime", "targetQueueTimeMs": 20}, {"threshold": "20"}),
    "queueTime-default": ({"metric": "queueTime"}, {"threshold": "50"}),
    "pending": ({"metric": "pending", "targetPendingRequests": 1.5}, {"threshold": "1.5"}),
    "pending-default": ({"metric": "pending"}, {"threshold": "4"}),
}


def _patch(scaling: dict[str, Any]) -> dict[str, Any]:
    return scaling if scaling["metric"] == "cpu" else {**scaling, "prometheusUrl": PROMETHEUS}


@pytest.mark.parametrize(("scaling", "expected"), TRIGGERS.values(), ids=TRIGGERS.keys())
def test_each_metric_renders_its_trigger(scaling: dict[str, Any], expected: dict[str, Any]) -> None:
    obj = _scaled(_patch(scaling), **WATCHED)
    (trigger,) = obj["spec"]["triggers"]
    if scaling["metric"] == "cpu":
        assert trigger == expected
        return
    assert (trigger["type"], trigger["metricType"]) == ("prometheus", "AverageValue")
    metadata = trigger["metadata"]
    assert metadata == {"serverAddress": PROMETHEUS, "query": metadata["query"], "ignoreNullValues": "false",
                        **expected}
    assert metadata["query"].startswith("sum(") and _matchers() in metadata["query"]
    assert "pod=" not in metadata["query"], "the revision's pods are selected by its labels, not by name"
    assert metadata["query"] == scaledobject.query(scaling["metric"], NAMESPACE, "demo", REVISION)


def test_every_pods_metric_has_a_query() -> None:
    assert set(scaledobject.PER_POD) == set(hpa.POD_METRICS)


@given(st.floats(min_value=0.0001, max_value=1_000_000, allow_nan=False))
def test_a_threshold_is_a_positive_decimal_like_the_hpa_target(value: float) -> None:
    text = scaledobject.threshold(value)
    assert "e" not in text and float(text) > 0
    quantity = hpa.quantity(value)  # the same value, to the same thousandth
    assert float(text) == (int(quantity[:-1]) / 1000 if quantity.endswith("m") else int(quantity))


# --- KEDA's schema ---------------------------------------------------------------------------------


def test_the_checker_refuses_what_the_server_refuses(schema: dict[str, Any]) -> None:
    good = _scaled(_patch({"metric": "pending"}), **WATCHED)
    assert problems(good, schema) == []
    broken = []
    for change in (
        lambda s: s.update(minReplicaCount=9, maxReplicaCount=3),  # CEL: min <= max
        lambda s: s["triggers"][0].update(colour="blue"),  # unknown field
        lambda s: s["triggers"][0]["metadata"].update(threshold=5),  # metadata values are strings
        lambda s: s.update(triggers=[]),  # minItems 1
        lambda s: s["scaleTargetRef"].pop("name"),  # required
    ):
        obj = copy.deepcopy(good)
        change(obj["spec"])
        broken.append(problems(obj, schema))
    assert all(broken), broken


@pytest.mark.parametrize(("scaling", "expected"), TRIGGERS.values(), ids=TRIGGERS.keys())
def test_every_rendered_scaledobject_passes_the_official_schema(
    schema: dict[str, Any], scaling: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert problems(_scaled(_patch(scaling), **WATCHED), schema) == []


def test_the_widest_bounds_pass_the_official_schema(schema: dict[str, Any]) -> None:
    obj = _scaled({"minReplicas": 1000, "maxReplicas": 1000, "scaleDownCooldownSeconds": 3600})
    assert problems(obj, schema) == []


# --- the queries, on promtool ----------------------------------------------------------------------

OLD = "9999999999"  # another revision of the same service, under load: it must not count


def _with_revision(entry: dict[str, str]) -> dict[str, str]:
    return {**entry, "series": entry["series"].replace("{", f'{{revision="{REVISION}",', 1)}


KEDA_INPUT = [_with_revision(s) for s in INPUT] + [
    series("tritium_gateway_requests_total", "0+1500x40", f"demo-{OLD}-a", model="m1", endpoint="infer",
           code="200", revision=OLD),
    series("nv_inference_request_success", "0+15x40", f"demo-{OLD}-a", model="m1", version="1", revision=OLD),
    series("nv_inference_queue_duration_us", "0+15000000000x40", f"demo-{OLD}-a", model="m1", version="1",
           revision=OLD),
    series("nv_inference_pending_request_count", "50+0x40", f"demo-{OLD}-a", model="m1", version="1", revision=OLD),
    series("nv_gpu_utilization", "1+0x40", f"demo-{OLD}-a", gpu_uuid="GPU-9", revision=OLD),
]


def test_each_query_is_the_sum_of_the_adapters_per_pod_values(tmp_path: Path) -> None:
    """KEDA's value over the revision's pods (the HPA's AverageValue) is the adapter's per-pod average."""
    expected = {metric: sum(EXPECTED[name].values()) for metric, name in hpa.POD_METRICS.items()}
    assert expected == {"rps": 17, "queueTime": 19, "pending": 5, "gpu": pytest.approx(0.9)}
    tests = {
        "rule_files": [],
        "evaluation_interval": "15s",
        "tests": [{
            "interval": "15s",
            "input_series": KEDA_INPUT,
            "promql_expr_test": [
                {"expr": scaledobject.query(metric, NAMESPACE, "demo", REVISION), "eval_time": "10m",
                 "exp_samples": [{"labels": "{}", "value": value}]}
                for metric, value in expected.items()
            ],
        }],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    run_promtool("test", "rules", str(tmp_path / "tests.yaml"))


# --- the operator around it ------------------------------------------------------------------------


def _ref(kind: str, name: str) -> ChildRef:
    return ChildRef(kind=kind, name=name, revision=REVISION, applied_hash="")


def test_switching_autoscaler_removes_the_old_one_before_the_new_one_is_applied() -> None:
    name = f"demo-{REVISION}"
    have = {("HorizontalPodAutoscaler", name): _ref("HorizontalPodAutoscaler", name),
            ("Deployment", name): _ref("Deployment", name)}
    desired = [{"kind": "Deployment", "metadata": {"name": name}}, {"kind": "ScaledObject", "metadata": {"name": name}}]
    wanted = {(o["kind"], o["metadata"]["name"]) for o in desired}
    assert _handed_over(desired, have, wanted) == [have[("HorizontalPodAutoscaler", name)]]
    back = [{"kind": "HorizontalPodAutoscaler", "metadata": {"name": name}}]
    assert _handed_over(back, {("ScaledObject", name): _ref("ScaledObject", name)},
                        {("HorizontalPodAutoscaler", name)}) == [_ref("ScaledObject", name)]
    assert _handed_over(desired, {("ScaledObject", name): _ref("ScaledObject", name)}, wanted) == []


def test_a_missing_keda_crd_is_not_a_monitoring_condition() -> None:
    assert _monitoring([{"kind": "Deployment"}, {"kind": "ScaledObject"}], ["ScaledObject"]) is None
    assert _monitoring([{"kind": "PodMonitor"}, {"kind": "ScaledObject"}], ["ScaledObject"]) == (
        "True", "Applied", "PodMonitor applied")


def test_the_replicas_at_max_alert_reads_the_hpa_keda_makes() -> None:
    isvc = _isvc(monitoring={"serviceMonitor": True})
    rule = prometheusrule.replicas_at_max_rule(isvc)
    assert 'horizontalpodautoscaler=~"keda-hpa-demo-[0-9a-f]{10}"' in rule["expr"]
    assert '"horizontalpodautoscaler", ".*-([0-9a-f]{10})")' in rule["expr"]  # the revision, as for the HPA
