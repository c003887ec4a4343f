"""Third-party kinds (Gateway API, Prometheus Operator, KEDA, cert-manager) validated by the API server itself.

Their CRDs come from the Go modules that ship them (scripts/optional-crds.sh), so an object of
ours that one of these projects would refuse is refused here too: the chart's ServiceMonitor and
PrometheusRule, the rendered PodMonitor, PrometheusRule, AlertmanagerConfig (webhook url or
secretRef), ScaledObject (autoscaler keda, each metric) and Certificate (tls.certManager)
children, and hand-written HTTPRoute and ScaledObject objects.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import Kube
from tests.support.cluster import ROOT
from tests.support.server_dry_run import server_dry_run
from tests.support.specs import manifest
from tritium.api.resource import parse_inference_service
from tritium.render import render_children


def chart_objects(values: str, kinds: set[str]) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "helm"), "template", "tritium", str(ROOT / "charts" / "tritium"),
         "-f", str(ROOT / "tests" / "data" / "chart-values" / values), "--kube-version", "1.36.0"],
        capture_output=True, text=True, check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d and d.get("kind") in kinds]


def test_the_charts_monitoring_objects_pass_the_server(kube: Kube, namespace: str, optional_crds: list[str]) -> None:
    objects = chart_objects("monitoring.yaml", {"ServiceMonitor", "PrometheusRule"})
    assert {o["kind"] for o in objects} == {"ServiceMonitor", "PrometheusRule"}
    for obj in objects:
        obj["metadata"]["namespace"] = namespace
    result = server_dry_run(kube, namespace, objects)
    assert result.returncode == 0, result.stderr


MONITORING_SPECS = {
    "defaults": {"monitoring": {"serviceMonitor": True}},
    "every alert": {"monitoring": {"serviceMonitor": True, "alerts": [
        {"metric": m, "threshold": 0.5, "forSeconds": 90, "severity": s}
        for m, s in (("p99LatencyMs", "info"), ("errorRatio", "warning"), ("queueTimeMs", "critical"),
                     ("availability", "warning"))]}},
    "webhook url": {"monitoring": {"serviceMonitor": True, "webhook": {"url": "https://hooks.example.com/a"}}},
    "webhook secretRef": {"monitoring": {"serviceMonitor": True, "webhook": {
        "secretRef": {"name": "alert-hook", "key": "url"}}}},
}


@pytest.mark.parametrize("spec", MONITORING_SPECS.values(), ids=MONITORING_SPECS.keys())
def test_rendered_monitoring_children_pass_the_server(
    kube: Kube, namespace: str, optional_crds: list[str], spec: dict[str, Any]
) -> None:
    isvc = parse_inference_service(manifest(spec, namespace=namespace))
    objects = [c for c in render_children(isvc) if c["apiVersion"].startswith("monitoring.coreos.com/")]
    webhook = {"AlertmanagerConfig"} if "webhook" in spec["monitoring"] else set()
    assert {o["kind"] for o in objects} == {"PodMonitor", "PrometheusRule", *webhook}
    result = server_dry_run(kube, namespace, objects)
    assert result.returncode == 0, result.stderr


def _route(name: str, weight: int) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": name},
        "spec": {"parentRefs": [{"name": "public"}], "rules": [{"backendRefs": [
            {"name": f"{name}-stable", "port": 80, "weight": 100 - weight},
            {"name": f"{name}-canary", "port": 80, "weight": weight},
        ]}]},
    }


def _scaled_object(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": name},
        "spec": {"scaleTargetRef": {"name": f"{name}-abc"}, "minReplicaCount": 1, "maxReplicaCount": 4,
                 "triggers": [{"type": "prometheus", "metadata": {
                     "serverAddress": "http://prometheus.monitoring:9090", "threshold": "5",
                     "query": "sum(rate(nv_inference_queue_duration_us[1m]))"}}], **spec},
    }


ACCEPTED = {
    "HTTPRoute with a 5 % canary": _route("split", 5),
    "ScaledObject on a Prometheus query": _scaled_object("scaled"),
    "PodMonitor of the gateway": {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": {"name": "pods"},
        "spec": {"selector": {"matchLabels": {"app.kubernetes.io/instance": "m"}},
                 "podMetricsEndpoints": [{"port": "metrics", "interval": "15s"}]},
    },
}
REFUSED = {
    "HTTPRoute weight below 0": (_route("negative", -5), "weight"),
    "ScaledObject without a target": (
        {**_scaled_object("untargeted"), "spec": {"triggers": _scaled_object("x")["spec"]["triggers"]}},
        "scaleTargetRef",
    ),
    "PrometheusRule with a non-list groups": (
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "bad"},
         "spec": {"groups": {"name": "g"}}},
        "groups",
    ),
}


@pytest.mark.parametrize("obj", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_valid_objects_are_accepted(kube: Kube, namespace: str, optional_crds: list[str], obj: dict[str, Any]) -> None:
    result = server_dry_run(kube, namespace, [obj])
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("obj", "field"), REFUSED.values(), ids=REFUSED.keys())
def test_invalid_objects_are_refused(
    kube: Kube, namespace: str, optional_crds: list[str], obj: dict[str, Any], field: str
) -> None:
    result = server_dry_run(kube, namespace, [obj])
    assert result.returncode != 0, f"the server accepted {obj['kind']} {obj['metadata']['name']}"
    assert field in result.stderr, result.stderr


KEDA_SPECS = {
    metric: {"monitoring": {"serviceMonitor": True}, "runtime": {"resources": {"gpu": 1}},
             "autoscaling": {"autoscaler": "keda", "metric": metric, "minReplicas": 1, "maxReplicas": 1000,
                             **({} if metric == "cpu" else {"prometheusUrl": "http://prometheus.monitoring:9090"}),
                             **({"targetRequestsPerSecond": 2.5} if metric == "rps" else {})}}
    for metric in ("cpu", "rps", "gpu", "queueTime", "pending")
}


@pytest.mark.parametrize("spec", KEDA_SPECS.values(), ids=KEDA_SPECS.keys())
def test_rendered_scaledobjects_pass_the_server(
    kube: Kube, namespace: str, optional_crds: list[str], spec: dict[str, Any]
) -> None:
    isvc = parse_inference_service(manifest(spec, namespace=namespace))
    objects = [c for c in render_children(isvc) if c["kind"] == "ScaledObject"]
    assert len(objects) == 1
    result = server_dry_run(kube, namespace, objects)
    assert result.returncode == 0, result.stderr


CERTIFICATE_SPECS = {
    "issuer": {"issuerRef": {"name": "ns-ca"}},
    "cluster issuer, names and lifetimes": {
        "issuerRef": {"name": "internal-ca", "kind": "ClusterIssuer"}, "dnsNames": ["demo.example.com", "*.demo.io"],
        "duration": "2160h", "renewBefore": "360h"},
}


@pytest.mark.parametrize("wanted", CERTIFICATE_SPECS.values(), ids=CERTIFICATE_SPECS.keys())
def test_rendered_certificates_pass_the_server(
    kube: Kube, namespace: str, optional_crds: list[str], wanted: dict[str, Any]
) -> None:
    spec = {"security": {"tls": {"secretName": "demo-tls", "certManager": wanted}}}
    isvc = parse_inference_service(manifest(spec, namespace=namespace))
    objects = [c for c in render_children(isvc) if c["kind"] == "Certificate"]
    assert len(objects) == 1
    result = server_dry_run(kube, namespace, objects)
    assert result.returncode == 0, result.stderr


def test_the_server_refuses_a_certificate_cert_manager_would(
    kube: Kube, namespace: str, optional_crds: list[str]
) -> None:
    """The check above can fail: a private key algorithm cert-manager does not know is refused."""
    isvc = parse_inference_service(manifest(
        {"security": {"tls": {"secretName": "demo-tls", "certManager": {"issuerRef": {"name": "ca"}}}}},
        namespace=namespace))
    (obj,) = [c for c in render_children(isvc) if c["kind"] == "Certificate"]
    obj["spec"]["privateKey"]["algorithm"] = "DSA"
    result = server_dry_run(kube, namespace, [obj])
    assert result.returncode != 0 and "privateKey.algorithm" in result.stderr, result.stderr
