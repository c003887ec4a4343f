"""The PrometheusRule (monitoring.coreos.com/v1) of a service: its alerts, or None when it has none.

Which alerts:
- ``spec.monitoring.alerts`` set: exactly those (they replace the defaults; ``alerts: []`` means
  no alert at all), for any of the metrics below;
- unset, with ``monitoring.serviceMonitor: true``: the defaults, p99 latency over 1000 ms for
  5 min (warning), error ratio over 1 % for 5 min (critical), a failing canary (below) and, with
  autoscaling on, a revision held at maxReplicas for 15 min (warning);
- neither: no PrometheusRule.

What each metric is (every expression selects this service's series only: its namespace and the
``inferenceservice`` label the PodMonitor (render/podmonitor.py) puts on them, per ``revision``):
- p99LatencyMs: the gateway's p99 request duration over 5 min, in ms (``tritium_gateway_request_duration_seconds``);
- errorRatio: the share of gateway answers with a 5xx code over 5 min (``tritium_gateway_requests_total``);
- queueTimeMs: Triton's mean queue time per successful request over 5 min, in ms
  (``nv_inference_queue_duration_us`` / ``nv_inference_request_success``);
- availability: the share of the service's gateway pods Prometheus can scrape (``up``); it alerts
  when it falls *below* the threshold, the others when they go above it.
The replicas-at-max alert reads kube-state-metrics' HPA series (``horizontalpodautoscaler`` is
NAME-REVISION, see render/hpa.py; keda-hpa-NAME-REVISION, KEDA's, with autoscaler keda).

The canary-failing alert (with ``traffic.router: gateway``, the default) reads what the stable
revision's gateways count of the requests they forward to the canary
(``tritium_gateway_forwarded_requests_total``; its own ``revision`` label, kept by the PodMonitor's
honorLabels, is the canary's): it fires while the share of them that failed (a 5xx answer, no
answer before the deadline, a broken stream, or a canary that could not be reached) is above
``rollout.analysis.maxErrorRatio`` for 1 min. Only a canary has such series, so the alert names
the canary revision whatever the stable one is. With ``router: gatewayAPI`` nothing is forwarded;
the per-revision error-ratio alert covers the canary's revision there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tritium import pod_layout as L
from tritium.api.resource import InferenceService
from tritium.api.spec import AlertRule
from tritium.render.metadata import object_meta, revision_name
from tritium.render.podmonitor import SERIES_LABEL_REVISION as REV
from tritium.render.podmonitor import SERIES_LABEL_SERVICE

WINDOW = "5m"
REPLICAS_AT_MAX_SECONDS = 900
CANARY_FAILING_SECONDS = 60
# Outcomes of a forwarded request that count as a canary failure (dataplane/metrics.py `forwarded`).
CANARY_FAILED_CODES = '5..|deadline|broken|fallback'


@dataclass(frozen=True)
class _Metric:
    alert: str
    expr: str  # a PromQL format string: {sel} is the service's selector, {window} the rate window
    above: bool
    summary: str
    unit: str = ""


_METRICS: dict[str, _Metric] = {
    "p99LatencyMs": _Metric(
        "TritiumHighP99Latency",
        "histogram_quantile(0.99, sum by (namespace, {svc}, {rev}, le) "
        "(rate(tritium_gateway_request_duration_seconds_bucket{{{sel}}}[{window}]))) * 1000",
        True, "p99 latency", " ms",
    ),
    "errorRatio": _Metric(
        "TritiumHighErrorRatio",
        "sum by (namespace, {svc}, {rev}) (rate(tritium_gateway_requests_total{{{sel},code=~\"5..\"}}[{window}]))"
        " / sum by (namespace, {svc}, {rev}) (rate(tritium_gateway_requests_total{{{sel}}}[{window}]))",
        True, "error ratio",
    ),
    "queueTimeMs": _Metric(
        "TritiumHighQueueTime",
        "sum by (namespace, {svc}, {rev}) (rate(nv_inference_queue_duration_us{{{sel}}}[{window}]))"
        " / sum by (namespace, {svc}, {rev}) (rate(nv_inference_request_success{{{sel}}}[{window}])) / 1000",
        True, "Triton queue time per request", " ms",
    ),
    "availability": _Metric(
        "TritiumLowAvailability",
        "avg by (namespace, {svc}, {rev}) (up{{{sel},container=\"" + L.GATEWAY_CONTAINER + "\"}})",
        False, "share of gateway pods up",
    ),
}

DEFAULT_ALERTS = (
    AlertRule(metric="p99LatencyMs", threshold=1000, for_seconds=300, severity="warning"),
    AlertRule(metric="errorRatio", threshold=0.01, for_seconds=300, severity="critical"),
)


def _selector(isvc: InferenceService) -> str:
    return f'namespace="{isvc.namespace}",{SERIES_LABEL_SERVICE}="{isvc.name}"'


def _duration(seconds: int) -> str:
    return f"{seconds // 60}m" if seconds % 60 == 0 and seconds else f"{seconds}s"


def _labels(isvc: InferenceService, severity: str) -> dict[str, str]:
    return {"severity": severity, SERIES_LABEL_SERVICE: isvc.name}


def alert_rule(isvc: InferenceService, rule: AlertRule) -> dict[str, Any]:
    """One Prometheus alerting rule for ``rule``."""
    m = _METRICS[rule.metric]
    expr = m.expr.format(sel=_selector(isvc), window=WINDOW, svc=SERIES_LABEL_SERVICE, rev=REV)
    op = ">" if m.above else "<"
    where = f"{isvc.namespace}/{isvc.name} revision {{{{ $labels.{REV} }}}}"
    return {
        "alert": m.alert,
        "expr": f"{expr} {op} {rule.threshold:g}",
        "for": _duration(rule.for_seconds),
        "labels": _labels(isvc, rule.severity),
        "annotations": {
            "summary": f"InferenceService {isvc.namespace}/{isvc.name}: {m.summary} "
                       f"{'above' if m.above else 'below'} {rule.threshold:g}{m.unit}",
            "description": f"{m.summary.capitalize()} of {where} is {{{{ $value }}}}{m.unit} "
                           f"({op} {rule.threshold:g}{m.unit} for {_duration(rule.for_seconds)}).",
        },
    }


def replicas_at_max_rule(isvc: InferenceService) -> dict[str, Any]:
    """The revision's HPA has held it at maxReplicas for 15 min: the service needs more room."""
    prefix = revision_name(isvc, "0" * 10)[:-10]  # NAME- (shortened like the HPA's name)
    if isvc.spec.autoscaling.autoscaler == "keda":
        prefix = f"keda-hpa-{prefix}"  # the HPA KEDA makes for the ScaledObject NAME-REVISION
    hpa = f'namespace="{isvc.namespace}",horizontalpodautoscaler=~"{prefix}[0-9a-f]{{10}}"'
    expr = (
        f'label_replace(kube_horizontalpodautoscaler_status_current_replicas{{{hpa}}}'
        f' >= on (namespace, horizontalpodautoscaler) kube_horizontalpodautoscaler_spec_max_replicas{{{hpa}}},'
        f' "{REV}", "$1", "horizontalpodautoscaler", ".*-([0-9a-f]{{10}})")'
    )
    return {
        "alert": "TritiumReplicasAtMax",
        "expr": expr,
        "for": _duration(REPLICAS_AT_MAX_SECONDS),
        "labels": _labels(isvc, "warning"),
        "annotations": {
            "summary": f"InferenceService {isvc.namespace}/{isvc.name} runs at maxReplicas",
            "description": f"Revision {{{{ $labels.{REV} }}}} of {isvc.namespace}/{isvc.name} has run "
                           f"{{{{ $value }}}} pods, its autoscaling.maxReplicas, for 15m: raise maxReplicas "
                           "or make the pods faster.",
        },
    }


