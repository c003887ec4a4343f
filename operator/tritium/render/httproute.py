"""The HTTPRoute (gateway.networking.k8s.io/v1) of a service, or None unless traffic.router is gatewayAPI.

Why an HTTPRoute: a cluster that already runs a Gateway API implementation (Envoy Gateway,
Istio, Cilium, ...) can split a blue-green rollout's traffic at its edge, by weight between the
per-revision Services, so the serving pods forward nothing to each other; with the default
router ``gateway`` the stable revision's gateways do that forwarding themselves.

The HTTPRoute is an optional kind: a cluster without the Gateway API CRDs has no such resource,
and the operator skips the child there (as it does for the PodMonitor) instead of failing the
reconcile.

One route per service, named like it. Its single rule sends everything to the stable revision's
Service, or during a canary splits it between the stable and the canary Services. Gateway API
weights are relative; the two given here always sum to 100, so they read as percentages.
"""

from __future__ import annotations

from typing import Any

from tritium.api.resource import InferenceService
from tritium.api.spec import ParentRef
from tritium.render.metadata import object_meta
from tritium.render.routing import Routing, revision_service_name
from tritium.render.service import service_port

API_VERSION = "gateway.networking.k8s.io/v1"
KIND = "HTTPRoute"
GATEWAY_GROUP = "gateway.networking.k8s.io"


def parent_ref(ref: ParentRef) -> dict[str, Any]:
    """A Gateway parentRef; namespace and listener only when given (unset: the route's namespace)."""
    out: dict[str, Any] = {"group": GATEWAY_GROUP, "kind": "Gateway", "name": ref.name}
    if ref.namespace:
        out["namespace"] = ref.namespace
    if ref.section_name:
        out["sectionName"] = ref.section_name
    return out


def backend_ref(isvc: InferenceService, revision: str, weight: int) -> dict[str, Any]:
    """One revision's own Service, which exposes the same port as the main Service."""
    return {
        "group": "",
        "kind": "Service",
        "name": revision_service_name(isvc, revision),
        "port": service_port(isvc)[1],
        "weight": weight,
    }


def backend_refs(isvc: InferenceService, routing: Routing) -> list[dict[str, Any]]:
    """Stable first; the canary stays listed at weight 0 while it exists, naming where its share will go."""
    refs = [backend_ref(isvc, routing.stable, routing.stable_weight)]
    if routing.canary:
        refs.append(backend_ref(isvc, routing.canary, routing.weight))
    return refs


def render(isvc: InferenceService, routing: Routing) -> dict[str, Any] | None:
    traffic = isvc.spec.traffic
    if traffic.router != "gatewayAPI":
        return None
    spec: dict[str, Any] = {"parentRefs": [parent_ref(ref) for ref in traffic.parent_refs or []]}
    if traffic.hostnames:
        spec["hostnames"] = list(traffic.hostnames)
    spec["rules"] = [{"backendRefs": backend_refs(isvc, routing)}]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": object_meta(isvc, isvc.name, routing.stable),
        "spec": spec,
    }
