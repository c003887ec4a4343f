"""The PodMonitor and PrometheusRule of a service (render/podmonitor.py, render/prometheusrule.py).

The rules are checked by promtool for real: `promtool check rules` on what is rendered, and
`promtool test rules` with, for each alert, one set of input series that fires it and one that
does not (including series of other services, which must never count).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.optional_crds import crd_schema, problems
from tests.support.promtool import run_promtool
from tests.support.specs import manifest
from tritium.api.resource import parse_inference_service
from tritium.api.spec import AlertRule
from tritium.render import podmonitor, prometheusrule, render_children
from tritium.render.metadata import LABEL_REVISION, revision_of, selector_labels

REV = "0123456789"
EVERY_METRIC = [
    {"metric": "p99LatencyMs", "threshold": 250, "forSeconds": 120, "severity": "critical"},
    {"metric": "errorRatio", "threshold": 0.02, "forSeconds": 60, "severity": "info"},
    {"metric": "queueTimeMs", "threshold": 50, "forSeconds": 90, "severity": "warning"},
    {"metric": "availability", "threshold": 0.9, "forSeconds": 0, "severity": "critical"},
]


def isvc(monitoring: dict[str, Any] | None = None, **spec: Any):  # type: ignore[no-untyped-def]
    return parse_inference_service(manifest({**spec, "monitoring": monitoring or {}}))


def kinds(service: Any) -> list[str]:
    return [c["kind"] for c in render_children(service)]


def rules(service: Any) -> list[dict[str, Any]]:
    rendered = prometheusrule.render(service, REV)
    assert rendered is not None
    [group] = rendered["spec"]["groups"]
    return group["rules"]


# --- which objects -------------------------------------------------------------------------------


def test_nothing_when_monitoring_is_off() -> None:
    service = isvc()
    assert podmonitor.render(service, REV) is None
    assert prometheusrule.render(service, REV) is None
    assert "PodMonitor" not in kinds(service) and "PrometheusRule" not in kinds(service)


def test_service_monitor_renders_a_pod_monitor_and_the_default_rules_last() -> None:
    assert kinds(isvc({"serviceMonitor": True}))[-2:] == ["PodMonitor", "PrometheusRule"]


def test_alerts_alone_render_rules_without_a_pod_monitor() -> None:
    assert kinds(isvc({"alerts": EVERY_METRIC[:1]}))[-1:] == ["PrometheusRule"]
    assert "PodMonitor" not in kinds(isvc({"alerts": EVERY_METRIC[:1]}))


def test_empty_alerts_mean_no_rules() -> None:
    assert "PrometheusRule" not in kinds(isvc({"serviceMonitor": True, "alerts": []}))


def test_one_of_each_per_service_whatever_the_revision() -> None:
    service = isvc({"serviceMonitor": True})
    for render in (podmonitor.render, prometheusrule.render):
        a, b = render(service, "aaaaaaaaaa"), render(service, "bbbbbbbbbb")
        assert a is not None and b is not None
        assert a["metadata"]["name"] == b["metadata"]["name"] == "demo"
        assert a["spec"] == b["spec"]


# --- the PodMonitor ------------------------------------------------------------------------------


def test_pod_monitor_selects_every_pod_of_the_service() -> None:
    service = isvc({"serviceMonitor": True})
    monitor = podmonitor.render(service, REV)
    assert monitor is not None
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"] == {"matchLabels": selector_labels(service)}
    assert LABEL_REVISION not in monitor["spec"]["selector"]["matchLabels"]


STAGES = {"preprocess": {"script": {"path": "pre.py"}}, "postprocess": {"builtin": {}}}


@pytest.mark.parametrize(
    ("stages", "stage_ports"),
    [
        ((), []),
        (("preprocess",), ["pre-http"]),
        (("postprocess",), ["post-http"]),
        (("preprocess", "postprocess"), ["pre-http", "post-http"]),
    ],
)
def test_pod_monitor_scrapes_the_metrics_ports_the_pod_declares(stages: tuple[str, ...],
                                                                stage_ports: list[str]) -> None:
    """Every metrics port of the pod, stages' included, and none the pod lacks."""
    service = isvc({"serviceMonitor": True}, **{s: STAGES[s] for s in stages})
    deployment = next(c for c in render_children(service) if c["kind"] == "Deployment")
    declared = {p["name"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
    monitor = podmonitor.render(service, REV)
    assert monitor is not None
    scraped = [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]]
    assert scraped == ["metrics", "triton-metrics", *stage_ports]
    assert set(scraped) <= declared
    assert declared - set(scraped) == {"gateway"}  # the API port, not metrics
    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
        assert (endpoint["path"], endpoint["interval"]) == ("/metrics", "15s")


def test_pod_monitor_matches_the_prometheus_operator_crd() -> None:
    """What the API server would accept: the PodMonitor CRD's schema, strict, and its CEL rules."""
    service = isvc({"serviceMonitor": True}, **STAGES)
    monitor = podmonitor.render(service, REV)
    assert monitor is not None
    assert problems(monitor, crd_schema("monitoring.coreos.com_podmonitors.yaml", "v1")) == []


def test_pod_monitor_labels_series_with_service_and_revision() -> None:
    monitor = podmonitor.render(isvc({"serviceMonitor": True}), REV)
    assert monitor is not None
    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
        by_target = {r["targetLabel"]: r for r in endpoint["relabelings"]}
        assert by_target["inferenceservice"] == {"action": "replace", "targetLabel": "inferenceservice",
                                                 "replacement": "demo"}
        assert by_target["revision"]["sourceLabels"] == ["__meta_kubernetes_pod_label_serving_tritium_dev_revision"]
        # The gateway's `endpoint` label survives the Prometheus Operator's own `endpoint` target label.
        assert endpoint["honorLabels"] is True


# --- the rules -----------------------------------------------------------------------------------


def test_default_rules() -> None:
    found = {r["alert"]: r for r in rules(isvc({"serviceMonitor": True}))}
    assert set(found) == {"TritiumHighP99Latency", "TritiumHighErrorRatio", "TritiumCanaryFailing",
                          "TritiumReplicasAtMax"}
    assert found["TritiumHighP99Latency"]["expr"].endswith(" > 1000")
    assert (found["TritiumHighP99Latency"]["for"], found["TritiumHighP99Latency"]["labels"]["severity"]) == (
        "5m", "warning")
    assert found["TritiumHighErrorRatio"]["expr"].endswith(" > 0.01")
    assert (found["TritiumHighErrorRatio"]["for"], found["TritiumHighErrorRatio"]["labels"]["severity"]) == (
        "5m", "critical")
    assert "kube_horizontalpodautoscaler_spec_max_replicas" in found["TritiumReplicasAtMax"]["expr"]
    assert found["TritiumReplicasAtMax"]["for"] == "15m"


def test_canary_failing_alert_reads_what_stable_gateways_forward() -> None:
    service = isvc({"serviceMonitor": True}, rollout={"analysis": {"maxErrorRatio": 0.05}})
    rule = next(r for r in rules(service) if r["alert"] == "TritiumCanaryFailing")
    assert "tritium_gateway_forwarded_requests_total" in rule["expr"] and rule["expr"].endswith(" > 0.05")
    assert (rule["for"], rule["labels"]["severity"]) == ("1m", "warning")
    assert "{{ $labels.revision }}" in rule["annotations"]["summary"]


def test_no_canary_failing_alert_when_gateways_forward_nothing() -> None:
    service = isvc({"serviceMonitor": True}, traffic={"router": "gatewayAPI", "parentRefs": [{"name": "gw"}]})
    assert "TritiumCanaryFailing" not in {r["alert"] for r in rules(service)}


def test_no_replicas_at_max_alert_without_autoscaling() -> None:
    service = isvc({"serviceMonitor": True}, autoscaling={"enabled": False}, replicas=2)
    assert "TritiumReplicasAtMax" not in {r["alert"] for r in rules(service)}


def test_explicit_alerts_replace_the_defaults_and_use_every_field() -> None:
    rendered = rules(isvc({"serviceMonitor": True, "alerts": EVERY_METRIC}))
    assert [r["alert"] for r in rendered] == [
        "TritiumHighP99Latency", "TritiumHighErrorRatio", "TritiumHighQueueTime", "TritiumLowAvailability"]
    assert set(AlertRule.model_fields) == {"metric", "threshold", "for_seconds", "severity"}
    for rule, alert in zip(rendered, EVERY_METRIC, strict=True):
        op = "<" if alert["metric"] == "availability" else ">"
        assert rule["expr"].endswith(f" {op} {alert['threshold']:g}"), rule["expr"]
        assert rule["for"] == {120: "2m", 60: "1m", 90: "90s", 0: "0s"}[alert["forSeconds"]]
        assert rule["labels"] == {"severity": alert["severity"], "inferenceservice": "demo"}
        assert set(rule["annotations"]) == {"summary", "description"}
        assert "ml/demo" in rule["annotations"]["summary"]


def test_metric_names_are_those_the_gateway_and_triton_export() -> None:
    from prometheus_client import generate_latest

    from tritium.dataplane.metrics import GatewayMetrics

    gateway = GatewayMetrics()
    gateway.observe("demo", "infer", 200, 0.01)
    exported = generate_latest(gateway.registry).decode()
    text = "\n".join(r["expr"] for r in rules(isvc({"alerts": EVERY_METRIC})))
    for name in ("tritium_gateway_request_duration_seconds_bucket", "tritium_gateway_requests_total"):
        assert name in text and f"\n{name}{{" in exported
    assert 'code="200"' in exported  # the label errorRatio reads
    for triton in ("nv_inference_queue_duration_us", "nv_inference_request_success"):
        assert triton in text


def test_every_expression_selects_only_this_service() -> None:
    service = isvc({"serviceMonitor": True, "alerts": EVERY_METRIC})
    for rule in rules(service):
        for selector in rule["expr"].split("{")[1:]:
            if selector.startswith(("{", "10}")) or not selector.split("}")[0].strip():
                continue
            body = selector.split("}")[0]
            if "=" not in body:
                continue  # a regex repetition such as [0-9a-f]{10}
            assert 'namespace="ml"' in body, rule["expr"]
            assert 'inferenceservice="demo"' in body or 'horizontalpodautoscaler=~"demo-' in body, rule["expr"]


def test_a_long_name_selects_the_shortened_hpa_names() -> None:
    name = "n" * 60
    service = parse_inference_service(manifest({"monitoring": {"serviceMonitor": True}}, name=name))
    rule = next(r for r in rules(service) if r["alert"] == "TritiumReplicasAtMax")
    hpa = next(c for c in render_children(service) if c["kind"] == "HorizontalPodAutoscaler")
    prefix = hpa["metadata"]["name"][: -len(revision_of(service.spec))]
    assert f'horizontalpodautoscaler=~"{prefix}[0-9a-f]{{10}}"' in rule["expr"]


# --- promtool ------------------------------------------------------------------------------------


@pytest.mark.parametrize("monitoring", [{"serviceMonitor": True}, {"alerts": EVERY_METRIC}], ids=["defaults", "all"])
def test_rules_pass_promtool_check(monitoring: dict[str, Any], tmp_path: Path) -> None:
    rendered = prometheusrule.render(isvc(monitoring), REV)
    assert rendered is not None
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rendered["spec"]))
    run_promtool("check", "rules", str(path))


