"""The operator's lifecycle on a real API server: children, revisions, invalid specs, Secrets, deletion."""

from __future__ import annotations

import copy

from tests.e2e.conftest import Kube
from tests.support.operator_runner import eventually
from tests.support.operator_scenarios import (
    READY_TIMEOUT,
    children,
    condition,
    create,
    delete_and_wait,
    get_isvc,
    make_isvc,
    patch_spec,
    ready,
    revisions,
    wait_children,
    wait_event,
    wait_status,
)
from tritium.controller.handlers import FINALIZER
from tritium.controller.kube import KubeClient
from tritium.render.metadata import LABEL_REVISION


async def test_lifecycle(kube: Kube, api: KubeClient, namespace: str, operator: None) -> None:
    name = "lifecycle"
    created = await create(api, make_isvc(name, namespace))
    uid = created["metadata"]["uid"]

    # create -> every child, owned by the service, and status.
    found = await wait_children(api, namespace, name, uid)
    first = found["Deployment"][0]["metadata"]["labels"][LABEL_REVISION]
    assert found["Deployment"][0]["spec"]["replicas"] == 1
    obj = await wait_status(api, namespace, name, ready, timeout=READY_TIMEOUT)
    assert obj["status"]["stableRevision"] == first
    assert obj["status"]["readyReplicas"] == 1
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert condition(obj, "SpecValid")["status"] == "True"
    assert condition(obj, "RolloutProgressing")["status"] == "False"
    await wait_event(api, namespace, name, "RevisionCreated")

    # A scaling change applies in place: same revision, new replica count, pods follow.
    await patch_spec(api, namespace, name, {"autoscaling": {"minReplicas": 2, "maxReplicas": 3}})
    obj = await wait_status(api, namespace, name, lambda o: ready(o) and o["status"]["readyReplicas"] == 2,
                            timeout=READY_TIMEOUT)
    assert await revisions(api, namespace, name) == [first]

    # A pod change is a new revision beside the stable one; once it is ready the old one goes.
    await patch_spec(api, namespace, name, {"model": {"maxBatchSize": 16}})

    async def replaced() -> str | None:
        revs = await revisions(api, namespace, name)
        obj = await get_isvc(api, namespace, name)
        if len(revs) == 1 and revs[0] != first and obj and ready(obj) and obj["status"]["stableRevision"] == revs[0]:
            return revs[0]
        return None

    second = await eventually(replaced, timeout=READY_TIMEOUT)
    async def pruned() -> bool:
        for kind in ("ConfigMap", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"):
            names = [c["metadata"]["name"] for c in await children(api, namespace, name, kind)]
            shared = {"ConfigMap": f"{name}-traffic", "Service": name}.get(kind)  # one per service
            own = [n for n in names if n != shared]
            if kind == "Service":  # a revision serving alone has no Service of its own
                assert own == [], f"the old revision's Service is pruned too: {names}"
                continue
            assert len(own) == 1 and own[0].endswith(second), f"the old revision's {kind} is pruned too: {names}"
        return True

    await eventually(pruned, timeout=20)
    cms = [c for c in await children(api, namespace, name, "ConfigMap") if c["metadata"]["name"].endswith(second)]
    assert "max_batch_size: 16" in cms[0]["data"]["config.pbtxt"]
    obj = await get_isvc(api, namespace, name)
    assert obj is not None and "canaryRevision" not in obj["status"]
    await wait_event(api, namespace, name, "RevisionRemoved")

    # A field that does nothing yet is refused, naming it, rather than silently ignored.
    await patch_spec(api, namespace, name, {"autoscaling": {"scaleUpSeconds": 10}})
    obj = await wait_status(api, namespace, name, lambda o: "not supported yet" in condition(o, "Ready").get(
        "message", ""))
    assert condition(obj, "Ready")["message"].startswith("spec.autoscaling.scaleUpSeconds")
    await patch_spec(api, namespace, name, {"autoscaling": {"scaleUpSeconds": 30}})
    await wait_status(api, namespace, name, ready, timeout=READY_TIMEOUT)

    # A spec the schema accepts but that cannot work: InvalidSpec naming the field, nothing touched.
    before = {d["metadata"]["name"]: (d["metadata"]["resourceVersion"], copy.deepcopy(d["spec"]))
              for d in await children(api, namespace, name, "Deployment")}
    await patch_spec(api, namespace, name, {"model": {"storageUri": "ftp://models/iris"}})
    obj = await wait_status(api, namespace, name, lambda o: condition(o, "Ready").get("reason") == "InvalidSpec")
    assert "spec.model.storageUri" in condition(obj, "Ready")["message"]
    assert obj["status"]["phase"] == "Degraded", "the old revision still serves"
    event = await wait_event(api, namespace, name, "InvalidSpec", "spec.model.storageUri")
    assert event["type"] == "Warning"
    after = {d["metadata"]["name"]: (d["metadata"]["resourceVersion"], d["spec"])
             for d in await children(api, namespace, name, "Deployment")}
    assert after == before, "an invalid spec must leave the running Deployment untouched"

    # Deleting the service: no finalizer holds it; the garbage collector takes its children.
    await delete_and_wait(api, namespace, name, timeout=30)


async def test_a_secret_created_later_is_noticed(api: KubeClient, namespace: str, operator: None) -> None:
    name = "needs-secret"
    obj = make_isvc(name, namespace)
    obj["spec"]["model"]["storageSecretName"] = "model-store"
    await create(api, obj)
    found = await wait_status(api, namespace, name, lambda o: condition(o, "Ready").get("reason") == "InvalidSpec")
    assert "spec.model.storageSecretName" in condition(found, "Ready")["message"]
    assert await children(api, namespace, name, "Deployment") == []

    await api.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "model-store", "namespace": namespace},
                      "stringData": {"AWS_ACCESS_KEY_ID": "e2e", "AWS_SECRET_ACCESS_KEY": "e2e"}})
    obj = await wait_status(api, namespace, name, ready, timeout=15)
    assert condition(obj, "SpecValid")["status"] == "True"


async def test_the_finalizer_of_earlier_versions_is_removed(api: KubeClient, namespace: str, operator: None) -> None:
    """Earlier versions blocked a service's deletion with a finalizer until they had cleaned up;
    this one needs none (its children carry owner references), and a service that still has it is
    freed, so that deleting it does not wait for an operator that no longer removes it."""
    name = "had-a-finalizer"
    obj = make_isvc(name, namespace)
    obj["metadata"]["finalizers"] = [FINALIZER]
    created = await create(api, obj)
    assert created["metadata"]["finalizers"] == [FINALIZER]
    await wait_status(api, namespace, name, ready, timeout=READY_TIMEOUT)

    async def freed() -> bool:
        found = await get_isvc(api, namespace, name)
        return found is not None and FINALIZER not in (found["metadata"].get("finalizers") or [])

    await eventually(freed, timeout=15)
    await delete_and_wait(api, namespace, name, timeout=30)
