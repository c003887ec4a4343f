"""The NetworkPolicy of the serving pods: only the gateway and the metrics ports answer other pods.

Triton's HTTP port and the stage sidecars listen on the pod IP so that the kubelet can probe them;
without this policy any pod in the cluster could reach Triton or a stage directly and skip the
gateway (authentication, rate limits, validation). Kubelet probes come from the node and are not
subject to NetworkPolicy in the common CNIs.
"""

from __future__ import annotations

from typing import Any

from tritium import pod_layout as L
from tritium.api.resource import InferenceService
from tritium.render.metadata import object_meta, selector_labels


def render(isvc: InferenceService, revision: str) -> dict[str, Any]:
    ports = [
        {"protocol": "TCP", "port": L.GATEWAY_PORT},  # clients, through the Service
        {"protocol": "TCP", "port": L.GATEWAY_METRICS_PORT},  # Prometheus
        {"protocol": "TCP", "port": L.TRITON_METRICS_PORT},  # Prometheus
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_meta(isvc, isvc.name, revision),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(isvc)},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": ports}],
        },
    }
