"""e2e tests run against a real cluster: only when KUBECONFIG points at one (skipped otherwise).

They need the CRD installed (`kubectl apply --server-side -f crds/`) and a namespace they may use
(TRITIUM_E2E_NAMESPACE, default "tritium-e2e"). The operator runs in this process, as in the
integration tests, so the code under test is the same.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from tests.support.operator_runner import api_client, running_operator
from tritium.controller.kube import KubeClient


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("KUBECONFIG"):
        return
    skip = pytest.mark.skip(reason="e2e: set KUBECONFIG to a cluster with the Tritium CRD installed")
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture
def namespace() -> str:
    return os.environ.get("TRITIUM_E2E_NAMESPACE", "tritium-e2e")


@pytest.fixture
async def cluster(namespace: str) -> AsyncIterator[KubeClient]:
    client = api_client()
    try:
        async with running_operator(namespaces=[namespace]):
            yield client
    finally:
        await client.close()
