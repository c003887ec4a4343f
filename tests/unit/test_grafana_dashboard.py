"""The chart's Grafana dashboard (charts/tritium/files/grafana-dashboard.json), checked for real.

A dashboard fails quietly: a misspelt metric or a query Prometheus rejects shows "No data", not an
error. So each panel query, with Grafana's variables filled in, is parsed by a real promtool, the
metrics it names must exist (the gateway's own registries, or a short list of Triton and
kube-state-metrics names), its selectors must be scoped to the chosen service, and the panels whose
arithmetic matters (request-weighted queue time, ratios that are 0 rather than absent) are
evaluated by promtool on synthetic series.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from tests.support.promtool import promtool, run_promtool
from tritium.api.spec import SecuritySpec
from tritium.controller.analysis import INFERENCE_ENDPOINTS
from tritium.dataplane.metrics import GatewayMetrics
from tritium.dataplane.security.layers import Security, SecuritySettings

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_FILE = ROOT / "charts" / "tritium" / "files" / "grafana-dashboard.json"

# Plain values for Grafana's variables: the template variables, and the built-in intervals.
VALUES = {"namespace": "ns", "inferenceservice": "demo", "datasource": "prometheus"}
BUILTINS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}

# Metrics the dashboard reads that no code here exports, each with where it comes from.
EXTERNAL = {
    # Triton's own metrics port (8002, scraped by the PodMonitor; Triton's docs/user_guide/metrics.md).
    "nv_inference_request_success",  # successful inference requests, per model and version
    "nv_inference_queue_duration_us",  # cumulative scheduler queue time, µs
    "nv_inference_count",  # inferences performed (a batch of n counts n)
    "nv_inference_exec_count",  # model executions (inference count / this = mean batch size)
    # kube-state-metrics (docs/deployment-metrics.md, docs/horizontalpodautoscaler-metrics.md there).
    "kube_deployment_status_replicas_available",
    "kube_horizontalpodautoscaler_status_desired_replicas",
}
KUBE_STATE_METRICS = {name for name in EXTERNAL if name.startswith("kube_")}

# Suffixes of the samples prometheus_client writes for each metric type.
_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum"),
             "summary": ("", "_count", "_sum"), "info": ("_info",)}


def gateway_metric_names() -> set[str]:
    """Every sample name a gateway's /metrics can carry.

    Built the way the gateway builds its registry (GatewayMetrics and the security layers' per-key
    counters share it). The stages' metrics are left out on purpose: the dashboard has no stage
    panel (a service may have no stages, and the gateway's series already time the whole request),
    so a tritium_stage_* name in a query is a mistake this check should catch.
    """
    registry = CollectorRegistry()
    GatewayMetrics(registry)
    Security(SecuritySpec(), SecuritySettings(), registry)
    return {family.name + suffix for family in registry.collect() for suffix in _SUFFIXES[family.type]}


# --- a small PromQL reader: which selectors an expression has ------------------------------------

_TOKEN = re.compile(r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<number>\d[\w.]*)
  | (?P<ident>[A-Za-z_][\w:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^=<>(){}\[\],])
  | (?P<space>\s+)
""", re.VERBOSE)
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
# May come before their by/without (...) clause, not only before "(": `sum by (x) (...)`.
_AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                 "bottomk", "topk", "quantile", "limitk", "limit_ratio"}

Selector = tuple[str, dict[str, tuple[str, str]]]  # metric name, label -> (operator, value)


def _tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        assert match is not None, f"unexpected {expr[pos:pos + 20]!r} in {expr}"
        pos = match.end()
        if match.lastgroup != "space":
            out.append((match.lastgroup or "", match.group()))
    return out


def _skip_group(tokens: list[tuple[str, str]], i: int, open_: str, close: str) -> int:
    """The index after the bracket that closes the one at i."""
    depth = 0
    for j in range(i, len(tokens)):
        depth += (tokens[j][1] == open_) - (tokens[j][1] == close)
        if depth == 0:
            return j + 1
    raise AssertionError(f"unbalanced {open_}")