MINE = 'namespace="ml",inferenceservice="demo",revision="r1"'
OTHER_SERVICE = 'namespace="ml",inferenceservice="other",revision="r9"'
OTHER_NAMESPACE = 'namespace="prod",inferenceservice="demo",revision="r1"'
FOREIGN = (OTHER_SERVICE, OTHER_NAMESPACE)


def _latency(sel: str, slow: bool) -> list[dict[str, str]]:
    le = "2.5" if slow else "0.1"
    buckets = {"0.05": "0+0x30", le: "0+10x30", "+Inf": "0+10x30"}
    return [{"series": f'tritium_gateway_request_duration_seconds_bucket{{{sel},model="m",endpoint="infer",le="{b}"}}',
             "values": v} for b, v in buckets.items()]


def _requests(sel: str, errors_per_min: int) -> list[dict[str, str]]:
    return [
        {"series": f'tritium_gateway_requests_total{{{sel},model="m",endpoint="infer",code="200"}}',
         "values": "0+95x30"},
        {"series": f'tritium_gateway_requests_total{{{sel},model="m",endpoint="infer",code="503"}}',
         "values": f"0+{errors_per_min}x30"},
    ]


def _queue(sel: str, us_per_min: int) -> list[dict[str, str]]:
    return [
        {"series": f'nv_inference_queue_duration_us{{{sel},model="m",version="1"}}', "values": f"0+{us_per_min}x30"},
        {"series": f'nv_inference_request_success{{{sel},model="m",version="1"}}', "values": "0+10x30"},
    ]


