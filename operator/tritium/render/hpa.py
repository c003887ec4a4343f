"""The per-revision HorizontalPodAutoscaler (autoscaling/v2), or None when autoscaling is off or
driven by KEDA (autoscaler keda: render/scaledobject.py, whose ScaledObject has the same behavior).

One HPA per revision Deployment, named like it, so a new revision scales on its own while the
stable one keeps the capacity it has until it is removed (its HPA goes with it, never first).

Scale-up answers a burst with no stabilization and may double the pods (or add four, whichever
is more) every 15 s. The time from a load rise to a new pod's request is then about: the metric
resolution (metrics-server scrapes the kubelets every 15 s) + the HPA sync period (15 s, the
kube-controller-manager default) + the pod's start (image pull and model load), so about 30 s plus
start-up, which is what autoscaling.scaleUpSeconds' default says. Scale-down waits for the load to
stay low for scaleDownCooldownSeconds (the stabilization window), then may remove any number.

The metric: cpu is a Resource metric (metrics-server, % of the request). The others are Pods
metrics (one value per pod, target AverageValue) under names that the prometheus-adapter rules of
the chart (charts/tritium/files/prometheus-adapter-rules.yaml) serve from the gateway's and
Triton's series; the names below and the rules' ``as:`` names must stay the same (a test holds
them together). A Pods metric has no Utilization target, so the gpu fraction is an AverageValue.
"""

from __future__ import annotations

from typing import Any

from tritium.api.resource import InferenceService
from tritium.api.spec import AutoscalingSpec
from tritium.render.metadata import object_meta, revision_name

SYNC_SECONDS = 15  # the HPA controller's default sync period, and metrics-server's resolution

# autoscaling.metric -> the custom metric the prometheus-adapter rules serve for it.
POD_METRICS: dict[str, str] = {
    "rps": "tritium_requests_per_second",
    "gpu": "tritium_gpu_utilization",
    "queueTime": "tritium_queue_time_per_request_ms",
    "pending": "tritium_pending_requests",
}
# The targets of the metrics whose field may be left unset (the descriptions in api/spec.py say so).
DEFAULT_QUEUE_TIME_MS = 50.0
DEFAULT_PENDING_REQUESTS = 4.0


def quantity(value: float) -> str:
    """A Kubernetes quantity for ``value``: whole numbers plain, the rest in thousandths (700m).

    Never 0: the fields are > 0, and a target of 0 would ask for maxReplicas whatever the load.
    """
    milli = max(1, round(value * 1000))
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def pods_target(scaling: AutoscalingSpec) -> float:
    """The per-pod value the HPA aims for, in the unit of the chosen Pods metric."""
    if scaling.metric == "rps":
        if scaling.target_requests_per_second is None:  # the CEL rule refuses this spec before render
            raise ValueError("autoscaling.metric rps requires targetRequestsPerSecond")
        return scaling.target_requests_per_second
    if scaling.metric == "queueTime":
        return scaling.target_queue_time_ms or DEFAULT_QUEUE_TIME_MS
    if scaling.metric == "pending":
        return scaling.target_pending_requests or DEFAULT_PENDING_REQUESTS
    return scaling.target_utilization  # gpu: nv_gpu_utilization is a fraction too


def metric(scaling: AutoscalingSpec) -> dict[str, Any]:
    """The HPA's one metric entry for autoscaling.metric."""
    if scaling.metric == "cpu":
        return {"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": round(scaling.target_utilization * 100)}}}
    return {"type": "Pods", "pods": {
        "metric": {"name": POD_METRICS[scaling.metric]},
        "target": {"type": "AverageValue", "averageValue": quantity(pods_target(scaling))},
    }}


def behavior(scaling: AutoscalingSpec) -> dict[str, Any]:
    """How fast the autoscaler may add and remove pods (the HPA's, and KEDA's HPA's, behavior)."""
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [
                {"type": "Percent", "value": 100, "periodSeconds": SYNC_SECONDS},
                {"type": "Pods", "value": 4, "periodSeconds": SYNC_SECONDS},
            ],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": scaling.scale_down_cooldown_seconds,
            "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": SYNC_SECONDS}],
        },
    }


def render(isvc: InferenceService, revision: str) -> dict[str, Any] | None:
    scaling = isvc.spec.autoscaling
    if not scaling.enabled or scaling.autoscaler != "hpa":
        return None  # autoscaler keda: render/scaledobject.py, and KEDA makes the HPA
    name = revision_name(isvc, revision)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": object_meta(isvc, name, revision),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [metric(scaling)],
            "behavior": behavior(scaling),
        },
    }
