"""spec.monitoring on a real API server: the PodMonitor and PrometheusRule children, and a cluster
without the optional CRDs, where the service serves anyway and status says why its monitoring (or
its KEDA scaling) is missing, until the CRDs are installed (no operator restart). There too, a
service whose TLS Secret cert-manager should write is InvalidSpec while cert-manager's CRD is
absent, and goes on by itself once it is installed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.e2e.conftest import Kube, control_plane_with_crd, wait_established
from tests.support.operator_runner import api_client, eventually, running_operator
from tests.support.operator_scenarios import (
    children,
    condition,
    create,
    make_isvc,
    operator_writes,
    patch_spec,
    ready,
    settled,
    wait_status,
)
from tests.support.optional_crds import optional_crds_dir
from tritium.controller.kube import KubeClient
from tritium.render.metadata import LABEL_REVISION

READY_TIMEOUT = 60
QUIET_SECONDS = 10
MONITORING_KINDS = ("PodMonitor", "PrometheusRule")



async def writes_nothing(api: KubeClient, namespace: str, name: str) -> None:
    """Once settled, the operator makes no API write (a skipped kind is not retried either)."""
    await settled(api, namespace, name)
    writes = operator_writes()
    await asyncio.sleep(QUIET_SECONDS)
    assert operator_writes() == writes, "the operator wrote while nothing changed"


async def monitoring_children(api: KubeClient, namespace: str, name: str) -> dict[str, list[dict[str, Any]]]:
    return {k: await children(api, namespace, name, k) for k in MONITORING_KINDS}


async def test_monitoring_children_follow_the_spec(
    kube: Kube, api: KubeClient, namespace: str, optional_crds: list[str], operator: None
) -> None:
    name = "watched"
    # With a preprocess stage: its TCP port is scraped too.
    created = await create(api, make_isvc(name, namespace, monitoring={"serviceMonitor": True},
                                          preprocess={"builtin": {"format": "json"}}))

    async def both() -> dict[str, list[dict[str, Any]]] | None:
        found = await monitoring_children(api, namespace, name)
        return found if all(found.values()) else None

    found = await eventually(both, timeout=READY_TIMEOUT)
    monitor, rule = found["PodMonitor"][0], found["PrometheusRule"][0]
    for obj in (monitor, rule):
        assert [o["uid"] for o in obj["metadata"]["ownerReferences"]] == [created["metadata"]["uid"]]
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == name
    scraped = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    assert scraped == {"metrics", "triton-metrics", "pre-http"}
    # Each scraped port is one the stored pod template names, and one the NetworkPolicy admits.
    [deployment] = await children(api, namespace, name, "Deployment")
    named = {p["name"]: p["containerPort"] for c in deployment["spec"]["template"]["spec"]["containers"]
             for p in c.get("ports", [])}
    assert scraped <= named.keys()
    [policy] = await children(api, namespace, name, "NetworkPolicy")
    admitted = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert {named[port] for port in scraped} <= admitted
    assert {r["alert"] for r in rule["spec"]["groups"][0]["rules"]} == {
        "TritiumHighP99Latency", "TritiumHighErrorRatio", "TritiumCanaryFailing", "TritiumReplicasAtMax"}
    obj = await wait_status(api, namespace, name, lambda o: ready(o) and condition(o, "MonitoringReady").get(
        "status") == "True", timeout=READY_TIMEOUT)
    revision = obj["status"]["stableRevision"]
    assert monitor["metadata"]["labels"][LABEL_REVISION] == revision
    await writes_nothing(api, namespace, name)

    # Explicit alerts replace the defaults, in place (no new revision).
    await patch_spec(api, namespace, name, {"monitoring": {"alerts": [
        {"metric": "queueTimeMs", "threshold": 50, "forSeconds": 60, "severity": "critical"}]}})

    async def replaced() -> list[str] | None:
        rules = await children(api, namespace, name, "PrometheusRule")
        alerts = [r["alert"] for r in rules[0]["spec"]["groups"][0]["rules"]] if rules else []
        return alerts if alerts == ["TritiumHighQueueTime"] else None

    await eventually(replaced, timeout=READY_TIMEOUT)

    # Off again: both pruned, the condition gone, the service still serving.
    await patch_spec(api, namespace, name, {"monitoring": {"serviceMonitor": False, "alerts": None}})

    async def pruned() -> bool:
        found = await monitoring_children(api, namespace, name)
        return not any(found.values())

    await eventually(pruned, timeout=READY_TIMEOUT)
    obj = await wait_status(api, namespace, name, lambda o: ready(o) and not condition(o, "MonitoringReady"),
                            timeout=READY_TIMEOUT)
    assert obj["status"]["stableRevision"] == revision


@pytest.fixture
def bare_plane(kube: Kube, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A control plane of its own with only the Tritium CRD (no Prometheus Operator CRDs)."""
    with control_plane_with_crd("tritium-e2e-bare-") as bare:
        absent = bare.kubectl("get", "crd", "-o", "name").stdout
        assert "monitoring.coreos.com" not in absent
        monkeypatch.setenv("KUBECONFIG", str(bare.kubeconfig))
        monkeypatch.setenv("PATH", bare.env["PATH"])
        yield bare


