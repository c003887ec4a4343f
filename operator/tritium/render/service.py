"""The Services in front of the gateways.

The main Service (NAME) is the one stable name clients use: it selects the stable revision's pods
only, so a canary gets exactly the share the router gives it and not its share of pod counts.
Each running revision also has a Service of its own (NAME-REVISION), selecting only its pods:
the stable gateways forward the canary's share there (router ``gateway``), and an HTTPRoute
weighs them (router ``gatewayAPI``).
"""

from __future__ import annotations

from typing import Any

from tritium.api.resource import InferenceService
from tritium.render.metadata import LABEL_REVISION, object_meta, selector_labels
from tritium.render.routing import Routing, revision_service_name


def service_port(isvc: InferenceService) -> tuple[str, int]:
    return ("https", 443) if isvc.spec.security.tls else ("http", 80)


def url_of(isvc: InferenceService) -> str:
    scheme, port = service_port(isvc)
    default = 443 if scheme == "https" else 80
    host = f"{isvc.name}.{isvc.namespace}.svc.cluster.local"
    return f"{scheme}://{host}" + ("" if port == default else f":{port}")


def _service(isvc: InferenceService, name: str, revision: str) -> dict[str, Any]:
    scheme, port = service_port(isvc)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(isvc, name, revision),
        "spec": {
            "type": "ClusterIP",
            "selector": {**selector_labels(isvc), LABEL_REVISION: revision},
            "ports": [
                {"name": scheme, "port": port, "targetPort": "gateway", "protocol": "TCP", "appProtocol": scheme}
            ],
        },
    }


def render(isvc: InferenceService, routing: Routing) -> dict[str, Any]:
    """The main Service: the stable revision's pods (the only revision's, outside a rollout)."""
    return _service(isvc, isvc.name, routing.stable)


def render_revisions(isvc: InferenceService, routing: Routing) -> list[dict[str, Any]]:
    """One Service per running revision, named like its Deployment."""
    return [_service(isvc, revision_service_name(isvc, rev), rev) for rev in routing.revisions]
