"""Operator scenarios shared by the integration tests (API emulator) and the e2e tests (real cluster).

Each scenario talks to the API only through KubeClient, so it runs unchanged on both.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.support.operator_runner import eventually
from tritium.controller.kube import KubeClient
from tritium.render.metadata import LABEL_REVISION

CHILD_KINDS = ("ServiceAccount", "ConfigMap", "Deployment", "Service", "NetworkPolicy")


def make_isvc(name: str, namespace: str, **spec_overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"name": "iris", "storageUri": "gs://example-models/iris", "format": "onnx", "maxBatchSize": 8},
        "runtime": {"resources": {"cpu": "1", "memory": "1Gi"}},
        "autoscaling": {"minReplicas": 1, "maxReplicas": 3},
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


async def mark_deployment_ready(client: KubeClient, namespace: str, deployment: dict[str, Any]) -> None:
    """Play the Deployment controller: report every replica ready (only where no real one runs)."""
    meta = deployment["metadata"]
    replicas = deployment["spec"].get("replicas", 1)
    status = {"observedGeneration": meta.get("generation", 1), "replicas": replicas, "readyReplicas": replicas,
              "availableReplicas": replicas, "updatedReplicas": replicas}
    await client.patch_status("Deployment", namespace, meta["name"], status)


async def scenario_create_update_invalid_delete(
    client: KubeClient, namespace: str, simulate_pods: bool, pods_become_ready: bool | None = None
) -> None:
    """create -> children + status; update -> re-applied (new revision beside the old one);
    invalid spec -> InvalidSpec while the old Deployment stays; delete -> cleaned up.

    ``simulate_pods``: report Deployments ready ourselves (where no Deployment controller runs).
    ``pods_become_ready``: whether pods will be Ready at all (on a real cluster only when the images
    can be pulled and scheduled); when not, the readiness-dependent steps are left out.
    """
    ready = simulate_pods if pods_become_ready is None else pods_become_ready
    name = "lifecycle"
    created = await create(client, make_isvc(name, namespace))
    uid = created["metadata"]["uid"]

    found = await wait_children(client, namespace, name, uid)
    deployment = found["Deployment"][0]
    first_revision = deployment["metadata"]["labels"][LABEL_REVISION]
    assert deployment["spec"]["replicas"] == 1
    obj = await wait_status(client, namespace, name, lambda o: (o.get("status") or {}).get("observedGeneration") == 1)
    status = obj["status"]
    assert status["url"] == f"http://{name}.{namespace}.svc.cluster.local"
    assert condition(obj, "SpecValid")["status"] == "True"
    assert status["selector"] == f"app.kubernetes.io/instance={name},app.kubernetes.io/component=predictor"

    if simulate_pods:
        await mark_deployment_ready(client, namespace, deployment)
    if ready:
        obj = await wait_status(client, namespace, name, lambda o: condition(o, "Ready").get("status") == "True",
                                timeout=300 if not simulate_pods else 20)
        assert obj["status"]["phase"] == "Ready"
        assert obj["status"]["stableRevision"] == first_revision
    else:
        assert obj["status"]["phase"] == "Progressing"

    # A scaling change is applied in place: same revision, new replica count.
    await patch_spec(client, namespace, name, {"autoscaling": {"minReplicas": 2, "maxReplicas": 3}})

    async def scaled() -> bool:
        deps = await children(client, namespace, name, "Deployment")
        return len(deps) == 1 and deps[0]["spec"]["replicas"] == 2

    await eventually(scaled)

    # A pod-relevant change is a new revision, run beside the stable one until it is ready.
    await patch_spec(client, namespace, name, {"model": {"maxBatchSize": 16}})

    async def two_revisions() -> list[dict[str, Any]] | None:
        deps = await children(client, namespace, name, "Deployment")
        # A stable revision stays beside the new one; one that never became ready is simply replaced.
        return deps if len(deps) == (2 if ready else 1) and any(
            d["metadata"]["labels"][LABEL_REVISION] != first_revision for d in deps) else None

    deps = await eventually(two_revisions)
    new = next(d for d in deps if d["metadata"]["labels"][LABEL_REVISION] != first_revision)
    new_revision = new["metadata"]["labels"][LABEL_REVISION]
    cms = await children(client, namespace, name, "ConfigMap")
    new_cm = next(c for c in cms if c["metadata"]["labels"][LABEL_REVISION] == new_revision)
    assert "max_batch_size: 16" in new_cm["data"]["config.pbtxt"]
    if ready:
        obj = await wait_status(client, namespace, name, lambda o: (o.get("status") or {}).get("canaryRevision"))
        assert obj["status"]["stableRevision"] == first_revision
        assert condition(obj, "RolloutProgressing")["status"] == "True"

    if simulate_pods:
        await mark_deployment_ready(client, namespace, new)

        async def old_pruned() -> bool:
            deps = await children(client, namespace, name, "Deployment")
            return [d["metadata"]["labels"][LABEL_REVISION] for d in deps] == [new_revision]

        await eventually(old_pruned)
        obj = await wait_status(client, namespace, name, lambda o: o["status"].get("stableRevision") == new_revision)
        assert obj["status"]["phase"] == "Ready"
        assert condition(obj, "RolloutProgressing")["status"] == "False"

    # A spec that passes the schema but cannot work: Ready=False/InvalidSpec, nothing touched.
    deployments = await children(client, namespace, name, "Deployment")
    before = {d["metadata"]["name"]: copy.deepcopy(d["spec"]) for d in deployments}
    await patch_spec(client, namespace, name, {"model": {"storageUri": "ftp://models/iris"}})
    obj = await wait_status(client, namespace, name, lambda o: condition(o, "Ready").get("reason") == "InvalidSpec")
    assert "spec.model.storageUri" in condition(obj, "Ready")["message"]
    assert condition(obj, "SpecValid")["status"] == "False"
    after = {d["metadata"]["name"]: d["spec"] for d in await children(client, namespace, name, "Deployment")}
    assert after == before, "an invalid spec must leave the running Deployments untouched"

    # Deleting the service deletes its children.
    await client.delete("InferenceService", namespace, name)

    async def gone() -> bool:
        if await get_isvc(client, namespace, name) is not None:
            return False
        return not any([await children(client, namespace, name, k) for k in CHILD_KINDS])

    await eventually(gone, timeout=30)


async def scenario_missing_secret(client: KubeClient, namespace: str) -> None:
    """A referenced Secret that does not exist: InvalidSpec naming the field, no children."""
    name = "needs-secret"
    obj = make_isvc(name, namespace)
    obj["spec"]["security"] = {"apiKeysSecretRef": {"name": "no-such-secret", "key": "keys"}}
    await create(client, obj)
    found = await wait_status(client, namespace, name, lambda o: condition(o, "Ready").get("reason") == "InvalidSpec")
    assert "spec.security.apiKeysSecretRef" in condition(found, "Ready")["message"]
    assert found["status"]["phase"] == "Failed"
    assert await children(client, namespace, name, "Deployment") == []
    await client.delete("InferenceService", namespace, name)
