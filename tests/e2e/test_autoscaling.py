"""The HorizontalPodAutoscaler of each revision, on a real API server and controller manager.

The simulated pods report no metrics, so the HPA controller never computes a count of its own
(ScalingActive=False); the tests play its decision through the Deployment's scale subresource,
exactly the write the HPA makes, and check what the operator does around it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.operator_runner import eventually
from tests.support.operator_scenarios import (
    READY_TIMEOUT,
    children,
    create,
    get_isvc,
    make_isvc,
    patch_spec,
    ready,
    revisions,
    wait_status,
)
from tritium.controller.kube import KubeClient, object_path


async def scale(api: KubeClient, namespace: str, deployment: str, replicas: int) -> None:
    """What the HPA controller writes when it decides a new count."""
    await api._request("PATCH", object_path("Deployment", namespace, deployment, "scale"),
                       body={"spec": {"replicas": replicas}}, content_type="application/merge-patch+json")


async def deployment_of(api: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    (dep,) = await children(api, namespace, name, "Deployment")
    return dep


async def test_each_revision_has_an_hpa_that_the_operator_never_fights(
    api: KubeClient, namespace: str, operator: None
) -> None:
    name = "scaled"
    # durationSeconds 0: no analysis asked for, a Ready canary is promoted at once (rollouts are
    # tested in test_rollouts.py; here only who sizes what matters).
    await create(api, make_isvc(name, namespace, autoscaling={"minReplicas": 2, "maxReplicas": 6},
                                rollout={"analysis": {"durationSeconds": 0}}))
    await wait_status(api, namespace, name, lambda o: ready(o) and o["status"]["readyReplicas"] == 2,
                      timeout=READY_TIMEOUT)
    dep = await deployment_of(api, namespace, name)
    (hpa,) = await children(api, namespace, name, "HorizontalPodAutoscaler")
    assert hpa["metadata"]["name"] == dep["metadata"]["name"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)

    # The autoscaler decides 5: the operator keeps 5 and reports them.
    await scale(api, namespace, dep["metadata"]["name"], 5)
    await wait_status(api, namespace, name, lambda o: o["status"]["readyReplicas"] == 5, timeout=READY_TIMEOUT)
    await asyncio.sleep(2)
    assert (await deployment_of(api, namespace, name))["spec"]["replicas"] == 5, "the operator undid the HPA"

    # New bounds: the HPA follows the spec, and the count is brought into them at once.
    await patch_spec(api, namespace, name, {"autoscaling": {"minReplicas": 1, "maxReplicas": 3}})

    async def bounded() -> bool:
        (live_hpa,) = await children(api, namespace, name, "HorizontalPodAutoscaler")
        return (live_hpa["spec"]["maxReplicas"] == 3
                and (await deployment_of(api, namespace, name))["spec"]["replicas"] == 3)

    await eventually(bounded, timeout=20)

    # A new revision starts as a canary sized for its share (5 % of 3 pods: 1), with no HPA of its
    # own; promotion scales it to the stable revision's current size before it takes the traffic,
    # so replacing the stable revision takes no capacity away.
    first = (await revisions(api, namespace, name))[0]
    await patch_spec(api, namespace, name, {"model": {"maxBatchSize": 4}})

    async def new_started() -> dict[str, Any] | None:
        deps = await children(api, namespace, name, "Deployment")
        return next((d for d in deps if first not in d["metadata"]["name"]), None)

    new = await eventually(new_started, timeout=20)
    assert new["spec"]["replicas"] == 1

    async def replaced() -> bool:
        obj = await get_isvc(api, namespace, name)
        hpas = await children(api, namespace, name, "HorizontalPodAutoscaler")
        return (await revisions(api, namespace, name) != [first] and len(await revisions(api, namespace, name)) == 1
                and [h["metadata"]["name"] for h in hpas] == [new["metadata"]["name"]]
                and obj is not None and ready(obj) and obj["status"]["readyReplicas"] == 3)

    await eventually(replaced, timeout=READY_TIMEOUT)


async def test_without_autoscaling_the_replicas_are_the_specs(api: KubeClient, namespace: str, operator: None) -> None:
    name = "fixed"
    await create(api, make_isvc(name, namespace, autoscaling={"enabled": False, "minReplicas": 1, "maxReplicas": 1},
                                replicas=2))
    await wait_status(api, namespace, name, lambda o: ready(o) and o["status"]["readyReplicas"] == 2,
                      timeout=READY_TIMEOUT)
    assert await children(api, namespace, name, "HorizontalPodAutoscaler") == []
    # kubectl scale writes spec.replicas through the InferenceService's scale subresource.
    await api._request("PATCH", object_path("InferenceService", namespace, name, "scale"),
                       body={"spec": {"replicas": 3}}, content_type="application/merge-patch+json")
    await wait_status(api, namespace, name, lambda o: o["status"]["readyReplicas"] == 3, timeout=READY_TIMEOUT)
    # Someone else's count is drift: the spec says 3.
    await scale(api, namespace, (await deployment_of(api, namespace, name))["metadata"]["name"], 1)

    async def put_back() -> bool:
        return (await deployment_of(api, namespace, name))["spec"]["replicas"] == 3

    await asyncio.sleep(1)
    await eventually(put_back, timeout=15)
