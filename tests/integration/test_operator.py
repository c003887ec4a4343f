"""The real kopf operator loop against the Kubernetes API emulator (kmock).

What the emulator cannot check (server-side apply field ownership, schema, garbage collection)
is covered by the render tests and the strict schema validation, not here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.kube_emulator import ClusterEmulator, kubeconfig_for, running_emulator
from tests.support.operator_runner import api_client, eventually, running_operator
from tests.support.operator_scenarios import (
    children,
    condition,
    create,
    make_isvc,
    mark_deployment_ready,
    scenario_create_update_invalid_delete,
    scenario_missing_secret,
    wait_children,
    wait_status,
)
from tritium.controller.kube import KubeClient

NS = "default"


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[ClusterEmulator, KubeClient]]:
    async with running_emulator() as (emulator, url):
        with kubeconfig_for(url):
            client = api_client()
            try:
                async with running_operator():
                    yield emulator, client
            finally:
                await client.close()


def writes(emulator: ClusterEmulator) -> int:
    """Write calls the API has received so far (create, patch, delete)."""
    return sum(len(emulator[verb]) for verb in ("post", "patch", "put", "delete"))


async def test_lifecycle(cluster: tuple[ClusterEmulator, KubeClient]) -> None:
    _, client = cluster
    await scenario_create_update_invalid_delete(client, NS, simulate_pods=True)


async def test_missing_secret_is_invalid_spec(cluster: tuple[ClusterEmulator, KubeClient]) -> None:
    _, client = cluster
    await scenario_missing_secret(client, NS)


async def test_steady_state_makes_no_writes(cluster: tuple[ClusterEmulator, KubeClient]) -> None:
    import asyncio

    emulator, client = cluster
    created = await create(client, make_isvc("steady", NS))
    found = await wait_children(client, NS, "steady", created["metadata"]["uid"])
    await mark_deployment_ready(client, NS, found["Deployment"][0])
    await wait_status(client, NS, "steady", lambda o: (o.get("status") or {}).get("phase") == "Ready")
    await asyncio.sleep(1.5)  # let the last events settle
    obj = await client.get("InferenceService", NS, "steady")
    assert obj is not None
    # GitOps: the operator's bookkeeping lives in status; metadata holds only what users wrote + our finalizer.
    assert not (obj["metadata"].get("annotations") or {}), obj["metadata"].get("annotations")
    assert obj["metadata"].get("finalizers") == ["serving.tritium.dev/finalizer"]
    assert obj["spec"] == make_isvc("steady", NS)["spec"], "the operator never writes spec"
    before = writes(emulator)
    await asyncio.sleep(3)
    assert writes(emulator) == before, "the operator wrote to the API while nothing changed"


async def test_restart_resumes_without_writes() -> None:
    """After a restart, resume handlers see everything in place and write nothing."""
    import asyncio

    async with running_emulator() as (emulator, url):
        with kubeconfig_for(url):
            client = api_client()
            try:
                async with running_operator():
                    created = await create(client, make_isvc("resumed", NS))
                    found = await wait_children(client, NS, "resumed", created["metadata"]["uid"])
                    await mark_deployment_ready(client, NS, found["Deployment"][0])
                    await wait_status(client, NS, "resumed", lambda o: (o.get("status") or {}).get("phase") == "Ready")
                    await asyncio.sleep(1)
                before = writes(emulator)
                async with running_operator():
                    await asyncio.sleep(3)
                    assert writes(emulator) == before
                    assert len(await children(client, NS, "resumed", "Deployment")) == 1
            finally:
                await client.close()


async def test_api_errors_are_retried(cluster: tuple[ClusterEmulator, KubeClient]) -> None:
    """A failing Deployment apply fails the reconcile; kopf retries it after a backoff and it completes."""
    import kmock

    emulator, client = cluster
    failures = emulator["patch", kmock.resource("apps/v1/deployments")][:1] << (
        lambda req: kmock.KubernetesError(status=409, message="injected conflict")
    )
    await create(client, make_isvc("flaky", NS))
    # Status is written only after every child was applied: it proves the reconcile got through.
    async def reconciled() -> bool:
        obj = await client.get("InferenceService", NS, "flaky")
        return bool(obj and (obj.get("status") or {}).get("observedGeneration") == 1)

    await eventually(reconciled, timeout=40)
    assert len(failures) >= 1, "the injected failure was served"


async def test_garbage_input_never_crashes_the_operator(cluster: tuple[ClusterEmulator, KubeClient]) -> None:
    """Objects the schema would have refused (the emulator has none) become InvalidSpec; the operator goes on."""
    from prometheus_client import REGISTRY

    _, client = cluster
    bad_specs = {
        "not-a-mapping": "just a string",
        "no-model": {"runtime": {}},
        "wrong-types": {"model": {"name": 5, "storageUri": [], "format": "onnx"}, "autoscaling": {"minReplicas": "x"}},
        "unknown-field": {"model": {"name": "m", "storageUri": "s3://b/m", "format": "onnx", "colour": "blue"}},
    }
    for name, spec in bad_specs.items():
        obj = make_isvc(name, NS)
        obj["spec"] = spec
        await create(client, obj)
    for name in bad_specs:
        found = await wait_status(client, NS, name, lambda o: condition(o, "Ready").get("reason") == "InvalidSpec")
        assert condition(found, "Ready")["message"].startswith("spec"), condition(found, "Ready")["message"]
        assert await children(client, NS, name, "Deployment") == []
    # ...and still serves good ones.
    created = await create(client, make_isvc("after-garbage", NS))
    await wait_children(client, NS, "after-garbage", created["metadata"]["uid"])
    assert (REGISTRY.get_sample_value("tritium_operator_reconciles_total", {"result": "invalid_spec"}) or 0) >= 4
    assert (REGISTRY.get_sample_value("tritium_operator_reconciles_total", {"result": "success"}) or 0) >= 1


async def test_lifecycle_when_pods_never_become_ready(cluster: tuple[ClusterEmulator, KubeClient]) -> None:
    """The e2e path on a cluster whose pods cannot start: a never-ready revision is replaced, not kept."""
    _, client = cluster
    await scenario_create_update_invalid_delete(client, NS, simulate_pods=False, pods_become_ready=False)
