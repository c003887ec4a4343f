"""The operator scenarios against a real API server (see conftest.py for how to run them)."""

from __future__ import annotations

import os

from tests.support.operator_scenarios import scenario_create_update_invalid_delete, scenario_missing_secret
from tritium.controller.kube import KubeClient


async def test_lifecycle_on_a_cluster(cluster: KubeClient, namespace: str) -> None:
    # A real Deployment controller reports readiness; pods need pullable images and nodes to run on:
    # set TRITIUM_E2E_PODS_READY=1 where they have them, to check the ready-dependent steps too.
    await scenario_create_update_invalid_delete(
        cluster, namespace, simulate_pods=False, pods_become_ready=os.environ.get("TRITIUM_E2E_PODS_READY") == "1"
    )


async def test_missing_secret_on_a_cluster(cluster: KubeClient, namespace: str) -> None:
    await scenario_missing_secret(cluster, namespace)
