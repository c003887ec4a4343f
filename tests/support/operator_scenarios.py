"""Helpers to drive the operator through the API, shared by the e2e tests (real API server), the
fault-injection tests (API emulator) and the operator benchmark: all through KubeClient."""

from __future__ import annotations

from typing import Any

from tests.support.operator_runner import eventually
from tritium.controller.kube import KubeClient

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
    """Delete the service; the operator removes its finalizer, the garbage collector the children."""
    await client.delete("InferenceService", namespace, name)

    async def gone() -> bool:
        if await get_isvc(client, namespace, name) is not None:
            return False
        return not any([await children(client, namespace, name, k) for k in CHILD_KINDS])

    await eventually(gone, timeout=timeout)
