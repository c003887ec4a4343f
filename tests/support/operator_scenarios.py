"""Helpers to drive the operator through the API, shared by the e2e tests (real API server), the
fault-injection tests (API emulator) and the operator benchmark: all through KubeClient."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import REGISTRY

from tests.support.operator_runner import eventually
from tritium.controller.kube import KubeClient
from tritium.render.metadata import LABEL_REVISION

CHILD_KINDS = (
    "ServiceAccount", "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service",
    "NetworkPolicy",
)


def make_isvc(name: str, namespace: str, **spec_overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"name": "iris", "storageUri": "gs://example-models/iris", "format": "onnx", "maxBatchSize": 8},
        "runtime": {"resources": {"cpu": "1", "memory": "1Gi"}},
        "autoscaling": {"minReplicas": 1, "maxReplicas": 3},
        # No canary analysis and no scale-down delay: a new revision is promoted once Ready
        # (scaled to the stable size first) and the old one removed then, as tests of other
        # features expect. tests/e2e/test_rollouts.py sets its own rollout.
        "rollout": {"analysis": {"durationSeconds": 0}, "scaleDownDelaySeconds": 0},
    }
    spec.update(spec_overrides)
    return {
        "apiVersion": "serving.tritium.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


async def create(client: KubeClient, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return await client._request(
        "POST", f"/apis/serving.tritium.dev/v1alpha1/namespaces/{meta['namespace']}/inferenceservices", body=obj
    )


async def patch_spec(client: KubeClient, namespace: str, name: str, spec_patch: dict[str, Any]) -> None:
    await client._request(
        "PATCH", f"/apis/serving.tritium.dev/v1alpha1/namespaces/{namespace}/inferenceservices/{name}",
        body={"spec": spec_patch}, content_type="application/merge-patch+json",
    )


async def get_isvc(client: KubeClient, namespace: str, name: str) -> dict[str, Any] | None:
    return await client.get("InferenceService", namespace, name)


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return {}


async def children(client: KubeClient, namespace: str, name: str, kind: str) -> list[dict[str, Any]]:
    """Children of one kind owned by the service (filtered here too: the emulator ignores selectors)."""
    items = await client.list(kind, namespace, f"serving.tritium.dev/inferenceservice={name}")
    return [i for i in items if (i["metadata"].get("labels") or {}).get("serving.tritium.dev/inferenceservice") == name]


async def wait_children(client: KubeClient, namespace: str, name: str, uid: str) -> dict[str, list[dict[str, Any]]]:
    async def check() -> dict[str, list[dict[str, Any]]] | None:
        found = {k: await children(client, namespace, name, k) for k in CHILD_KINDS}
        if all(found.values()):
            return found
        return None

    found = await eventually(check)
    for kind, objs in found.items():
        for obj in objs:
            owners = obj["metadata"].get("ownerReferences") or []
            assert [o["uid"] for o in owners] == [uid], f"{kind} {obj['metadata']['name']} owners {owners}"
    return found


async def wait_status(client: KubeClient, namespace: str, name: str, predicate,  # type: ignore[no-untyped-def]
                      timeout: float = 20) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        obj = await get_isvc(client, namespace, name)
        return obj if obj and predicate(obj) else None

    return await eventually(check, timeout=timeout)


async def delete_and_wait(client: KubeClient, namespace: str, name: str, timeout: float = 60) -> None:
    """Delete the service; it goes at once (no finalizer), the garbage collector takes the children."""
    await client.delete("InferenceService", namespace, name)

    async def gone() -> bool:
        if await get_isvc(client, namespace, name) is not None:
            return False
        return not any([await children(client, namespace, name, k) for k in CHILD_KINDS])

    await eventually(gone, timeout=timeout)


# --- waits on a real API server, shared by the e2e tests -----------------------------------------

READY_TIMEOUT = 60  # simulated pods are Ready within a second or two; a real cluster pulls images


def ready(obj: dict[str, Any]) -> bool:
    """The service reports Ready, in its condition and its phase."""
    return condition(obj, "Ready").get("status") == "True" and obj["status"].get("phase") == "Ready"


async def revisions(api: KubeClient, namespace: str, name: str) -> list[str]:
    """The revisions the service runs now: one per Deployment, sorted."""
    return sorted(d["metadata"]["labels"][LABEL_REVISION] for d in await children(api, namespace, name, "Deployment"))


async def events_of(api: KubeClient, namespace: str, name: str) -> list[dict[str, Any]]:
    """The Events about the object of this name."""
    data = await api._request("GET", f"/api/v1/namespaces/{namespace}/events",
                              params={"fieldSelector": f"involvedObject.name={name}"})
    return list(data.get("items") or [])


async def wait_event(api: KubeClient, namespace: str, name: str, reason: str, containing: str = "") -> dict[str, Any]:
    """The first Event of this reason (and message part) about the object, once it is posted."""
    async def posted() -> dict[str, Any] | None:
        return next((e for e in await events_of(api, namespace, name)
                     if e["reason"] == reason and containing in e["message"]), None)

    return await eventually(posted, timeout=20)


def operator_writes() -> float:
    """API writes the in-process operator has made so far (its own metric, every verb and kind)."""
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name == "tritium_operator_api_writes":
            total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return total


async def versions(api: KubeClient, namespace: str, name: str) -> dict[str, str]:
    """resourceVersion of the service and of every child."""
    out: dict[str, str] = {}
    obj = await get_isvc(api, namespace, name)
    assert obj is not None
    out[f"InferenceService/{name}"] = obj["metadata"]["resourceVersion"]
    for kind in CHILD_KINDS:
        for child in await children(api, namespace, name, kind):
            out[f"{kind}/{child['metadata']['name']}"] = child["metadata"]["resourceVersion"]
    return out


async def settled(api: KubeClient, namespace: str, name: str, quiet: float = 3.0) -> None:
    """Wait until the service and its children stop changing: the HPA controller writes its status
    once after its first sync (up to 15 s), the Deployment controller after each rollout step."""

    async def hpas_synced() -> bool:
        hpas = await children(api, namespace, name, "HorizontalPodAutoscaler")
        return all((h.get("status") or {}).get("conditions") for h in hpas)

    await eventually(hpas_synced, timeout=60)
    last = await versions(api, namespace, name)
    while True:
        await asyncio.sleep(quiet)
        now = await versions(api, namespace, name)
        if now == last:
            return
        last = now
