"""The chart's prometheus-adapter rules, rendered by a real helm and checked by a real promtool.

The adapter fills each metricsQuery's templates (<<.Series>>, <<.LabelMatchers>>, <<.GroupBy>>)
before it asks Prometheus; the tests fill them the same way for one revision's pods, wrap each
query into a recording rule named like the custom metric, and let promtool judge them:
`check rules` parses every query, `test rules` evaluates them on synthetic series and holds the
numbers (request-weighted queue time, not an average of averages; inference requests only).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.helm import CHART, template
from tests.support.promtool import EXPECTED, INPUT, NAMESPACE, run_promtool
from tritium.render.hpa import POD_METRICS

POD_RE = "demo-0123456789-.*"
# What the adapter substitutes for a Pods query of the pods of one revision in namespace ml.
MATCHERS = f'namespace="{NAMESPACE}",pod=~"{POD_RE}"'
GROUP_BY = "pod"


@pytest.fixture(scope="module")
def rules(helm: str) -> list[dict[str, Any]]:
    """The adapter rules as the chart installs them (the ConfigMap's config.yaml)."""
    objs = template(helm, sets=("prometheusAdapter.enabled=true", "prometheusAdapter.namespace=monitoring"))
    (config_map,) = [d for d in objs
                     if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-prometheus-adapter")]
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
    for placeholder, value in (("<<.Series>>", series_name(rule)), ("<<.LabelMatchers>>", MATCHERS),
                               ("<<.GroupBy>>", GROUP_BY)):
        query = query.replace(placeholder, value)
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


# INPUT and EXPECTED (tests/support/promtool.py): two models on one pod, an idle pod, a pod just
# started and another service's pod, with the numbers the adapter must give each.
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
