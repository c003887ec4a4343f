"""The NetworkPolicy of the serving pods: only the gateway and the metrics ports answer other pods.

Triton's HTTP port listens on the pod IP so that the kubelet can probe it; without this policy
any pod in the cluster could reach Triton directly and skip the gateway (authentication, rate
limits, validation). Kubelet probes come from the node and are not subject to NetworkPolicy in
the common CNIs.

The stages' TCP ports are metrics ports too (the PodMonitor scrapes them, render/podmonitor.py),
so they are admitted like the gateway's and Triton's, for the stages the spec has. A stage
refuses to process messages there from anything but loopback (dataplane/stages/server.py): the
gateway calls it over a Unix socket, and a pod that reaches the port gets probes and metrics only.
"""

from __future__ import annotations

from typing import Any

from tritium import pod_layout as L
from tritium.api.resource import InferenceService
from tritium.render.metadata import object_meta, selector_labels
from tritium.render.podmonitor import stage_ports


def render(isvc: InferenceService, revision: str) -> dict[str, Any]:
    ports = [
        {"protocol": "TCP", "port": L.GATEWAY_PORT},  # clients, through the Service
        {"protocol": "TCP", "port": L.GATEWAY_METRICS_PORT},  # Prometheus
        {"protocol": "TCP", "port": L.TRITON_METRICS_PORT},  # Prometheus
    ]
    ports += [{"protocol": "TCP", "port": number} for _, number in stage_ports(isvc)]  # Prometheus
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
