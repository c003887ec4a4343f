"""The per-revision KEDA ScaledObject (keda.sh/v1alpha1) of autoscaler keda, else None.

Like the HPA of render/hpa.py: one per revision Deployment, named like it and targeting it, with
the same bounds and the same behavior (KEDA copies it into the HPA it makes, keda-hpa-NAME). Only
where the metric comes from differs: KEDA asks Prometheus itself, so no prometheus-adapter is
needed.

cpu is KEDA's cpu trigger (metrics-server, % of the request, like the HPA's Resource metric). The
other metrics are a prometheus trigger on ``autoscaling.prometheusUrl``. Its query is, per pod, the
query of the chart's prometheus-adapter rule (charts/tritium/files/prometheus-adapter-rules.yaml),
selecting the revision's series by the labels its PodMonitor adds (namespace, inferenceservice,
revision), summed over the revision's pods. KEDA hands that one number to the HPA as an External
metric with an AverageValue target, which the HPA divides by the revision's pod count: the same
per-pod average the adapter's Pods metric gives, against the same per-pod target. promtool holds
the numbers of both sides together (tests/unit/test_render_scaledobject.py).

A query with no result (no series scraped yet, or the PodMonitor's target lost) is an error for
KEDA (ignoreNullValues false), not a 0: like the HPA without a value, it then keeps the pods it
has rather than scale an unobserved revision down. An idle pod's rps and queue time are 0, not
missing (the ``or`` branches), so an idle revision does scale down.
"""

from __future__ import annotations

from typing import Any

from tritium.api.resource import InferenceService
from tritium.api.spec import AutoscalingSpec
from tritium.render import hpa
from tritium.render.metadata import object_meta, revision_name
from tritium.render.podmonitor import SERIES_LABEL_REVISION, SERIES_LABEL_SERVICE

API_VERSION = "keda.sh/v1alpha1"
MATCHERS = "<<M>>"  # replaced by the revision's label matchers

# autoscaling.metric -> the per-pod value (one series per pod), as the adapter rule computes it.
PER_POD: dict[str, str] = {
    "rps": (
        'sum by (pod) (rate(tritium_gateway_requests_total{<<M>>,endpoint=~"infer|invoke|stream"}[1m]))'
        " or sum by (pod) (rate(tritium_gateway_requests_total{<<M>>}[1m])) * 0"
    ),
    "gpu": "avg by (pod) (avg_over_time(nv_gpu_utilization{<<M>>}[1m]))",
    "queueTime": (
        "sum by (pod) (rate(nv_inference_queue_duration_us{<<M>>}[1m]))"
        " / (sum by (pod) (rate(nv_inference_request_success{<<M>>}[1m])) > 0) / 1000"
        " or sum by (pod) (rate(nv_inference_request_success{<<M>>}[1m])) * 0"
    ),
    "pending": "sum by (pod) (avg_over_time(nv_inference_pending_request_count{<<M>>}[1m]))",
}


def matchers(namespace: str, service: str, revision: str) -> str:
    """The label matchers of one revision's series, as its PodMonitor labels them."""
    return f'namespace="{namespace}",{SERIES_LABEL_SERVICE}="{service}",{SERIES_LABEL_REVISION}="{revision}"'


def query(metric: str, namespace: str, service: str, revision: str) -> str:
    """The revision's total of ``metric``: the per-pod values summed over its pods."""
    return f"sum({PER_POD[metric].replace(MATCHERS, matchers(namespace, service, revision))})"


def threshold(value: float) -> str:
    """A decimal for KEDA's threshold, to the thousandth like hpa.quantity (KEDA's own precision), never 0."""
    milli = max(1, round(value * 1000))
    return f"{milli // 1000}.{milli % 1000:03d}".rstrip("0").rstrip(".")


def trigger(isvc: InferenceService, revision: str) -> dict[str, Any]:
    scaling: AutoscalingSpec = isvc.spec.autoscaling
    if scaling.metric == "cpu":
        return {"type": "cpu", "metricType": "Utilization",
                "metadata": {"value": str(round(scaling.target_utilization * 100))}}
    if scaling.prometheus_url is None:  # the CEL rule refuses this spec before render
        raise ValueError(f"autoscaler keda with metric {scaling.metric} requires prometheusUrl")
    return {"type": "prometheus", "metricType": "AverageValue", "metadata": {
        "serverAddress": scaling.prometheus_url,
        "query": query(scaling.metric, isvc.namespace, isvc.name, revision),
        "threshold": threshold(hpa.pods_target(scaling)),
        "ignoreNullValues": "false",
    }}


def render(isvc: InferenceService, revision: str) -> dict[str, Any] | None:
    scaling = isvc.spec.autoscaling
    if not scaling.enabled or scaling.autoscaler != "keda":
        return None
    name = revision_name(isvc, revision)
    return {
        "apiVersion": API_VERSION,
        "kind": "ScaledObject",
        "metadata": object_meta(isvc, name, revision),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicaCount": scaling.min_replicas,
            "maxReplicaCount": scaling.max_replicas,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": hpa.behavior(scaling)}},
            "triggers": [trigger(isvc, revision)],
        },
    }
