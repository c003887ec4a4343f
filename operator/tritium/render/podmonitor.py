"""The PodMonitor (monitoring.coreos.com/v1) of a service, or None unless monitoring.serviceMonitor.

A PodMonitor rather than a ServiceMonitor: the Service exposes only the gateway port, while the
metrics live on container ports of the pod (the gateway's ``metrics``, Triton's
``triton-metrics``, and ``pre-http`` / ``post-http`` of the stages the spec has, where each stage
serves its probes and its ``tritium_stage_*`` metrics), which only a PodMonitor can scrape. The
spec field keeps its name ``serviceMonitor`` for compatibility.

One per service (not per revision), selecting every serving pod of the service whatever its
revision. Each series gets two labels the alert rules (render/prometheusrule.py) select on:
``inferenceservice`` (the service's name) and ``revision`` (from the pod label).
"""

from __future__ import annotations

from typing import Any

from tritium import pod_layout as L
from tritium.api.resource import InferenceService
from tritium.render.metadata import LABEL_REVISION, object_meta, selector_labels

SCRAPE_INTERVAL = "15s"
SERIES_LABEL_SERVICE = "inferenceservice"
SERIES_LABEL_REVISION = "revision"
# The ports (by name, render/deployment.py) scraped in every pod.
METRICS_PORTS = ("metrics", "triton-metrics")


def stage_ports(isvc: InferenceService) -> list[tuple[str, int]]:
    """(name, number) of the TCP ports of the stages the spec has, where each serves its metrics."""
    stages = ((isvc.spec.preprocess, L.PRE_PORT_NAME, L.PRE_PORT), (isvc.spec.postprocess, L.POST_PORT_NAME,
                                                                     L.POST_PORT))
    return [(name, number) for section, name, number in stages if section is not None]


def metrics_ports(isvc: InferenceService) -> list[str]:
    """The ports scraped in the service's pods: METRICS_PORTS, then those of the stages it has.

    Only the stages the spec has: an endpoint naming a port the pod lacks would find no target,
    which is harmless but says something the pod does not have.
    """
    return [*METRICS_PORTS, *(name for name, _ in stage_ports(isvc))]


def _meta_label(pod_label: str) -> str:
    """Prometheus' discovery label for a pod label (every non-alphanumeric character becomes _)."""
    return "__meta_kubernetes_pod_label_" + "".join(c if c.isalnum() else "_" for c in pod_label)


def relabelings(isvc: InferenceService) -> list[dict[str, Any]]:
    return [
        {"action": "replace", "targetLabel": SERIES_LABEL_SERVICE, "replacement": isvc.name},
        {"action": "replace", "sourceLabels": [_meta_label(LABEL_REVISION)], "targetLabel": SERIES_LABEL_REVISION},
    ]


def render(isvc: InferenceService, revision: str) -> dict[str, Any] | None:
    if not isvc.spec.monitoring.service_monitor:
        return None
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": object_meta(isvc, isvc.name, revision),
        "spec": {
            "selector": {"matchLabels": selector_labels(isvc)},
            "podMetricsEndpoints": [
                # honorLabels: the gateway's own `endpoint` label (which API a request called) must
                # not be renamed exported_endpoint by the Prometheus Operator's target label of the
                # same name (the scraped port), which rollout analysis and alerts select on.
                {"port": port, "path": "/metrics", "interval": SCRAPE_INTERVAL, "honorLabels": True,
                 "relabelings": relabelings(isvc)}
                for port in metrics_ports(isvc)
            ],
        },
    }
