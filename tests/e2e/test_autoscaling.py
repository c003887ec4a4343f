"""The HorizontalPodAutoscaler of each revision, on a real API server and controller manager.

The simulated pods report no metrics, so the HPA controller never computes a count from a metric
(ScalingActive=False); most tests play its decision through the Deployment's scale subresource,
exactly the write the HPA makes, and check what the operator does around it. One test lets the
real HPA controller of kube-controller-manager act on the rendered HPA: its min/max bounds apply
without any metric.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.operator_runner import eventually, running_operator
from tests.support.operator_scenarios import (
    READY_TIMEOUT,
    children,
    condition,
    create,
    events_of,
    get_isvc,
    make_isvc,
    patch_spec,
    ready,
    revisions,
    wait_status,
)
from tritium.controller.kube import KubeClient, object_path
from tritium.render.hpa import SYNC_SECONDS


async def scale(api: KubeClient, namespace: str, deployment: str, replicas: int) -> None:
    """What the HPA controller writes when it decides a new count."""
    await api._request("PATCH", object_path("Deployment", namespace, deployment, "scale"),
                       body={"spec": {"replicas": replicas}}, content_type="application/merge-patch+json")


async def deployment_of(api: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    (dep,) = await children(api, namespace, name, "Deployment")
    return dep


async def hpa_of(api: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    (hpa,) = await children(api, namespace, name, "HorizontalPodAutoscaler")
    return hpa


async def hpa_rescaled(api: KubeClient, namespace: str, name: str, to: int, found: int, reason: str) -> None:
    """Until the HPA controller has set the Deployment to ``to`` pods from ``found``, for ``reason``.

    The controller looks at each HPA once per sync period, the first time one period after the HPA
    was created, so a correction takes up to one period after the write that calls for it; two
    periods and some slack cover a write that just missed a sync on a loaded machine.
    """
    async def rescaled() -> dict[str, Any] | None:
        hpa = await hpa_of(api, namespace, name)
        replicas = (await deployment_of(api, namespace, name))["spec"]["replicas"]
        return hpa if replicas == to and (hpa.get("status") or {}).get("desiredReplicas") == to else None

    hpa = await eventually(rescaled, timeout=2 * SYNC_SECONDS + 10)
    # The status of that sync: the count the controller found (spec.replicas when it looked) and the
    # count it set; and its Event, which only the HPA controller posts, naming the bound it applied.
    assert (hpa["status"]["currentReplicas"], hpa["status"]["desiredReplicas"]) == (found, to), hpa["status"]
    # (Events are posted asynchronously, so it may land just after the status.)
    message = f"New size: {to}; reason: {reason}"

    async def posted() -> bool:
        events = await events_of(api, namespace, hpa["metadata"]["name"])
        assert any(e["reason"] == "SuccessfulRescale" and message in e["message"] for e in events), [
            e["message"] for e in events]
        return True

    await eventually(posted, timeout=10)


async def test_each_revision_has_an_hpa_that_the_operator_never_fights(
    api: KubeClient, namespace: str, operator: None
) -> None:
    name = "scaled"
    # make_isvc's rollout: no analysis asked for and no scale-down delay, so a Ready canary is
    # promoted at once and the old revision goes then (rollouts are tested in test_rollouts.py;
    # here only who sizes what matters). An override of `rollout` that kept the 30 s default delay
    # spent half of the wait below on it, and ran out of time on a loaded machine.
    await create(api, make_isvc(name, namespace, autoscaling={"minReplicas": 2, "maxReplicas": 6}))
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


async def test_the_hpa_controller_holds_the_deployment_within_the_rendered_bounds(
    api: KubeClient, namespace: str
) -> None:
    """The HPA the operator renders is one kube-controller-manager acts on, not just an object.

    The operator runs only until the service is Ready: it brings an out-of-bounds count back into
    [minReplicas, maxReplicas] itself, within a second of seeing the Deployment change, so while it
    runs the HPA controller (which looks every 15 s) never finds a count to correct. Without it,
    the HPA alone does: below minReplicas and above maxReplicas are the two rules it applies before
    it reads any metric, so they hold with the simulated pods, which report none.
    """
    name = "bounded"
    async with running_operator(namespaces=[namespace]):
        await create(api, make_isvc(name, namespace, autoscaling={"minReplicas": 2, "maxReplicas": 4}))
        await wait_status(api, namespace, name, lambda o: ready(o) and o["status"]["readyReplicas"] == 2,
                          timeout=READY_TIMEOUT)
    dep = (await deployment_of(api, namespace, name))["metadata"]["name"]

    # Below minReplicas at once, before the HPA's first sync (one period after its creation): that
    # sync gets the scale (AbleToScale=True) and corrects it.
    await scale(api, namespace, dep, 1)
    await hpa_rescaled(api, namespace, name, to=2, found=1, reason="Current number of replicas below Spec.MinReplicas")
    hpa = await hpa_of(api, namespace, name)
    assert condition(hpa, "AbleToScale").get("status") == "True", hpa["status"]
    # A sync that applies a bound sets no ScalingActive at all: it never reads a metric. (Were the
    # first sync to come before the write above, it would have read one and said False: never True.)
    assert condition(hpa, "ScalingActive").get("status") != "True", hpa["status"]

    # Above maxReplicas: brought down to it at the next sync, whatever the scale-down stabilization
    # window of the rendered behavior (it applies to counts computed from metrics, not to the bounds).
    await scale(api, namespace, dep, 6)
    await hpa_rescaled(api, namespace, name, to=4, found=6, reason="Current number of replicas above Spec.MaxReplicas")

    # Within the bounds, with the operator back: the next sync reads the cpu metric the HPA asks
    # for, which nothing serves here (no metrics-server), says so (ScalingActive=False) and leaves
    # the count alone; the operator keeps the HPA's count too and reports it.
    async with running_operator(namespaces=[namespace]):
        async def no_metrics() -> dict[str, Any] | None:
            hpa = await hpa_of(api, namespace, name)
            return hpa if condition(hpa, "ScalingActive").get("status") == "False" else None

        hpa = await eventually(no_metrics, timeout=2 * SYNC_SECONDS + 10)
        assert condition(hpa, "ScalingActive")["reason"] == "FailedGetResourceMetric", hpa["status"]
        assert condition(hpa, "AbleToScale")["status"] == "True", hpa["status"]
        assert hpa["status"]["currentReplicas"] == 4, hpa["status"]
        await wait_status(api, namespace, name, lambda o: ready(o) and o["status"]["readyReplicas"] == 4,
                          timeout=READY_TIMEOUT)
        assert (await deployment_of(api, namespace, name))["spec"]["replicas"] == 4, "the operator undid the HPA"
