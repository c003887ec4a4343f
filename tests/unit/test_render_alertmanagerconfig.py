"""The AlertmanagerConfig of a service (render/alertmanagerconfig.py), checked against the official
Prometheus Operator schema.

The v1alpha1 openAPIV3Schema of the CRD itself (the Go module
github.com/prometheus-operator/prometheus-operator, fetched by scripts/optional-crds.sh) is used
the way kube-apiserver would (tests/support/optional_crds.py, as for the HTTPRoute): strict
OpenAPI validation, then pruning and defaulting, then every x-kubernetes-validations (CEL) rule
where the object has a value (v0.85.0's AlertmanagerConfig schema has none; a later one would be
evaluated here).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.optional_crds import crd_schema, problems
from tests.support.specs import manifest
from tritium.api.resource import InferenceService, parse_inference_service
from tritium.render import alertmanagerconfig, prometheusrule, render_children
from tritium.render.metadata import object_meta

REV = "0123456789"
URL = {"url": "https://hooks.example.com/alerts"}
SECRET = {"secretRef": {"name": "alert-hook", "key": "url"}}


def _isvc(monitoring: dict[str, Any], name: str = "demo", **spec: Any) -> InferenceService:
    return parse_inference_service(manifest({"monitoring": monitoring, **spec}, name=name))


def _config(monitoring: dict[str, Any], name: str = "demo", **spec: Any) -> dict[str, Any]:
    obj = alertmanagerconfig.render(_isvc(monitoring, name, **spec), REV)
    assert obj is not None
    return obj


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """The v1alpha1 openAPIV3Schema of the AlertmanagerConfig CRD (skipped locally without it, failed in CI)."""
    return crd_schema("monitoring.coreos.com_alertmanagerconfigs.yaml", "v1alpha1")


# --- when ----------------------------------------------------------------------------------------


def test_none_without_a_webhook_or_without_scraping_or_alerts() -> None:
    assert alertmanagerconfig.render(_isvc({"serviceMonitor": True}), REV) is None
    assert alertmanagerconfig.render(_isvc({"webhook": URL}), REV) is None
    assert alertmanagerconfig.render(_isvc({"webhook": URL, "alerts": [
        {"metric": "errorRatio", "threshold": 0.1}]}), REV) is None
    assert alertmanagerconfig.render(_isvc({"serviceMonitor": True, "webhook": URL, "alerts": []}), REV) is None


def test_rendered_last_after_the_prometheus_rule() -> None:
    kinds = [c["kind"] for c in render_children(_isvc({"serviceMonitor": True, "webhook": URL}))]
    assert kinds[-3:] == ["PodMonitor", "PrometheusRule", "AlertmanagerConfig"]


# --- shape ---------------------------------------------------------------------------------------


def test_routes_this_services_alerts_to_the_webhook_url() -> None:
    service = _isvc({"serviceMonitor": True, "webhook": URL})
    obj = _config({"serviceMonitor": True, "webhook": URL})
    assert (obj["apiVersion"], obj["kind"]) == ("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig")
    assert obj["metadata"] == object_meta(service, "demo", REV)
    route = obj["spec"]["route"]
    assert route["matchers"] == [{"name": "inferenceservice", "value": "demo", "matchType": "="}]
    assert route["receiver"] == "tritium-webhook"
    assert "namespace" not in {m["name"] for m in route["matchers"]}  # the Prometheus Operator adds it
    assert obj["spec"]["receivers"] == [{"name": "tritium-webhook", "webhookConfigs": [
        {"url": "https://hooks.example.com/alerts", "sendResolved": True}]}]


def test_every_alert_carries_the_label_the_route_matches() -> None:
    service = _isvc({"serviceMonitor": True, "webhook": URL})
    for rule in prometheusrule.rules_of(service):
        assert rule["labels"]["inferenceservice"] == "demo", rule["alert"]


def test_a_secret_url_is_a_url_secret() -> None:
    obj = _config({"serviceMonitor": True, "webhook": SECRET})
    assert obj["spec"]["receivers"][0]["webhookConfigs"] == [
        {"urlSecret": {"name": "alert-hook", "key": "url"}, "sendResolved": True}]


# --- against the official schema -----------------------------------------------------------------


def test_the_checker_refuses_what_the_server_refuses(schema: dict[str, Any]) -> None:
    good = _config({"serviceMonitor": True, "webhook": URL})
    assert problems(good, schema) == []
    broken = []
    for change in (
        lambda s: s["route"]["matchers"][0].update(matchType="=="),  # enum
        lambda s: s["route"]["matchers"][0].pop("name"),  # required
        lambda s: s["receivers"][0]["webhookConfigs"][0].update(colour="blue"),  # unknown field
        lambda s: s["receivers"][0]["webhookConfigs"][0].update(maxAlerts=-1),  # minimum
    ):
        obj = copy.deepcopy(good)
        change(obj["spec"])
        broken.append(problems(obj, schema))
    assert all(broken), broken


CONFIGS: dict[str, Callable[[], dict[str, Any]]] = {
    "url": lambda: _config({"serviceMonitor": True, "webhook": URL}),
    "secretRef": lambda: _config({"serviceMonitor": True, "webhook": SECRET}),
    "signed, explicit alerts": lambda: _config({"serviceMonitor": True, "webhook": {
        **URL, "signingSecretRef": {"name": "hook", "key": "signing-key"}},
        "alerts": [{"metric": "availability", "threshold": 0.5}]}),
    "63-character name, keda": lambda: _config({"serviceMonitor": True, "webhook": SECRET}, name="m" * 63,
                                               autoscaling={"autoscaler": "keda"}),
}


@pytest.mark.parametrize("render", CONFIGS.values(), ids=CONFIGS.keys())
def test_rendered_configs_pass_the_official_schema(
    schema: dict[str, Any], render: Callable[[], dict[str, Any]]
) -> None:
    assert problems(render(), schema) == []