def selectors(expr: str) -> list[Selector]:
    """The vector selectors of a PromQL expression, with their matchers.

    Enough PromQL for dashboards: function and aggregation names are told apart by the "(" that
    follows them, label names in by/on (...) and inside {...} are skipped, ranges [...] too. A
    selector without a metric name ({__name__=...}) is refused, so no name can hide from the check.
    """
    tokens, found, i = _tokens(expr), [], 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if text == "[":
            i = _skip_group(tokens, i, "[", "]")
        elif text == "{":
            raise AssertionError(f"a selector without a metric name in {expr}")
        elif kind == "ident" and text in _GROUPING:
            i = _skip_group(tokens, i + 1, "(", ")") if following == "(" else i + 1
        elif kind == "ident" and (following == "(" or text in _KEYWORDS
                                  or (text in _AGGREGATIONS and following in ("by", "without"))):
            i += 1
        elif kind == "ident":
            matchers: dict[str, tuple[str, str]] = {}
            i += 1
            if following == "{":
                end = _skip_group(tokens, i, "{", "}")
                body = [t for t in tokens[i + 1:end - 1] if t[1] != ","]
                for k in range(0, len(body), 3):
                    (_, label), (_, op), (_, value) = body[k:k + 3]
                    matchers[label] = (op, value[1:-1])
                i = end
            found.append((text, matchers))
        else:
            i += 1
    return found


# --- the dashboard ---------------------------------------------------------------------------------


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD_FILE.read_text())


DASHBOARD = load()


def substitute(text: str, variables: dict[str, str]) -> str:
    """Fill Grafana's $var / ${var} the way Grafana would; $1 (a regex back-reference) stays."""
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name.isdigit():
            return match.group()
        assert name in variables or name in BUILTINS, f"undefined variable ${name} in {text}"
        return variables.get(name) or BUILTINS[name]
    return re.sub(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))", one, text)


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable, variables still in."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"])
            assert match, f"variable {var['name']}: expected label_values(SELECTOR, LABEL), not {var['query']}"
            yield f"variable {var['name']}", match.group(1)


