"""The real kopf operator loop against the Kubernetes API emulator (kmock), for faults only.

Everything a real API server can show (lifecycle, drift, steady state, restarts, RBAC) runs in
tests/e2e on the real control plane. Here stay the cases a real server cannot produce on demand:
injected API errors, and objects its schema would never let through.
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


