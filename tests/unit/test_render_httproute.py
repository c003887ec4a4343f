"""The weighted HTTPRoute of router gatewayAPI, checked against the official Gateway API schema.

kubernetes-validate has no schema for HTTPRoute, so the v1 openAPIV3Schema of the Gateway API
CRD itself (the Go module sigs.k8s.io/gateway-api, fetched by scripts/optional-crds.sh) is used
the way kube-apiserver would: strict OpenAPI validation of the object, then pruning and
defaulting, then every x-kubernetes-validations (CEL) rule where the object has a value. Every
rule of that schema evaluates with the ``cel`` package (an evaluation error would count as a
failure, never as a pass), so none is skipped.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.optional_crds import crd_schema, problems
from tests.support.specs import manifest
from tritium.api.resource import InferenceService, parse_inference_service
from tritium.render import httproute
from tritium.render.metadata import object_meta
from tritium.render.routing import Routing

STABLE, CANARY = "aaaaaaaaaa", "bbbbbbbbbb"
GATEWAY_API = {"router": "gatewayAPI", "parentRefs": [{"name": "public"}]}


PARENTS_AND_HOSTS = {
    "router": "gatewayAPI",
    "parentRefs": [{"name": "public", "namespace": "infra", "sectionName": "https"}, {"name": "internal"}],
    "hostnames": ["demo.example.com", "*.models.example.com"],
}
TLS = {"tls": {"secretName": "tls"}}
LONG_NAME = "m" * 63


def _isvc(traffic: dict[str, Any] | None = None, name: str = "demo", **spec: Any) -> InferenceService:
    patch = {"traffic": traffic or GATEWAY_API, **spec}
    return parse_inference_service(manifest(patch, name=name, uid="0f0f0f0f-0000-4000-8000-000000000001"))


def _route(routing: Routing, traffic: dict[str, Any] | None = None, name: str = "demo", **spec: Any) -> dict[str, Any]:
    obj = httproute.render(_isvc(traffic, name, **spec), routing)
    assert obj is not None
    return obj


def _canary(weight: int) -> Routing:
    return Routing(stable=STABLE, canary=CANARY, weight=weight, revisions=(STABLE, CANARY))


def _weights(obj: dict[str, Any]) -> dict[str, int]:
    (rule,) = obj["spec"]["rules"]
    return {ref["name"]: ref["weight"] for ref in rule["backendRefs"]}


# --- the official schema -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """The v1 openAPIV3Schema of the Gateway API HTTPRoute CRD (skipped locally without it, failed in CI)."""
    return crd_schema("gateway.networking.k8s.io_httproutes.yaml", "v1")


def test_the_checker_refuses_what_the_server_refuses(schema: dict[str, Any]) -> None:
    """A silent checker would pass anything: broken routes, one per kind of check, must fail."""
    good = _route(_canary(5))
    assert problems(good, schema) == []
    broken = []
    for change in (
        lambda s: s["rules"][0]["backendRefs"][0].update(weight=-1),  # OpenAPI minimum
        lambda s: s["rules"][0]["backendRefs"][0].update(colour="blue"),  # unknown field
        lambda s: s["rules"][0]["backendRefs"][0].pop("port"),  # CEL: a Service needs a port
        lambda s: s["parentRefs"].append(dict(s["parentRefs"][0])),  # CEL: duplicate parentRef
    ):
        obj = copy.deepcopy(good)
        change(obj["spec"])
        broken.append(problems(obj, schema))
    assert all(broken), broken


# --- shape -----------------------------------------------------------------------------------------


def test_no_route_for_the_default_router() -> None:
    isvc = parse_inference_service(manifest())
    assert isvc.spec.traffic.router == "gateway"
    assert httproute.render(isvc, Routing.only(STABLE)) is None
    assert httproute.render(isvc, _canary(5)) is None


def test_stable_only_sends_everything_to_the_stable_revision() -> None:
    isvc = _isvc()
    obj = _route(Routing.only(STABLE))
    assert (obj["apiVersion"], obj["kind"]) == ("gateway.networking.k8s.io/v1", "HTTPRoute")
    assert obj["metadata"] == object_meta(isvc, "demo", STABLE)
    assert obj["metadata"]["ownerReferences"][0]["uid"] == isvc.metadata.uid
    assert obj["spec"] == {
        "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"}],
        "rules": [{"backendRefs": [{"group": "", "kind": "Service", "name": f"demo-{STABLE}", "port": 80,
                                    "weight": 100}]}],
    }


def test_a_five_percent_canary() -> None:
    obj = _route(_canary(5))
    assert _weights(obj) == {f"demo-{STABLE}": 95, f"demo-{CANARY}": 5}
    assert [ref["name"] for ref in obj["spec"]["rules"][0]["backendRefs"]] == [f"demo-{STABLE}", f"demo-{CANARY}"]
    assert obj["metadata"]["labels"]["serving.tritium.dev/revision"] == STABLE


def test_a_canary_at_zero_stays_listed() -> None:
    obj = _route(_canary(0))
    assert _weights(obj) == {f"demo-{STABLE}": 100, f"demo-{CANARY}": 0}


def test_parent_refs_and_hostnames_are_carried() -> None:
    obj = _route(_canary(25), PARENTS_AND_HOSTS)
    assert obj["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "infra",
         "sectionName": "https"},
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "internal"},
    ]
    assert obj["spec"]["hostnames"] == ["demo.example.com", "*.models.example.com"]


def test_tls_backends_use_the_https_port() -> None:
    obj = _route(_canary(10), security=TLS)
    assert {ref["port"] for ref in obj["spec"]["rules"][0]["backendRefs"]} == {443}


def test_a_long_name_keeps_backend_names_within_a_service_name() -> None:
    obj = _route(_canary(5), name=LONG_NAME)
    assert all(len(ref["name"]) <= 63 for ref in obj["spec"]["rules"][0]["backendRefs"])


@settings(max_examples=30, deadline=None)
@given(weight=st.integers(min_value=0, max_value=100))
def test_weights_of_both_backends_sum_to_100(weight: int) -> None:
    obj = _route(_canary(weight))
    weights = _weights(obj)
    assert len(weights) == 2
    assert sum(weights.values()) == 100
    assert all(0 <= w <= 100 for w in weights.values())
    assert weights[f"demo-{CANARY}"] == weight


# --- every rendered route against the schema --------------------------------------------------


ROUTES = {
    "stable only": lambda: _route(Routing.only(STABLE)),
    "canary 5 %": lambda: _route(_canary(5)),
    "canary 0 %": lambda: _route(_canary(0)),
    "parentRefs and hostnames": lambda: _route(_canary(25), PARENTS_AND_HOSTS),
    "tls": lambda: _route(_canary(10), security=TLS),
    "63-character name": lambda: _route(_canary(5), name=LONG_NAME),
}


@pytest.mark.parametrize("render", ROUTES.values(), ids=ROUTES.keys())
def test_rendered_routes_pass_the_official_schema(
    schema: dict[str, Any], render: Callable[[], dict[str, Any]]
) -> None:
    assert problems(render(), schema) == []


@settings(max_examples=30, deadline=None)
@given(weight=st.integers(min_value=0, max_value=100), tls=st.booleans())
def test_every_weight_passes_the_official_schema(schema: dict[str, Any], weight: int, tls: bool) -> None:
    assert problems(_route(_canary(weight), security=TLS if tls else {}), schema) == []