def canary_failing_rule(isvc: InferenceService) -> dict[str, Any]:
    """The canary revision fails more of the requests forwarded to it than the analysis accepts."""
    sel = _selector(isvc)
    by = f"sum by (namespace, {SERIES_LABEL_SERVICE}, {REV})"
    forwarded = "tritium_gateway_forwarded_requests_total"
    threshold = isvc.spec.rollout.analysis.max_error_ratio
    expr = (
        f'{by} (rate({forwarded}{{{sel},code=~"{CANARY_FAILED_CODES}"}}[{WINDOW}]))'
        f" / {by} (rate({forwarded}{{{sel}}}[{WINDOW}])) > {threshold:g}"
    )
    return {
        "alert": "TritiumCanaryFailing",
        "expr": expr,
        "for": _duration(CANARY_FAILING_SECONDS),
        "labels": _labels(isvc, "warning"),
        "annotations": {
            "summary": f"InferenceService {isvc.namespace}/{isvc.name}: canary revision "
                       f"{{{{ $labels.{REV} }}}} is failing",
            "description": f"Canary revision {{{{ $labels.{REV} }}}} of {isvc.namespace}/{isvc.name} failed "
                           f"{{{{ $value }}}} of the requests forwarded to it (> {threshold:g}, "
                           "rollout.analysis.maxErrorRatio, for 1m).",
        },
    }


def rules_of(isvc: InferenceService) -> list[dict[str, Any]]:
    """The alerting rules the service wants (see the module docstring)."""
    mon = isvc.spec.monitoring
    if mon.alerts is not None:
        return [alert_rule(isvc, r) for r in mon.alerts]
    if not mon.service_monitor:
        return []
    rules = [alert_rule(isvc, r) for r in DEFAULT_ALERTS]
    if isvc.spec.traffic.router == "gateway":
        rules.append(canary_failing_rule(isvc))
    if isvc.spec.autoscaling.enabled:
        rules.append(replicas_at_max_rule(isvc))
    return rules


def render(isvc: InferenceService, revision: str) -> dict[str, Any] | None:
    rules = rules_of(isvc)
    if not rules:
        return None
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": object_meta(isvc, isvc.name, revision),
        "spec": {"groups": [{"name": f"tritium.{isvc.namespace}.{isvc.name}", "rules": rules}]},
    }
