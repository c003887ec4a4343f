"""The traffic ConfigMap (NAME-traffic): the canary split the stable gateways follow.

With router ``gateway`` the main Service selects only the stable revision's pods, and each of
their gateways forwards exactly ``canaryWeight`` percent of its inference requests to the canary
revision's own Service (dataplane/canary/traffic.py). This ConfigMap tells them who is stable, who the
canary is and the share. It is mounted (optional) in every pod at pod_layout.TRAFFIC_DIR and is
not part of the pod template: changing the weight restarts nothing. The kubelet refreshes a
mounted ConfigMap within its sync period (about a minute by default), so a weight change reaches
the gateways that late; a rollback does not wait for it, because the canary's Service and pods
are deleted at once and a gateway that cannot reach the canary serves the request itself.
With router ``gatewayAPI`` the HTTPRoute splits the traffic and the weight here stays 0.
"""

from __future__ import annotations

import json
from typing import Any

from tritium import pod_layout
from tritium.api.resource import InferenceService
from tritium.render.metadata import object_meta
from tritium.render.routing import Routing, revision_service_host
from tritium.render.service import service_port


def name_of(isvc: InferenceService) -> str:
    return f"{isvc.name[: 63 - len('-traffic')]}-traffic"


def traffic_document(isvc: InferenceService, routing: Routing) -> dict[str, Any]:
    """The traffic file's JSON (parsed by dataplane.canary.traffic.parse_traffic)."""
    forwarding = isvc.spec.traffic.router == "gateway"
    url = None
    if routing.canary:
        scheme, port = service_port(isvc)
        url = f"{scheme}://{revision_service_host(isvc, routing.canary)}:{port}"
    return {"stable": routing.stable, "canary": routing.canary,
            "canaryWeight": routing.weight if forwarding else 0, "canaryUrl": url}


def render(isvc: InferenceService, routing: Routing) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(isvc, name_of(isvc), routing.stable),
        "data": {pod_layout.TRAFFIC_FILE: json.dumps(traffic_document(isvc, routing), sort_keys=True) + "\n"},
    }