def _up(sel: str, down: bool) -> list[dict[str, str]]:
    return [{"series": f'up{{{sel},container="gateway",pod="p1"}}', "values": "1x30"},
            {"series": f'up{{{sel},container="gateway",pod="p2"}}', "values": ("0" if down else "1") + "x30"}]


def _forwarded(sel: str, failed: str, failed_per_min: int) -> list[dict[str, str]]:
    """What a stable gateway counts of the requests it forwards to canary revision c1: with
    honorLabels the series' own revision label (the canary's) is the one Prometheus keeps."""
    sel = sel.replace('revision="r1"', 'revision="c1"').replace('revision="r9"', 'revision="c9"')
    return [
        {"series": f'tritium_gateway_forwarded_requests_total{{{sel},pod="stable-1",code="200"}}', "values": "0+95x30"},
        {"series": f'tritium_gateway_forwarded_requests_total{{{sel},pod="stable-1",code="{failed}"}}',
         "values": f"0+{failed_per_min}x30"},
    ]


def _hpa(namespace: str, name: str, current: int) -> list[dict[str, str]]:
    labels = f'namespace="{namespace}",horizontalpodautoscaler="{name}",job="kube-state-metrics"'
    return [{"series": f"kube_horizontalpodautoscaler_status_current_replicas{{{labels}}}", "values": f"{current}x30"},
            {"series": f"kube_horizontalpodautoscaler_spec_max_replicas{{{labels}}}", "values": "3x30"}]


