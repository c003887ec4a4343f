"""autoscaling.autoscaler keda on a real API server with KEDA's CRD: a ScaledObject per revision, no HPA.

No KEDA controller runs here, so nothing acts on the ScaledObject: the tests check what the
operator writes (the API server validates it against KEDA's official schema) and that switching
autoscaler leaves exactly one autoscaler for the Deployment.
"""

from __future__ import annotations

from typing import Any

from tests.support.operator_runner import eventually
from tests.support.operator_scenarios import READY_TIMEOUT, children, create, make_isvc, patch_spec, ready, wait_status
from tritium.controller.kube import KubeClient
from tritium.render import scaledobject

PROMETHEUS = "http://prometheus-operated.monitoring:9090"


async def autoscalers(api: KubeClient, namespace: str, name: str) -> dict[str, list[dict[str, Any]]]:
    return {k: await children(api, namespace, name, k) for k in ("ScaledObject", "HorizontalPodAutoscaler")}


async def test_a_keda_service_gets_a_scaledobject_and_no_hpa(
    api: KubeClient, namespace: str, optional_crds: list[str], operator: None
) -> None:
    name = "keda"
    created = await create(api, make_isvc(
        name, namespace, monitoring={"serviceMonitor": True},
        autoscaling={"autoscaler": "keda", "metric": "rps", "targetRequestsPerSecond": 20,
                     "prometheusUrl": PROMETHEUS, "minReplicas": 1, "maxReplicas": 4},
    ))
    obj = await wait_status(api, namespace, name, ready, timeout=READY_TIMEOUT)
    revision = obj["status"]["stableRevision"]
    (deployment,) = await children(api, namespace, name, "Deployment")

    async def only_scaledobject() -> dict[str, Any] | None:
        found = await autoscalers(api, namespace, name)
        return found["ScaledObject"][0] if found["ScaledObject"] and not found["HorizontalPodAutoscaler"] else None

    scaled = await eventually(only_scaledobject, timeout=READY_TIMEOUT)
    assert [o["uid"] for o in scaled["metadata"]["ownerReferences"]] == [created["metadata"]["uid"]]
    assert scaled["metadata"]["name"] == deployment["metadata"]["name"]
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": deployment["metadata"]["name"]}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 4)
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0
    (trigger,) = spec["triggers"]
    assert (trigger["type"], trigger["metricType"]) == ("prometheus", "AverageValue")
    assert trigger["metadata"] == {"serverAddress": PROMETHEUS, "threshold": "20", "ignoreNullValues": "false",
                                   "query": scaledobject.query("rps", namespace, name, revision)}

    # Back to the HPA: the ScaledObject goes, the HPA comes, never both for long.
    await patch_spec(api, namespace, name, {"autoscaling": {"autoscaler": "hpa", "prometheusUrl": None}})

    async def only_hpa() -> bool:
        found = await autoscalers(api, namespace, name)
        return not found["ScaledObject"] and [h["metadata"]["name"] for h in found["HorizontalPodAutoscaler"]] == [
            deployment["metadata"]["name"]]

    await eventually(only_hpa, timeout=READY_TIMEOUT)

    # And to KEDA on cpu: the HPA is removed before the ScaledObject is applied (KEDA's webhook
    # would refuse a ScaledObject for a Deployment an HPA scales).
    await patch_spec(api, namespace, name, {"autoscaling": {"autoscaler": "keda", "metric": "cpu",
                                                            "targetRequestsPerSecond": None}})
    cpu = await eventually(only_scaledobject, timeout=READY_TIMEOUT)
    assert cpu["spec"]["triggers"] == [{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "70"}}]
    assert ready(await wait_status(api, namespace, name, ready, timeout=READY_TIMEOUT))