async def test_without_the_optional_crds_the_service_still_serves(bare_plane: Kube) -> None:
    namespace, name = "bare", "unwatched"
    bare_plane.kubectl("create", "namespace", namespace)
    api = api_client()
    try:
        async with running_operator(namespaces=[namespace]):
            await create(api, make_isvc(name, namespace, monitoring={"serviceMonitor": True}))
            # And one scaled by KEDA, whose CRD is missing too: it serves, unscaled, and says so.
            await create(api, make_isvc("unscaled", namespace, autoscaling={"autoscaler": "keda"}))
            obj = await wait_status(api, namespace, name, lambda o: ready(o) and condition(
                o, "MonitoringReady").get("reason") == "CRDMissing", timeout=READY_TIMEOUT)
            note = condition(obj, "MonitoringReady")
            assert note["status"] == "False"
            assert "PodMonitor" in note["message"] and "PrometheusRule" in note["message"], note
            assert condition(obj, "SpecValid")["status"] == "True"
            assert not condition(obj, "AutoscalingReady"), "an HPA needs no condition"
            await writes_nothing(api, namespace, name)
            unscaled = await wait_status(api, namespace, "unscaled", lambda o: ready(o) and condition(
                o, "AutoscalingReady").get("reason") == "CRDMissing", timeout=READY_TIMEOUT)
            assert condition(unscaled, "AutoscalingReady")["status"] == "False"
            assert "keda" in condition(unscaled, "AutoscalingReady")["message"].lower()
            assert not condition(unscaled, "MonitoringReady")
            # And one whose TLS Secret cert-manager would write: nothing will, so the spec is refused.
            await create(api, make_isvc("issued", namespace, security={"tls": {
                "secretName": "issued-tls", "certManager": {"issuerRef": {"name": "ca"}}}}))
            issued = await wait_status(api, namespace, "issued", lambda o: condition(
                o, "SpecValid").get("status") == "False", timeout=READY_TIMEOUT)
            refusal = condition(issued, "SpecValid")["message"]
            assert "spec.security.tls.secretName" in refusal and "certificates.cert-manager.io" in refusal, refusal

            # The CRDs are installed later: the same operator process applies the children.
            bare_plane.kubectl("apply", "--server-side", "-f", str(optional_crds_dir()))
            wait_established(bare_plane, "podmonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com",
                             "scaledobjects.keda.sh", "certificates.cert-manager.io")

            async def applied() -> dict[str, list[dict[str, Any]]] | None:
                found = await monitoring_children(api, namespace, name)
                return found if all(found.values()) else None

            await eventually(applied, timeout=READY_TIMEOUT)
            await wait_status(api, namespace, name, lambda o: ready(o) and condition(o, "MonitoringReady").get(
                "status") == "True", timeout=READY_TIMEOUT)
            await wait_status(api, namespace, "unscaled", lambda o: ready(o) and condition(o, "AutoscalingReady").get(
                "status") == "True", timeout=READY_TIMEOUT)
            assert [o["kind"] for o in await children(api, namespace, "unscaled", "ScaledObject")] == ["ScaledObject"]
            # cert-manager's CRD is there now: the Certificate is applied, and the Secret it will
            # write is awaited, not refused.
            await wait_status(api, namespace, "issued", lambda o: condition(o, "SpecValid").get("status") == "True",
                              timeout=READY_TIMEOUT)
            [cert] = await eventually(lambda: children(api, namespace, "issued", "Certificate"), timeout=READY_TIMEOUT)
            assert cert["spec"]["secretName"] == "issued-tls"
    finally:
        await api.close()
