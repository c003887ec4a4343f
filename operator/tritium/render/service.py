"""The Services in front of the gateways.

The main Service (NAME) is the one stable name clients use: it selects the stable revision's pods
only, so a canary gets exactly the share the router gives it and not its share of pod counts.
A revision gets a Service of its own (NAME-REVISION, selecting only its pods) only while a router
sends traffic to it by that name:

- router ``gateway``: the canary, where the stable gateways forward its share; after a promotion
  the new stable keeps it while the previous revision still runs, because those gateways follow
  the traffic file, which the kubelet refreshes late. A revision serving alone has none: the
  main Service is all it needs, and a Service is the costliest child to create (a ClusterIP, its
  Endpoints and EndpointSlices).
- router ``gatewayAPI``: every running revision, as the HTTPRoute's weighted backends.
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


def addressed_revisions(isvc: InferenceService, routing: Routing) -> tuple[str, ...]:
    """The revisions a router sends traffic to through their own Service (see the module doc)."""
    if isvc.spec.traffic.router == "gatewayAPI":
        return routing.revisions
    if routing.canary:
        return (routing.canary,)
    return (routing.stable,) if len(routing.revisions) > 1 else ()


def render_revisions(isvc: InferenceService, routing: Routing) -> list[dict[str, Any]]:
    """The own Services of the revisions a router addresses by name, each named like its Deployment."""
    return [_service(isvc, revision_service_name(isvc, rev), rev) for rev in addressed_revisions(isvc, routing)]
