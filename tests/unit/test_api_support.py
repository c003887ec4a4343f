"""A field that does nothing yet is refused when set, naming it; its default is accepted."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.specs import manifest
from tritium.api.checks import check_spec
from tritium.api.resource import SpecError, parse_inference_service
from tritium.api.support import NOT_SUPPORTED, ONLY_WITH

SET_FIELDS: dict[str, dict[str, Any]] = {
    "spec.autoscaling.scaleUpSeconds": {"autoscaling": {"scaleUpSeconds": 10}},
    "spec.autoscaling.minReplicas": {"autoscaling": {"minReplicas": 0}},
    "spec.runtime.tensorParallelSize": {"runtime": {"tensorParallelSize": 2, "resources": {"gpu": 2}}},
}


def _check(patch: dict[str, Any]) -> None:
    check_spec(parse_inference_service(manifest(patch)))


@pytest.mark.parametrize(("field", "patch"), SET_FIELDS.items(), ids=SET_FIELDS.keys())
def test_a_field_that_does_nothing_yet_is_refused(field: str, patch: dict[str, Any]) -> None:
    with pytest.raises(SpecError) as caught:
        _check(patch)
    assert caught.value.field.startswith(field), caught.value
    assert "not supported yet" in caught.value.message


def test_every_entry_is_exercised() -> None:
    covered = {next((p for p in NOT_SUPPORTED if f.startswith(p)), "") for f in SET_FIELDS}
    assert covered - {""} == set(NOT_SUPPORTED)


@pytest.mark.parametrize("patch", [
    {},
    {"rollout": {"canaryPercent": 5, "strategy": "BlueGreen"}},  # the defaults, written out
    {"autoscaling": {"metric": "cpu", "minReplicas": 1, "maxReplicas": 3}},
    {"autoscaling": {"metric": "rps", "targetRequestsPerSecond": 20}, "monitoring": {"serviceMonitor": True}},
    {"autoscaling": {"metric": "gpu", "targetUtilization": 0.8}, "monitoring": {"serviceMonitor": True},
     "runtime": {"resources": {"gpu": 1}}},
    {"autoscaling": {"metric": "queueTime", "targetQueueTimeMs": 20}, "monitoring": {"serviceMonitor": True}},
    {"autoscaling": {"metric": "pending"}, "monitoring": {"serviceMonitor": True}},
    {"autoscaling": {"autoscaler": "keda"}},
    {"autoscaling": {"autoscaler": "keda", "metric": "queueTime", "prometheusUrl": "http://prometheus:9090"},
     "monitoring": {"serviceMonitor": True}},
    {"autoscaling": {"enabled": False}, "replicas": 2},
    {"autoscaling": {"enabled": False, "metric": "cpu", "maxReplicas": 10}},  # the defaults, written out
    {"gateway": {"cache": {"enabled": True, "ttlSeconds": 5, "maxEntries": 10,
                           "redis": {"urlSecretRef": {"name": "r", "key": "url"}}}}},
    {"model": {"responseCache": {"enabled": True, "sizeBytes": 2048}}},
    {"rollout": {"analysis": {"provider": "prometheus", "prometheusUrl": "http://127.0.0.1:9090"}}},
    {"preprocess": {"builtin": {"format": "json"}, "inputSchema": {"type": "object", "required": ["inputs"]}}},
    {"security": {"audit": {"enabled": False}}, "monitoring": {"serviceMonitor": False}},
    {"autoscaling": {"enabled": False, "minReplicas": 0}, "replicas": 3},  # scaled by hand
    {"autoscaling": {"targetUtilization": 0.5, "scaleDownCooldownSeconds": 60}},
    {"monitoring": {"serviceMonitor": True}},
    {"monitoring": {"alerts": []}},  # none, and none to scrape for
    {"monitoring": {"serviceMonitor": True, "alerts": [{"metric": "errorRatio", "threshold": 0.05}]}},
    {"monitoring": {"serviceMonitor": True, "alerts": []}},
    {"rollout": {"canaryPercent": 10, "steps": [5, 25], "progressDeadlineSeconds": 60, "scaleDownDelaySeconds": 0,
                 "analysis": {"maxP99LatencyMs": 250, "intervalSeconds": 5, "durationSeconds": 30}}},
    {"traffic": {"router": "gatewayAPI", "parentRefs": [{"name": "public"}], "hostnames": ["m.example.com"]}},
    {"monitoring": {"webhook": {"url": "https://hooks.example.com/x"}}},
    {"security": {"apiKeysSecretRef": {"name": "keys", "key": "keys"}}},
    {"security": {"tls": {"secretName": "cert"}}},
    {"security": {"audit": {"enabled": True}}},
    {"security": {"redactPII": True, "redactPatterns": [r"cust-\\d+"]}},
    {"security": {"redactPII": True, "redactResponses": True}},
    {"security": {"signResponses": True, "signingKeySecretRef": {"name": "sig", "key": "hmac"}}},
    {"security": {"audit": {"enabled": True, "file": "/tmp/audit.log"}}},
    {"security": {"tls": {"secretName": "cert", "minVersion": "1.3"}}},
    {"security": {"ipAllowlist": ["10.0.0.0/8", "fd00::/8"], "trustedProxies": ["10.1.0.0/16"]}},
    {"security": {"rateLimit": {"requestsPerSecond": 5, "burst": 20, "per": "clientAddress"}}},
    {"security": {"rateLimit": {"requestsPerSecond": 5, "redis": {"urlSecretRef": {"name": "r", "key": "url"}}},
                  "apiKeysSecretRef": {"name": "keys", "key": "keys"}}},
])
def test_defaults_and_working_fields_are_accepted(patch: dict[str, Any]) -> None:
    _check(patch)


def test_rollouts_traffic_and_webhooks_are_no_longer_refused() -> None:
    assert not [p for p in NOT_SUPPORTED if p.startswith(("spec.rollout", "spec.traffic", "spec.monitoring"))]


@pytest.mark.parametrize(("patch", "needs"), [
    ({"autoscaling": {"metric": "pending"}}, "monitoring.serviceMonitor: true"),
    ({"autoscaling": {"metric": "rps", "targetRequestsPerSecond": 5}}, "monitoring.serviceMonitor: true"),
    ({"autoscaling": {"metric": "gpu"}, "monitoring": {"serviceMonitor": True}}, "runtime.resources.gpu >= 1"),
])
def test_a_metric_without_its_series_is_refused(patch: dict[str, Any], needs: str) -> None:
    """An HPA on a Pods metric nobody scrapes would never scale: refused, saying what is missing."""
    with pytest.raises(SpecError) as caught:
        _check(patch)
    assert caught.value.field == "spec.autoscaling.metric"
    assert needs in caught.value.message


def test_keda_without_the_podmonitor_is_refused_naming_keda() -> None:
    with pytest.raises(SpecError) as caught:
        _check({"autoscaling": {"autoscaler": "keda", "metric": "pending", "prometheusUrl": "http://prometheus:9090"}})
    assert caught.value.field == "spec.autoscaling.metric"
    assert "monitoring.serviceMonitor: true" in caught.value.message and "KEDA" in caught.value.message


@pytest.mark.parametrize("autoscaler", ["hpa", "keda"])
def test_scale_to_zero_is_refused_with_either_autoscaler(autoscaler: str) -> None:
    with pytest.raises(SpecError) as caught:
        _check({"autoscaling": {"autoscaler": autoscaler, "minReplicas": 0}})
    assert caught.value.field == "spec.autoscaling.minReplicas"
    assert "not supported yet" in caught.value.message and "keda" in caught.value.message


def test_the_autoscaler_is_no_longer_refused() -> None:
    assert "spec.autoscaling.autoscaler" not in NOT_SUPPORTED
    assert "spec.autoscaling.scaleUpSeconds" in NOT_SUPPORTED


def test_security_refuses_only_what_is_not_implemented_by_name() -> None:
    security = {p for p in NOT_SUPPORTED if p.startswith("spec.security")}
    assert security == set()


def test_replicas_by_hand_and_autoscaling_exclude_each_other() -> None:
    with pytest.raises(SpecError) as caught:
        _check({"replicas": 3})
    assert caught.value.field == "spec.replicas"
    assert "autoscaling.enabled: false" in caught.value.message


@pytest.mark.parametrize(("patch", "why"), [
    ({"rollout": {"surge": False}}, "autoscaling.enabled: false"),
    ({"rollout": {"surge": False}, "autoscaling": {"enabled": False}, "replicas": 1}, "2 or more pods"),
    ({"rollout": {"surge": False}, "autoscaling": {"enabled": False, "minReplicas": 1}}, "2 or more pods"),
])
def test_surge_false_needs_fixed_replicas_to_take_from(patch: dict[str, Any], why: str) -> None:
    with pytest.raises(SpecError) as caught:
        _check(patch)
    assert caught.value.field == "spec.rollout.surge" and why in caught.value.message


def test_surge_false_with_fixed_replicas_is_accepted() -> None:
    _check({"rollout": {"surge": False}, "autoscaling": {"enabled": False}, "replicas": 2})


def test_surge_false_counts_min_replicas_when_replicas_is_unset() -> None:
    """Without autoscaling and replicas, minReplicas is the pod count (render.deployment.replicas_of)."""
    _check({"rollout": {"surge": False}, "autoscaling": {"enabled": False, "minReplicas": 3}})


# Each ONLY_WITH field away from its default, under another mode (and the patch that chooses its mode).
ONLY_WITH_CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "spec.traffic.parentRefs": ({"traffic": {"parentRefs": [{"name": "public"}]}},
                                {"traffic": {"router": "gatewayAPI"}}),
    "spec.traffic.hostnames": ({"traffic": {"hostnames": ["m.example.com"]}},
                               {"traffic": {"router": "gatewayAPI", "parentRefs": [{"name": "public"}]}}),
    "spec.rollout.analysis.prometheusUrl": ({"rollout": {"analysis": {"prometheusUrl": "http://127.0.0.1:9090"}}},
                                            {"rollout": {"analysis": {"provider": "prometheus"}}}),
    "spec.rollout.scaleDownDelaySeconds": (
        {"rollout": {"surge": False, "scaleDownDelaySeconds": 5}, "autoscaling": {"enabled": False}, "replicas": 2},
        {"rollout": {"surge": True}}),
}


@pytest.mark.parametrize("patch", [
    {"autoscaling": {"enabled": False, "minReplicas": 1, "maxReplicas": 1}, "replicas": 2},
    {"autoscaling": {"enabled": False, "maxReplicas": 4, "targetUtilization": 0.5, "autoscaler": "keda",
                     "scaleDownCooldownSeconds": 60}},
    {"autoscaling": {"enabled": False, "metric": "pending", "targetPendingRequests": 8},
     "monitoring": {"serviceMonitor": True}},
    {"gateway": {"cache": {"enabled": False, "ttlSeconds": 5, "redis": {"urlSecretRef": {"name": "r", "key": "u"}}}}},
    {"model": {"responseCache": {"enabled": False, "sizeBytes": 4096}}},
])
def test_a_block_switched_off_keeps_its_other_fields_unused(patch: dict[str, Any]) -> None:
    """enabled: false turns its block off: the rest is kept (to switch back), as the descriptions say."""
    _check(patch)


def test_a_cache_switched_off_needs_no_redis_secret() -> None:
    from tritium.api.checks import references

    isvc = parse_inference_service(manifest(
        {"gateway": {"cache": {"enabled": False, "redis": {"urlSecretRef": {"name": "r", "key": "u"}}}}}))
    assert [r for r in references(isvc) if r.name == "r"] == []
    on = parse_inference_service(manifest(
        {"gateway": {"cache": {"enabled": True, "redis": {"urlSecretRef": {"name": "r", "key": "u"}}}}}))
    assert [r.field for r in references(on) if r.name == "r"] == ["spec.gateway.cache.redis.urlSecretRef"]


def _merged(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.mark.parametrize(("field", "case"), ONLY_WITH_CASES.items(), ids=ONLY_WITH_CASES.keys())
def test_a_field_read_only_under_a_setting_that_is_off_is_refused(
    field: str, case: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    """Set while its setting is off, the field would do nothing: refused naming it and the setting;
    with the setting on, the same spec is accepted."""
    patch, turn_on = case
    with pytest.raises(SpecError) as caught:
        _check(patch)
    assert caught.value.field == field, caught.value
    assert f"used only with {ONLY_WITH[field][1].split(' (')[0]}" in caught.value.message
    _check(_merged(patch, turn_on))


def test_every_only_with_entry_has_a_case() -> None:
    assert set(ONLY_WITH) == set(ONLY_WITH_CASES)
