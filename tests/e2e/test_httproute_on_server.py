"""The rendered HTTPRoute of router gatewayAPI, accepted by kube-apiserver with the Gateway API CRDs.

The unit tests re-implement the server's checks on the same CRD schema; this asks the server
itself, so a difference between that re-implementation and kube-apiserver (defaulting, CEL
evaluation, the ObjectMeta checks the unit tests leave out) cannot hide a route it would refuse.
"""

from __future__ import annotations

from tests.e2e.conftest import Kube
from tests.support.server_dry_run import server_dry_run
from tests.support.specs import manifest
from tritium.api.resource import parse_inference_service
from tritium.render import httproute
from tritium.render.routing import Routing


def test_a_rendered_canary_route_passes_the_server(kube: Kube, namespace: str, optional_crds: list[str]) -> None:
    traffic = {
        "router": "gatewayAPI",
        "parentRefs": [{"name": "public", "namespace": "infra", "sectionName": "https"}, {"name": "internal"}],
        "hostnames": ["demo.example.com", "*.models.example.com"],
    }
    isvc = parse_inference_service(manifest({"traffic": traffic}, namespace=namespace))
    route = httproute.render(isvc, Routing(stable="aaaaaaaaaa", canary="bbbbbbbbbb", weight=5,
                                           revisions=("aaaaaaaaaa", "bbbbbbbbbb")))
    assert route is not None
    result = server_dry_run(kube, namespace, [route])
    assert result.returncode == 0, result.stderr