def filled(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """The queries as Prometheus gets them: every variable replaced by a plain value."""
    return [(where, substitute(expr, VALUES)) for where, expr in queries(dashboard)]


def templated(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """The queries with Grafana's intervals filled but the template variables kept (inside strings),
    so the matchers can be compared with "$namespace" and "$inferenceservice"."""
    return [(where, substitute(expr, {name: f"${name}" for name in VALUES})) for where, expr in queries(dashboard)]


def unknown_metrics(dashboard: dict[str, Any]) -> list[str]:
    known = gateway_metric_names() | EXTERNAL
    return [f"{where}: {name}" for where, expr in filled(dashboard)
            for name, _ in selectors(expr) if name not in known]


def unscoped(dashboard: dict[str, Any]) -> list[str]:
    """Selectors that would read other services' series: each must pin the chosen service."""
    wrong = []
    for where, expr in templated(dashboard):
        for name, matchers in selectors(expr):
            if where == "variable namespace":
                continue  # lists the namespaces: nothing to pin yet
            if matchers.get("namespace") != ("=", "$namespace"):
                wrong.append(f"{where}: {name} not pinned to $namespace")
            if where == "variable inferenceservice":
                continue
            if name in KUBE_STATE_METRICS:  # no inferenceservice label: the object's name, NAME-REVISION
                named = [v for label, (op, v) in matchers.items()
                         if label in ("deployment", "horizontalpodautoscaler") and op == "=~"]
                if not any(re.search(r"\$inferenceservice-\[0-9a-f\]\{10\}$", v) for v in named):
                    wrong.append(f"{where}: {name} not pinned to $inferenceservice's objects")
            elif matchers.get("inferenceservice") != ("=", "$inferenceservice"):
                wrong.append(f"{where}: {name} not pinned to $inferenceservice")
    return wrong


# --- shape -----------------------------------------------------------------------------------------


def test_the_dashboard_has_grafanas_shape() -> None:
    d = DASHBOARD
    assert isinstance(d["title"], str) and d["title"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", d["uid"]), "Grafana uids are at most 40 such characters"
    assert isinstance(d["schemaVersion"], int)
    assert d.get("id") is None, "an id is the importing Grafana's; a fixed one clashes"
    names = [var["name"] for var in d["templating"]["list"]]
    assert names == ["datasource", "namespace", "inferenceservice"]
    assert d["templating"]["list"][0]["type"] == "datasource" and d["templating"]["list"][0]["query"] == "prometheus"
    assert d["panels"]
    ids = [panel["id"] for panel in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in d["panels"]:
        assert panel["title"] and panel["type"] == "timeseries", panel.get("title")
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"] == panel["datasource"], panel["title"]


def test_the_dashboard_has_the_panels_the_docs_promise() -> None:
    titles = {panel["title"] for panel in DASHBOARD["panels"]}
    assert titles >= {
        "Inference requests per second", "Error ratio (5xx)", "Latency p50 / p99", "Triton queue time per request",
        "Batch size", "Replicas", "Canary weight", "Response cache hit ratio", "Requests by API key",
    }
    docs = (ROOT / "docs" / "metrics.md").read_text()
    for title in titles:
        assert title in docs, f"docs/metrics.md does not describe the panel {title!r}"


# --- the queries -------------------------------------------------------------------------------------


def _check_rules(exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`promtool check rules` on one recording rule per expression: promtool parses each."""
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{n}", "expr": expr} for n, expr in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


def test_every_query_parses_with_promtool(tmp_path: Path) -> None:
    exprs = [expr for _, expr in filled(DASHBOARD)]
    assert len(exprs) > len(DASHBOARD["panels"])  # the variables' selectors are in too
    result = _check_rules(exprs, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_query(tmp_path: Path) -> None:
    """The check above would catch a bad panel: promtool does reject what Prometheus cannot parse."""
    assert _check_rules(["sum(rate(tritium_gateway_requests_total[5m])"], tmp_path).returncode != 0


def test_every_variable_is_defined_and_filled() -> None:
    for where, expr in filled(DASHBOARD):
        assert not re.search(r"\$[A-Za-z_{]", expr), f"{where}: a variable left in {expr}"
    with pytest.raises(AssertionError, match=r"undefined variable \$nmespace"):
        substitute('up{namespace="$nmespace"}', VALUES)


def test_every_metric_a_panel_names_exists() -> None:
    assert unknown_metrics(DASHBOARD) == []


def test_a_misspelt_metric_is_caught() -> None:
    broken = load()
    broken["panels"][0]["targets"][0]["expr"] = (
        'sum(rate(tritium_gateway_request_total{namespace="$namespace"}[$__rate_interval])) / '
        'sum by (revision) (rate(nv_inference_exec_count{inferenceservice="$inferenceservice"}[5m]))')
    assert unknown_metrics(broken) == [f"panel {broken['panels'][0]['title']!r} A: tritium_gateway_request_total"]


def test_the_gateway_names_come_from_the_code() -> None:
    """The names the check accepts are the registries', suffixes and all, not a copy that can drift."""
    names = gateway_metric_names()
    assert {"tritium_gateway_requests_total", "tritium_gateway_request_duration_seconds_bucket",
            "tritium_gateway_cache_total", "tritium_gateway_canary_weight_percent",
            "tritium_gateway_forwarded_requests_total", "tritium_gateway_key_requests_total"} <= names
    assert "tritium_gateway_requests" not in names and not any(n.startswith("tritium_stage_") for n in names)


def test_the_selector_reader_sees_every_name() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, revision) (rate(a_bucket{x="{b}",y=~"c|d"}[5m]))) / on (pod) '
            'group_left (z) label_replace(b_total offset 5m, "r", "$1", "n", "(.*)") > bool 0 or vector(1) * c')
    assert selectors(expr) == [("a_bucket", {"x": ("=", "{b}"), "y": ("=~", "c|d")}), ("b_total", {}), ("c", {})]
    with pytest.raises(AssertionError, match="without a metric name"):
        selectors('{__name__="anything"}')


def test_every_selector_is_scoped_to_the_chosen_service() -> None:
    assert unscoped(DASHBOARD) == []
    broken = load()
    broken["panels"][0]["targets"][0]["expr"] = 'sum(rate(tritium_gateway_requests_total{namespace="$namespace"}[5m]))'
    assert unscoped(broken) == [f"panel {broken['panels'][0]['title']!r} A: tritium_gateway_requests_total "
                                "not pinned to $inferenceservice"]


def test_inference_panels_count_the_endpoints_the_analysis_counts() -> None:
    """Probes and metadata calls are not traffic: the same endpoints as the canary analysis."""
    endpoints = [m["endpoint"] for _, expr in templated(DASHBOARD) for _, m in selectors(expr) if "endpoint" in m]
    assert endpoints and set(endpoints) == {("=~", "|".join(INFERENCE_ENDPOINTS))}


# --- values on synthetic series ------------------------------------------------------------------------

NS, ISVC, R1, R2 = "ml", "demo", "0123456789", "abcdef0123"


def _series(name: str, values: str, revision: str, pod: str, isvc: str = ISVC, **labels: str) -> dict[str, str]:
    all_labels = {"namespace": NS, "inferenceservice": isvc, "revision": revision, "pod": pod, **labels}
    return {"series": name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(all_labels.items())) + "}",
            "values": values}


# Per 15 s. R1's pod serves m1 (1350 requests waiting 10 ms each) and m2 (150 requests, 100 ms each):
# request-weighted (1350*10 + 150*100) / 1500 = 19 ms, where an average of the two models'
# averages would be 55. Another service's pod in the namespace must not count.
INPUT = [
    _series("nv_inference_request_success", "0+1350x40", R1, "a", model="m1", version="1"),
    _series("nv_inference_queue_duration_us", "0+13500000x40", R1, "a", model="m1", version="1"),
    _series("nv_inference_request_success", "0+150x40", R1, "a", model="m2", version="1"),
    _series("nv_inference_queue_duration_us", "0+15000000x40", R1, "a", model="m2", version="1"),
    _series("nv_inference_request_success", "0+15x40", R1, "o", isvc="other", model="m1", version="1"),
    _series("nv_inference_queue_duration_us", "0+15000000000x40", R1, "o", isvc="other", model="m1", version="1"),
    # 600 inferences in 150 executions: batches of 4.
    _series("nv_inference_count", "0+600x40", R1, "a", model="m1", version="1"),
    _series("nv_inference_exec_count", "0+150x40", R1, "a", model="m1", version="1"),
    # R1: 10 % of inference calls fail (the probe's 200s do not dilute it); R2 fails none: 0, not absent.
    _series("tritium_gateway_requests_total", "0+135x40", R1, "a", model="m1", endpoint="infer", code="200"),
    _series("tritium_gateway_requests_total", "0+15x40", R1, "a", model="m1", endpoint="infer", code="503"),
    _series("tritium_gateway_requests_total", "0+150x40", R1, "a", model="", endpoint="ready", code="200"),
    _series("tritium_gateway_requests_total", "0+30x40", R2, "b", model="m1", endpoint="stream", code="200"),
    # Cache: R1 hits 3 of 4 lookups, R2 none.
    _series("tritium_gateway_cache_total", "0+45x40", R1, "a", model="m1", result="hit"),
    _series("tritium_gateway_cache_total", "0+15x40", R1, "a", model="m1", result="miss"),
    _series("tritium_gateway_cache_total", "0+30x40", R2, "b", model="m1", result="miss"),
    # Two stable gateways forward 5 % to the canary.
    _series("tritium_gateway_canary_weight_percent", "5+0x40", R1, "a", canary=R2),
    _series("tritium_gateway_canary_weight_percent", "5+0x40", R1, "c", canary=R2),
]

# Panel title -> the samples its first query gives on INPUT.
EXPECTED: dict[str, list[tuple[dict[str, str], float]]] = {
    "Triton queue time per request": [({"revision": R1}, 19)],
    "Batch size": [({"revision": R1}, 4)],
    "Error ratio (5xx)": [({"revision": R1}, 0.1), ({"revision": R2}, 0)],
    "Response cache hit ratio": [({"revision": R1}, 0.75), ({"revision": R2}, 0)],
    "Canary weight": [({"revision": R1, "canary": R2}, 5)],
    "Inference requests per second": [({"revision": R1}, 10), ({"revision": R2}, 2)],
}


def test_the_panels_give_the_expected_numbers(tmp_path: Path) -> None:
    by_title = {panel["title"]: panel for panel in DASHBOARD["panels"]}
    values = {**VALUES, "namespace": NS, "inferenceservice": ISVC}
    (tmp_path / "none.yaml").write_text("groups: []\n")
    tests = {
        "rule_files": ["none.yaml"],
        "evaluation_interval": "15s",
        "tests": [{
            "interval": "15s",
            "input_series": INPUT,
            "promql_expr_test": [
                {"expr": substitute(by_title[title]["targets"][0]["expr"], values), "eval_time": "10m",
                 "exp_samples": [{"labels": "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}",
                                  "value": value} for labels, value in samples]}
                for title, samples in EXPECTED.items()
            ],
        }],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    run_promtool("test", "rules", str(tmp_path / "tests.yaml"))
