"""Blue-green rollouts with a canary, on a real API server: promotion, rollback, deadlines, restarts.

The built-in analysis provider scrapes the canary pods' gateway metrics at their addresses. The
pods are simulated (tests/support/nodesim.py gives them 127.1.x.x addresses), so each test runs
a real metrics endpoint on the canary pods' own addresses, fed with the answers the test wants
(healthy or failing). Nothing else is dialed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from tests.e2e.conftest import Kube
from tests.support.operator_runner import eventually, running_operator
from tests.support.operator_scenarios import (
    children,
    create,
    events_of,
    get_isvc,
    make_isvc,
    patch_spec,
    revisions,
    wait_event,
    wait_status,
)
from tests.support.prometheus import MetricsPod
from tritium import pod_layout
from tritium.controller.kube import KubeClient
from tritium.controller.notify import EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from tritium.render.metadata import LABEL_ISVC, LABEL_REVISION

TIMEOUT = 60
ROLLOUT = {
    "canaryPercent": 5,
    "analysis": {"intervalSeconds": 5, "durationSeconds": 10, "minRequests": 20},
    "progressDeadlineSeconds": 30,
    "scaleDownDelaySeconds": 6,
}


def phase(obj: dict[str, Any]) -> str | None:
    return ((obj.get("status") or {}).get("rollout") or {}).get("phase")


async def traffic_split(api: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    cm = await api.get("ConfigMap", namespace, f"{name}-traffic")
    assert cm is not None, "the traffic ConfigMap exists"
    return json.loads(cm["data"][pod_layout.TRAFFIC_FILE])


async def deployment(api: KubeClient, namespace: str, name: str, revision: str) -> dict[str, Any] | None:
    return await api.get("Deployment", namespace, f"{name}-{revision}")


async def service_revision(api: KubeClient, namespace: str, name: str) -> str:
    svc = await api.get("Service", namespace, name)
    assert svc is not None
    return str(svc["spec"]["selector"][LABEL_REVISION])


@contextlib.asynccontextmanager
async def canary_metrics(api: KubeClient, namespace: str, name: str, revision: str,
                         error_every: int = 0) -> AsyncIterator[list[MetricsPod]]:
    """Real metrics endpoints on the revision's pod addresses, counting 40 answers per pod a second
    (every ``error_every``-th a 500) for as long as the block runs."""
    pods: dict[str, MetricsPod] = {}
    stop = asyncio.Event()

    async def feed() -> None:
        while not stop.is_set():
            for pod in await api.list("Pod", namespace, f"{LABEL_ISVC}={name},{LABEL_REVISION}={revision}"):
                ip = (pod.get("status") or {}).get("podIP")
                if ip and ip not in pods:
                    pods[ip] = await MetricsPod(ip, pod_layout.GATEWAY_METRICS_PORT).start()
            for metrics in pods.values():
                metrics.traffic(20, error_every=error_every)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    task = asyncio.create_task(feed())
    try:
        yield list(pods.values())
    finally:
        stop.set()
        await task
        for metrics in pods.values():
            await metrics.stop()


async def stable_ready(api: KubeClient, namespace: str, name: str, replicas: int = 2) -> tuple[str, dict[str, Any]]:
    obj = await wait_status(api, namespace, name, lambda o: phase(o) == "Promoted" and o["status"].get(
        "readyReplicas") == replicas, timeout=TIMEOUT)
    stable = obj["status"]["stableRevision"]
    dep = await deployment(api, namespace, name, stable)
    assert dep is not None
    return stable, dep


@contextlib.asynccontextmanager
async def webhook_receiver() -> AsyncIterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A real HTTP receiver on loopback; yields its URL and what it received (headers, body)."""
    received: list[tuple[dict[str, str], bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/hook", received
    finally:
        await runner.cleanup()


def reasons(events: list[dict[str, Any]]) -> list[str]:
    return [e["reason"] for e in events]


async def test_a_healthy_canary_gets_5_percent_passes_analysis_and_is_promoted(
    kube: Kube, api: KubeClient, namespace: str
) -> None:
    """Also: the operator restarted during the canary goes on from the same step."""
    name = "happy"
    spec = {"autoscaling": {"enabled": False, "minReplicas": 1, "maxReplicas": 1}, "replicas": 2, "rollout": ROLLOUT}
    async with running_operator(namespaces=[namespace]):
        await create(api, make_isvc(name, namespace, **spec))
        old, old_dep = await stable_ready(api, namespace, name)
        assert (await traffic_split(api, namespace, name))["canaryWeight"] == 0
        await patch_spec(api, namespace, name, {"model": {"maxBatchSize": 4}})
        obj = await wait_status(api, namespace, name, lambda o: phase(o) == "Canary", timeout=TIMEOUT)
    new = obj["status"]["canaryRevision"]
    assert new != old and obj["status"]["canaryWeight"] == 5
    canary_since = obj["status"]["rollout"]["canarySince"]
    # The canary: one pod for its 5 % share, its own Service; the stable gateways forward the share.
    assert (await deployment(api, namespace, name, new))["spec"]["replicas"] == 1  # type: ignore[index]
    assert await service_revision(api, namespace, name) == old
    split = await traffic_split(api, namespace, name)
    assert (split["stable"], split["canary"], split["canaryWeight"]) == (old, new, 5)
    assert split["canaryUrl"] == f"http://{name}-{new}.{namespace}.svc.cluster.local:80"
    own = await api.get("Service", namespace, f"{name}-{new}")
    assert own is not None and own["spec"]["selector"][LABEL_REVISION] == new

    # The operator was stopped while the canary ran; a new one resumes the same step.
    async with canary_metrics(api, namespace, name, new), running_operator(namespaces=[namespace]):
        promoting = await wait_status(api, namespace, name, lambda o: phase(o) in ("Promoting", "Promoted"),
                                      timeout=TIMEOUT)
        assert promoting["status"]["rollout"]["canarySince"] == canary_since, "the step was not restarted"
        analysis = promoting["status"]["analysis"]
        assert analysis and all(a["revision"] == new for a in analysis)
        assert analysis[-1]["result"] == "Passed" and analysis[-1]["requests"] >= 20
        # The stable revision was never touched before promotion.
        assert (await deployment(api, namespace, name, old))["metadata"]["generation"] == (  # type: ignore[index]
            old_dep["metadata"]["generation"])
        done = await wait_status(api, namespace, name, lambda o: phase(o) == "Promoted"
                                 and o["status"]["stableRevision"] == new, timeout=TIMEOUT)
        assert "canaryRevision" not in done["status"] and "canaryWeight" not in done["status"]
        # Promoted: scaled to the stable size first, then all traffic; the old revision stays a while.
        assert (await deployment(api, namespace, name, new))["spec"]["replicas"] == 2  # type: ignore[index]
        assert await service_revision(api, namespace, name) == new
        assert (await traffic_split(api, namespace, name))["canaryWeight"] == 0
        assert await deployment(api, namespace, name, old) is not None, "kept for scaleDownDelaySeconds"

        async def old_removed() -> bool:
            return await revisions(api, namespace, name) == [new]

        await eventually(old_removed, timeout=TIMEOUT)
        assert await api.get("Service", namespace, f"{name}-{old}") is None
    seen = reasons(await events_of(api, namespace, name))
    for reason in ("RolloutStarted", "CanaryStarted", "AnalysisPassed", "PromotionStarted", "Promoted"):
        assert reason in seen, f"no {reason} event in {seen}"


async def test_a_failing_canary_is_rolled_back_and_not_retried(
    kube: Kube, api: KubeClient, namespace: str, operator: None
) -> None:
    """Also: each step is a signed notification to the webhook."""
    name = "failing"
    rollout = {**ROLLOUT, "analysis": {**ROLLOUT["analysis"], "failureLimit": 0}}
    secret = b"webhook-signing-key"
    await api.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hook", "namespace": namespace},
                      "data": {"signing": base64.b64encode(secret).decode()}})
    async with webhook_receiver() as (url, received):
        monitoring = {"webhook": {"url": url, "signingSecretRef": {"name": "hook", "key": "signing"}}}
        spec = {"autoscaling": {"enabled": False, "minReplicas": 1, "maxReplicas": 1}, "replicas": 2,
                "rollout": rollout, "monitoring": monitoring}
        await create(api, make_isvc(name, namespace, **spec))
        await _fail_and_roll_back(api, namespace, name)

        async def notified() -> list[str]:
            types = [json.loads(body)["type"] for _, body in received]
            return types if "RolledBack" in types else []

        types = await eventually(notified, timeout=20)
    assert types[:4] == ["RolloutStarted", "CanaryStarted", "AnalysisFailed", "RolledBack"], types
    for headers, body in received:
        assert verify_signature(secret, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
        assert headers[EVENT_HEADER] == json.loads(body)["type"]
    last = json.loads(received[-1][1])
    assert last["inferenceService"] == {"namespace": namespace, "name": name}
    assert last["analysis"]["verdict"] == "Failed"


async def _fail_and_roll_back(api: KubeClient, namespace: str, name: str) -> None:
    old, old_dep = await stable_ready(api, namespace, name)
    await patch_spec(api, namespace, name, {"model": {"maxBatchSize": 4}})
    obj = await wait_status(api, namespace, name, lambda o: phase(o) == "Canary", timeout=TIMEOUT)
    new = obj["status"]["canaryRevision"]
    async with canary_metrics(api, namespace, name, new, error_every=4):  # 25 % errors
        obj = await wait_status(api, namespace, name, lambda o: phase(o) == "RolledBack", timeout=TIMEOUT)
    rollout_status = obj["status"]["rollout"]
    assert rollout_status["reason"] == "AnalysisFailed" and rollout_status["rejectedRevision"] == new
    assert obj["status"]["analysis"][-1]["result"] == "Failed"
    assert obj["status"]["stableRevision"] == old and "canaryRevision" not in obj["status"]
    assert await revisions(api, namespace, name) == [old]
    assert await api.get("Service", namespace, f"{name}-{new}") is None
    split = await traffic_split(api, namespace, name)
    assert (split["stable"], split["canary"], split["canaryWeight"]) == (old, None, 0)
    stable_now = await deployment(api, namespace, name, old)
    assert stable_now is not None and stable_now["metadata"]["generation"] == old_dep["metadata"]["generation"]
    progressing = next(c for c in obj["status"]["conditions"] if c["type"] == "RolloutProgressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "AnalysisFailed")
    await wait_event(api, namespace, name, "AnalysisFailed")  # a courtesy: may land just after the status
    # Not retried while the spec asks for the rejected revision.
    await asyncio.sleep(6)
    assert await revisions(api, namespace, name) == [old]
    # A new spec is a new rollout.
    await patch_spec(api, namespace, name, {"model": {"maxBatchSize": 2}})
    obj = await wait_status(api, namespace, name, lambda o: phase(o) in ("Starting", "Canary")
                            and o["status"].get("canaryRevision") not in (None, new), timeout=TIMEOUT)
    assert obj["status"]["stableRevision"] == old


async def test_a_canary_that_never_gets_ready_is_rolled_back_after_the_deadline(
    kube: Kube, api: KubeClient, namespace: str, operator: None
) -> None:
    name = "stuck"
    spec = {"autoscaling": {"enabled": False, "minReplicas": 1, "maxReplicas": 1}, "replicas": 2, "rollout": ROLLOUT}
    await create(api, make_isvc(name, namespace, **spec))
    old, old_dep = await stable_ready(api, namespace, name)
    # An image that cannot be pulled (the node simulator's ErrImagePull): its pods never get ready.
    await patch_spec(api, namespace, name, {"runtime": {"image": "registry.invalid/triton:none",
                                                        "resources": {"cpu": "1", "memory": "1Gi"}}})
    obj = await wait_status(api, namespace, name, lambda o: phase(o) == "Starting", timeout=TIMEOUT)
    new = obj["status"]["rollout"]["revision"]
    assert obj["status"]["canaryWeight"] == 0
    stable_specs = []

    async def rolled_back() -> dict[str, Any] | None:
        dep = await deployment(api, namespace, name, old)
        assert dep is not None, "the stable Deployment is never removed"
        stable_specs.append((dep["metadata"]["generation"], dep["spec"]["replicas"]))
        split = await traffic_split(api, namespace, name)
        assert split["canaryWeight"] == 0, "no weight to a revision that is not Ready"
        current = await get_isvc(api, namespace, name)
        return current if current and phase(current) == "RolledBack" else None

    obj = await eventually(rolled_back, timeout=TIMEOUT, interval=1)
    assert set(stable_specs) == {(old_dep["metadata"]["generation"], 2)}, "the stable revision was untouched"
    assert obj["status"]["rollout"]["reason"] == "ProgressDeadlineExceeded"
    assert obj["status"]["rollout"]["rejectedRevision"] == new
    assert await revisions(api, namespace, name) == [old]
    assert obj["status"]["phase"] == "Ready", "the stable revision serves throughout"
    await wait_event(api, namespace, name, "ProgressDeadlineExceeded")


async def test_a_person_promotes_or_aborts_with_an_annotation(
    kube: Kube, api: KubeClient, namespace: str, operator: None
) -> None:
    """autoPromote false: the canary waits; the promote annotation naming it ends the wait."""
    name = "manual"
    rollout = {**ROLLOUT, "autoPromote": False, "analysis": {**ROLLOUT["analysis"], "durationSeconds": 0}}
    spec = {"autoscaling": {"enabled": False, "minReplicas": 1, "maxReplicas": 1}, "replicas": 2, "rollout": rollout}
    await create(api, make_isvc(name, namespace, **spec))
    old, _ = await stable_ready(api, namespace, name)
    await patch_spec(api, namespace, name, {"model": {"maxBatchSize": 4}})
    obj = await wait_status(api, namespace, name, lambda o: phase(o) == "Paused", timeout=TIMEOUT)
    new = obj["status"]["canaryRevision"]
    assert obj["status"]["rollout"]["reason"] == "AwaitingPromotion" and obj["status"]["canaryWeight"] == 5
    # A refused spec meanwhile leaves the rollout as it is, state included, until it is fixed.
    await patch_spec(api, namespace, name, {"autoscaling": {"scaleUpSeconds": 10}})
    refused = await wait_status(api, namespace, name, lambda o: "not supported yet" in next(
        (c.get("message", "") for c in o["status"].get("conditions", []) if c["type"] == "Ready"), ""))
    assert phase(refused) == "Paused" and refused["status"]["canaryRevision"] == new
    await patch_spec(api, namespace, name, {"autoscaling": {"scaleUpSeconds": 30}})
    await api._request("PATCH", f"/apis/serving.tritium.dev/v1alpha1/namespaces/{namespace}/inferenceservices/{name}",
                       body={"metadata": {"annotations": {"serving.tritium.dev/promote": new}}},
                       content_type="application/merge-patch+json")
    obj = await wait_status(api, namespace, name, lambda o: o["status"].get("stableRevision") == new, timeout=TIMEOUT)
    assert phase(obj) == "Promoted" and old != new
    assert len(await children(api, namespace, name, "Deployment")) in (1, 2)  # old kept for the delay


async def test_without_surge_the_canary_takes_pods_from_stable_and_never_exceeds_them(
    kube: Kube, api: KubeClient, namespace: str, operator: None
) -> None:
    """surge false: the pods of both revisions never exceed the stable revision's 3."""
    name = "nosurge"
    # scaleDownDelaySeconds is a surge-mode setting (surge false removes the old revision as its last
    # pod moves), so this spec leaves it out rather than set a field that would do nothing.
    rollout = {key: value for key, value in ROLLOUT.items() if key != "scaleDownDelaySeconds"}
    rollout = {**rollout, "surge": False, "analysis": {**ROLLOUT["analysis"], "durationSeconds": 0}}
    spec = {"autoscaling": {"enabled": False, "minReplicas": 1, "maxReplicas": 1}, "replicas": 3, "rollout": rollout}
    await create(api, make_isvc(name, namespace, **spec))
    old, _ = await stable_ready(api, namespace, name, replicas=3)
    await patch_spec(api, namespace, name, {"model": {"maxBatchSize": 4}})
    totals: list[int] = []
    stable_sizes: list[int] = []

    async def promoted() -> dict[str, Any] | None:
        deps = await children(api, namespace, name, "Deployment")
        totals.append(sum(d["spec"]["replicas"] for d in deps))
        stable_sizes.extend(d["spec"]["replicas"] for d in deps if d["metadata"]["name"] == f"{name}-{old}")
        obj = await get_isvc(api, namespace, name)
        done = obj and phase(obj) == "Promoted" and obj["status"]["stableRevision"] != old
        return obj if done and len(deps) == 1 and deps[0]["spec"]["replicas"] == 3 else None

    await eventually(promoted, timeout=TIMEOUT, interval=0.1)
    assert max(totals) <= 3, totals
    assert min(stable_sizes) >= 1 and 2 in stable_sizes, stable_sizes  # a pod was taken, one always served
    await wait_status(api, namespace, name, lambda o: o["status"].get("readyReplicas") == 3, timeout=TIMEOUT)
