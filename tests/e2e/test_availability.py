"""High availability on a real API server: the disruption controller enforces each revision's PDB."""

from __future__ import annotations

from tests.support.operator_runner import eventually
from tests.support.operator_scenarios import READY_TIMEOUT, children, create, make_isvc, ready, wait_status
from tritium.controller.kube import ApiError, KubeClient


async def evict(api: KubeClient, namespace: str, pod: str) -> int:
    """Ask for a voluntary eviction, as `kubectl drain` does; the HTTP status of the answer."""
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": namespace}}
    try:
        await api._request("POST", f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction", body=body)
    except ApiError as exc:
        return exc.status
    return 201


async def test_a_drain_takes_one_pod_of_a_revision_at_a_time(api: KubeClient, namespace: str, operator: None) -> None:
    name = "drained"
    await create(api, make_isvc(name, namespace, autoscaling={"minReplicas": 3, "maxReplicas": 3}))
    await wait_status(api, namespace, name, lambda o: ready(o) and o["status"]["readyReplicas"] == 3,
                      timeout=READY_TIMEOUT)
    (pdb,) = await children(api, namespace, name, "PodDisruptionBudget")

    async def budget_known() -> bool:
        live = await api._request("GET", f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/"
                                         f"{pdb['metadata']['name']}")
        status = live.get("status") or {}
        return status.get("currentHealthy") == 3 and status.get("disruptionsAllowed") == 1

    await eventually(budget_known, timeout=30)
    pods = await api._request("GET", f"/api/v1/namespaces/{namespace}/pods",
                              params={"labelSelector": f"serving.tritium.dev/inferenceservice={name}"})
    names = [p["metadata"]["name"] for p in pods["items"]]
    assert len(names) == 3
    assert await evict(api, namespace, names[0]) == 201
    assert await evict(api, namespace, names[1]) == 429, "a second pod went while the first was not replaced"
