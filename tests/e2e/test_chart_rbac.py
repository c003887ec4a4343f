"""The operator with exactly the permissions the chart grants it, in both modes.

After `helm install` on a fresh control plane, `tritium operator` runs as a subprocess with the
chart's arguments and a token of the chart's ServiceAccount, so every request it makes (kopf's
discovery and watches, peering, server-side apply of children, status, Events, finalizers, the
Secret and ConfigMap watches) is authorized by the chart's Roles and nothing else. Any 401/403
in its output fails the test, with the offending lines; a missing rule is fixed in
charts/tritium/templates/_helpers.tpl (and deploy/install.yaml regenerated).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import start_control_plane
from tests.support.installs import (
    NAMESPACE,
    VALUES_DIR,
    Cluster,
    OperatorProcess,
    denied_lines,
    fresh_cluster,
    operator_command,
    service_account_kubeconfig,
    wait_for,
)
from tests.support.operator_runner import api_client, eventually
from tests.support.operator_scenarios import (
    children,
    condition,
    create,
    delete_and_wait,
    make_isvc,
    wait_children,
    wait_status,
)
from tritium.controller.kube import KubeClient

READY_TIMEOUT = 90
MODES = {
    "cluster-wide": ((), ()),
    "namespaced": (("-f", str(VALUES_DIR / "namespaced.yaml")), ("team-a", "team-b")),
}


def ready(obj: dict[str, Any]) -> bool:
    return condition(obj, "Ready").get("status") == "True" and obj["status"].get("phase") == "Ready"


def peering_joined(cluster: Cluster, name: str, namespaces: tuple[str, ...]) -> bool:
    """The peering objects exist (the operator makes them) and carry the operator's keep-alive."""
    found = ([cluster.get("kopfpeering", name, ns) for ns in namespaces] if namespaces
             else [cluster.get("clusterkopfpeering", name)])
    return all(obj is not None and (obj.get("status") or {}) for obj in found)


async def events_of(api: KubeClient, namespace: str, name: str) -> list[dict[str, Any]]:
    data = await api._request("GET", f"/api/v1/namespaces/{namespace}/events",
                              params={"fieldSelector": f"involvedObject.name={name}"})
    return list(data.get("items") or [])


async def serve_and_remove(api: KubeClient, namespace: str, name: str) -> None:
    """An InferenceService becomes Ready with all its children, and deleting it removes everything."""
    created = await create(api, make_isvc(name, namespace))
    await wait_children(api, namespace, name, created["metadata"]["uid"])
    obj = await wait_status(api, namespace, name, ready, timeout=READY_TIMEOUT)
    assert obj["status"]["readyReplicas"] == 1
    await eventually(lambda: _has_event(api, namespace, name, "RevisionCreated"), timeout=30)
    await delete_and_wait(api, namespace, name)


async def missing_secret(api: KubeClient, namespace: str, name: str) -> None:
    """A Secret that does not exist yet: InvalidSpec and a Warning Event; once it exists, Ready."""
    obj = make_isvc(name, namespace)
    obj["spec"]["model"]["storageSecretName"] = f"{name}-store"
    await create(api, obj)
    found = await wait_status(api, namespace, name, lambda o: condition(o, "Ready").get("reason") == "InvalidSpec",
                              timeout=READY_TIMEOUT)
    assert "spec.model.storageSecretName" in condition(found, "Ready")["message"]
    event = await eventually(lambda: _has_event(api, namespace, name, "InvalidSpec"), timeout=30)
    assert event["type"] == "Warning"
    assert await children(api, namespace, name, "Deployment") == []
    secret = {"name": f"{name}-store", "namespace": namespace}
    await api.create({"apiVersion": "v1", "kind": "Secret", "metadata": secret,
                      "stringData": {"AWS_ACCESS_KEY_ID": "e2e", "AWS_SECRET_ACCESS_KEY": "e2e"}})
    await wait_status(api, namespace, name, ready, timeout=READY_TIMEOUT)
    await delete_and_wait(api, namespace, name)


async def _has_event(api: KubeClient, namespace: str, name: str, reason: str) -> dict[str, Any] | None:
    return next((e for e in await events_of(api, namespace, name) if e["reason"] == reason), None)



@pytest.mark.parametrize("mode", MODES)
async def test_the_operator_works_with_the_charts_rbac(
    tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    values, namespaces = MODES[mode]
    with fresh_cluster(tmp_path / "plane", start_control_plane) as cluster:
        cluster.helm_install(*values, namespaces=namespaces)
        deploy = cluster.get("deployment", "tritium", NAMESPACE)
        assert deploy is not None
        args, chart_env = operator_command(deploy)
        peering = next(a.split("=", 1)[1] for a in args if a.startswith("--peering="))
        account = deploy["spec"]["template"]["spec"]["serviceAccountName"]
        kubeconfig = service_account_kubeconfig(cluster, account, NAMESPACE, tmp_path / "operator.kubeconfig")
        whoami = json.loads(cluster.kubectl("auth", "whoami", "-o", "json", "--kubeconfig", str(kubeconfig)).stdout)
        assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{NAMESPACE}:{account}"

        # Where the services go: the two watched namespaces, or one of any name cluster-wide.
        first, second = namespaces or ("models", "models")
        if not namespaces:
            cluster.kubectl("create", "namespace", first)

        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        env.update(chart_env, KUBECONFIG=str(kubeconfig))
        operator = OperatorProcess.start(args, env, tmp_path / "operator.log")
        monkeypatch.setenv("KUBECONFIG", str(cluster.plane.kubeconfig))  # the test itself is the admin
        api = api_client()
        failure: AssertionError | None = None
        try:
            wait_for("the operator joined its peering object",
                     lambda: operator.check_alive() or peering_joined(cluster, peering, namespaces), timeout=60)
            await serve_and_remove(api, first, "iris")
            await missing_secret(api, second, "keyed")
            operator.check_alive()
        except AssertionError as exc:
            failure = exc
        finally:
            returncode = operator.stop()
            await api.close()
        output = operator.output()
        denied = denied_lines(output)
        # A denial first: it is usually why a step above did not happen.
        assert not denied, "the chart's RBAC denied the operator:\n" + "\n".join(denied)
        if failure is not None:
            raise AssertionError(f"{failure}\nthe operator's log ends:\n{output[-4000:]}") from failure
        assert returncode == 0, output[-4000:]
