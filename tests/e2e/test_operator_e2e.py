"""The operator scenarios against a real API server (see conftest.py for how to run them)."""

from __future__ import annotations

from tests.support.operator_scenarios import scenario_create_update_invalid_delete, scenario_missing_secret
from tritium.controller.kube import KubeClient


async def test_lifecycle_on_a_cluster(cluster: KubeClient, namespace: str) -> None:
    # A real Deployment controller reports readiness; pods need pullable images and nodes to run on.
    await scenario_create_update_invalid_delete(cluster, namespace, simulate_pods=False)


async def test_missing_secret_on_a_cluster(cluster: KubeClient, namespace: str) -> None:
    await scenario_missing_secret(cluster, namespace)
