"""Rendering during a rollout: who the Services select, the traffic split, the canary's autoscaler."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.specs import manifest
from tritium import pod_layout
from tritium.api.resource import parse_inference_service
from tritium.dataplane.canary.traffic import parse_traffic
from tritium.render import render_children
from tritium.render.metadata import LABEL_REVISION
from tritium.render.routing import Routing

STABLE, CANARY = "aaaaaaaaaa", "bbbbbbbbbb"


def _children(patch: dict[str, Any], revision: str, routing: Routing | None) -> list[dict[str, Any]]:
    return render_children(parse_inference_service(manifest(patch)), revision, routing=routing)


def _named(children: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(c for c in children if c["kind"] == kind and c["metadata"]["name"] == name)


def _own_services(children: list[dict[str, Any]]) -> set[str]:
    """The revisions with a Service of their own (NAME-REVISION) among the children."""
    name = children[0]["metadata"]["name"]
    return {c["metadata"]["name"][len(name) + 1:] for c in children
            if c["kind"] == "Service" and c["metadata"]["name"] != name}


def _traffic(children: list[dict[str, Any]]) -> dict[str, Any]:
    cm = next(c for c in children if c["kind"] == "ConfigMap" and c["metadata"]["name"].endswith("-traffic"))
    return json.loads(cm["data"][pod_layout.TRAFFIC_FILE])


def test_a_canary_gets_its_share_from_the_stable_gateways_not_from_the_service() -> None:
    routing = Routing(stable=STABLE, canary=CANARY, weight=5, revisions=(STABLE, CANARY))
    children = _children({}, CANARY, routing)
    name = children[0]["metadata"]["name"]
    main = _named(children, "Service", name)
    assert main["spec"]["selector"][LABEL_REVISION] == STABLE
    assert _named(children, "Service", f"{name}-{CANARY}")["spec"]["selector"][LABEL_REVISION] == CANARY
    assert _own_services(children) == {CANARY}, "nothing is sent to the stable revision by its own name"
    doc = _traffic(children)
    assert doc == {"stable": STABLE, "canary": CANARY, "canaryWeight": 5,
                   "canaryUrl": f"http://{name}-{CANARY}.{children[0]['metadata']['namespace']}.svc.cluster.local:80"}
    parsed = parse_traffic(json.dumps(doc).encode())  # what the gateway reads, it accepts
    assert (parsed.stable, parsed.canary, parsed.canary_weight) == (STABLE, CANARY, 5)


def test_the_gateway_mounts_the_split_outside_its_pod_template_content() -> None:
    children = _children({}, STABLE, None)
    deployment = next(c for c in children if c["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "traffic")
    assert volume["configMap"]["optional"] is True  # a pod starts before the split exists
    gateway = next(c for c in pod["containers"] if c["name"] == pod_layout.GATEWAY_CONTAINER)
    assert {"name": "traffic", "mountPath": pod_layout.TRAFFIC_DIR, "readOnly": True} in gateway["volumeMounts"]
    flag = gateway["command"].index("--traffic-file")
    assert gateway["command"][flag + 1] == f"{pod_layout.TRAFFIC_DIR}/{pod_layout.TRAFFIC_FILE}"
    # The weight changes without touching the pod template: same Deployment for any routing.
    moved = _children({}, STABLE, Routing(stable=STABLE, canary=CANARY, weight=25, revisions=(STABLE, CANARY)))
    assert next(c for c in moved if c["kind"] == "Deployment") == deployment


@pytest.mark.parametrize("revision,has_hpa", [(CANARY, False), (STABLE, True)])
def test_the_canary_has_no_autoscaler_of_its_own(revision: str, has_hpa: bool) -> None:
    routing = Routing(stable=STABLE, canary=CANARY, weight=5, revisions=(STABLE, CANARY))
    if revision == STABLE:
        routing = Routing.only(STABLE)
    children = _children({"autoscaling": {"minReplicas": 2, "maxReplicas": 6}}, revision, routing)
    assert any(c["kind"] == "HorizontalPodAutoscaler" for c in children) is has_hpa


def test_gateway_api_router_splits_in_the_httproute_and_gateways_forward_nothing() -> None:
    patch = {"traffic": {"router": "gatewayAPI", "parentRefs": [{"name": "public"}]}}
    routing = Routing(stable=STABLE, canary=CANARY, weight=5, revisions=(STABLE, CANARY))
    children = _children(patch, CANARY, routing)
    assert _traffic(children)["canaryWeight"] == 0
    route = next(c for c in children if c["kind"] == "HTTPRoute")
    weights = {b["name"][-10:]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}
    assert weights == {STABLE: 95, CANARY: 5}


@pytest.mark.parametrize("router,routing,own", [
    ("gateway", Routing.only(STABLE), set()),  # serving alone: the main Service is enough
    ("gateway", Routing(stable=STABLE, canary=CANARY, weight=5, revisions=(STABLE, CANARY)), {CANARY}),
    # promoted, the previous revision still running: its gateways may still forward to the new one
    ("gateway", Routing(stable=CANARY, revisions=(STABLE, CANARY)), {CANARY}),
    ("gatewayAPI", Routing.only(STABLE), {STABLE}),
    ("gatewayAPI", Routing(stable=STABLE, canary=CANARY, weight=5, revisions=(STABLE, CANARY)), {STABLE, CANARY}),
])
def test_a_revision_has_its_own_service_while_a_router_sends_to_it(router: str, routing: Routing,
                                                                    own: set[str]) -> None:
    patch = {"traffic": {"router": router, **({"parentRefs": [{"name": "public"}]} if router == "gatewayAPI" else {})}}
    assert _own_services(_children(patch, routing.canary or routing.stable, routing)) == own


@given(st.sampled_from(["gateway", "gatewayAPI"]), st.booleans(), st.booleans(),
       st.integers(min_value=0, max_value=100))
def test_every_service_a_router_names_is_rendered(router: str, canary: bool, previous: bool, weight: int) -> None:
    """The traffic file's canary URL and the HTTPRoute's backends name only Services that exist."""
    if canary:
        routing = Routing(stable=STABLE, canary=CANARY, weight=weight, revisions=(STABLE, CANARY))
    else:
        routing = Routing(stable=CANARY, revisions=(STABLE, CANARY) if previous else (CANARY,))
    patch = {"traffic": {"router": router, **({"parentRefs": [{"name": "public"}]} if router == "gatewayAPI" else {})}}
    children = _children(patch, routing.canary or routing.stable, routing)
    services = {c["metadata"]["name"] for c in children if c["kind"] == "Service"}
    named = set()
    url = _traffic(children)["canaryUrl"]
    if url:
        named.add(url.split("//", 1)[1].split(".", 1)[0])
    for route in (c for c in children if c["kind"] == "HTTPRoute"):
        named |= {b["name"] for b in route["spec"]["rules"][0]["backendRefs"]}
    assert named <= services
    assert (url is not None) is canary


@given(st.integers(min_value=0, max_value=100))
def test_the_split_file_always_parses_with_the_weight_it_was_given(weight: int) -> None:
    routing = Routing(stable=STABLE, canary=CANARY, weight=weight, revisions=(STABLE, CANARY))
    doc = _traffic(_children({}, CANARY, routing))
    assert parse_traffic(json.dumps(doc).encode()).canary_weight == weight


def test_a_weight_without_a_canary_is_refused() -> None:
    with pytest.raises(ValueError, match="canary"):
        Routing(stable=STABLE, weight=5)
