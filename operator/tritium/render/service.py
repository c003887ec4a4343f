"""The Service in front of the gateway: one stable name for every revision of the service."""

from __future__ import annotations

from typing import Any

from tritium.api.resource import InferenceService
from tritium.render.metadata import object_meta, selector_labels


def service_port(isvc: InferenceService) -> tuple[str, int]:
    return ("https", 443) if isvc.spec.security.tls else ("http", 80)


def url_of(isvc: InferenceService) -> str:
    scheme, port = service_port(isvc)
    default = 443 if scheme == "https" else 80
    host = f"{isvc.name}.{isvc.namespace}.svc.cluster.local"
    return f"{scheme}://{host}" + ("" if port == default else f":{port}")


def render(isvc: InferenceService, revision: str) -> dict[str, Any]:
    scheme, port = service_port(isvc)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(isvc, isvc.name, revision),
        "spec": {
            "type": "ClusterIP",
            # All revisions: with the replicas router, traffic splits by ready pods per revision.
            "selector": selector_labels(isvc),
            "ports": [
                {"name": scheme, "port": port, "targetPort": "gateway", "protocol": "TCP", "appProtocol": scheme}
            ],
        },
    }