SERIES_LABELS = {"namespace": "ml", "inferenceservice": "demo", "revision": "r1"}
# alert -> (series that fire it, series that do not (others' bad series included), expected labels)
CASES: dict[str, tuple[list[dict[str, str]], list[dict[str, str]], dict[str, str]]] = {
    "TritiumHighP99Latency": (
        _latency(MINE, slow=True),
        _latency(MINE, slow=False) + [s for f in FOREIGN for s in _latency(f, slow=True)],
        {**SERIES_LABELS},
    ),
    "TritiumHighErrorRatio": (
        _requests(MINE, 5),
        _requests(MINE, 0) + [s for f in FOREIGN for s in _requests(f, 50)],
        {**SERIES_LABELS},
    ),
    "TritiumHighQueueTime": (
        _queue(MINE, 600_000),  # 60 ms per request
        _queue(MINE, 1_000) + [s for f in FOREIGN for s in _queue(f, 600_000)],
        {**SERIES_LABELS},
    ),
    "TritiumLowAvailability": (
        _up(MINE, down=True),
        _up(MINE, down=False) + [s for f in FOREIGN for s in _up(f, down=True)],
        {**SERIES_LABELS},
    ),
    "TritiumCanaryFailing": (
        _forwarded(MINE, "fallback", 5),
        _forwarded(MINE, "404", 50) + [s for f in FOREIGN for s in _forwarded(f, "503", 50)],
        {**SERIES_LABELS, "revision": "c1"},
    ),
    "TritiumReplicasAtMax": (
        _hpa("ml", f"demo-{REV}", 3),
        _hpa("ml", f"demo-{REV}", 2) + _hpa("ml", f"demo-other-{REV}", 3) + _hpa("prod", f"demo-{REV}", 3),
        {"namespace": "ml", "horizontalpodautoscaler": f"demo-{REV}", "revision": REV},
    ),
}


def test_every_alert_has_a_promtool_case() -> None:
    every = {r["alert"] for m in ({"serviceMonitor": True}, {"alerts": EVERY_METRIC}) for r in rules(isvc(m))}
    assert every == set(CASES)


def test_each_alert_fires_on_its_series_and_only_then(tmp_path: Path) -> None:
    """`promtool test rules`: each alert fires for this service's bad series, and neither for good
    ones nor for another service's (or another namespace's) bad series."""
    service = isvc({"serviceMonitor": True, "alerts": EVERY_METRIC})
    defaults = isvc({"serviceMonitor": True})
    by_alert = {r["alert"]: r for r in rules(service)}
    for default in ("TritiumReplicasAtMax", "TritiumCanaryFailing"):
        by_alert[default] = next(r for r in rules(defaults) if r["alert"] == default)
    # Annotations hold {{ $value }}, whose exact float promtool would compare; `check rules`
    # above validates their templates, so here they are left out.
    group = {"name": "under-test", "rules": [{k: v for k, v in r.items() if k != "annotations"}
                                             for r in by_alert.values()]}
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": [group]}))
    tests = []
    for alert, (firing, quiet, labels) in CASES.items():
        rule = by_alert[alert]
        expected = {**labels, "severity": rule["labels"]["severity"], "inferenceservice": "demo"}
        tests.append({"interval": "1m", "input_series": firing, "alert_rule_test": [
            {"eval_time": "25m", "alertname": alert, "exp_alerts": [{"exp_labels": expected}]}]})
        tests.append({"interval": "1m", "input_series": quiet, "alert_rule_test": [
            {"eval_time": "25m", "alertname": alert, "exp_alerts": []}]})
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m",
                                                         "tests": tests}))
    run_promtool("test", "rules", str(tmp_path / "tests.yaml"))
