"""Installing, upgrading and removing Tritium on a fresh control plane: plain manifests and Helm.

A fresh control plane has none of the CRDs, which is exactly when a one-step install breaks if
a file also holds objects of a kind it defines. The operator pods are simulated
(tests/support/nodesim.py): they become Ready, their image is never pulled, nothing runs in them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import start_control_plane
from tests.support.installs import (
    CHART,
    INSTALL_YAML,
    NAMESPACE,
    RELEASE,
    VALUES_DIR,
    Cluster,
    fresh_cluster,
    wait_for,
)

CRDS = ("inferenceservices.serving.tritium.dev", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev")
# How much of an object is still the same after a no-op apply: generation where the kind has one
# (spec changes), otherwise the resourceVersion (kinds without status, so nothing else writes them).
STABLE_BY_VERSION = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}


def objects_in_file(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def present(cluster: Cluster, path: Path) -> list[dict[str, Any]]:
    """The objects of a manifest file that exist in the cluster."""
    out = cluster.kubectl("get", "-f", str(path), "-o", "json", "--ignore-not-found").stdout.strip()
    if not out:
        return []
    data = json.loads(out)
    return list(data["items"]) if data.get("kind") == "List" else [data]


def fingerprint(objs: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    out = {}
    for obj in objs:
        meta = obj["metadata"]
        key = (obj["kind"], f"{meta.get('namespace', '')}/{meta['name']}")
        if obj["kind"] in STABLE_BY_VERSION:
            out[key] = f"rv={meta['resourceVersion']}"
        elif "generation" in meta:
            out[key] = f"generation={meta['generation']}"
    return out


def test_kubectl_apply_installs_in_one_command(tmp_path: Path) -> None:
    with fresh_cluster(tmp_path / "plane", start_control_plane) as cluster:
        assert not any(cluster.get("crd", name) for name in CRDS), "the control plane is not fresh"
        expected = objects_in_file(INSTALL_YAML)

        first = cluster.kubectl("apply", "--server-side", "-f", str(INSTALL_YAML), check=False)
        assert first.returncode == 0, f"{first.stdout}\n{first.stderr}"
        assert first.stdout.count("serverside-applied") == len(expected), first.stdout
        for name in CRDS:
            wait_for(f"CRD {name} established", lambda n=name: cluster.crd_established(n))
        deploy = wait_for("the operator Deployment ready", lambda: cluster.deployment_available("tritium", NAMESPACE))
        [shipped] = [o for o in expected if o["kind"] == "Deployment"]
        assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == (
            shipped["spec"]["template"]["spec"]["containers"][0]["image"])
        assert deploy["spec"]["template"]["spec"]["serviceAccountName"] == "tritium"
        installed = present(cluster, INSTALL_YAML)
        assert sorted(o["kind"] for o in installed) == sorted(o["kind"] for o in expected)

        # Applying again changes nothing: no diff beforehand, the same objects afterwards.
        diff = cluster.kubectl("diff", "--server-side", "-f", str(INSTALL_YAML), check=False)
        assert diff.returncode == 0, f"a second apply would change:\n{diff.stdout}{diff.stderr}"
        before = fingerprint(present(cluster, INSTALL_YAML))
        assert ("Deployment", f"{NAMESPACE}/tritium") in before and ("ClusterRole", "/tritium") in before
        second = cluster.kubectl("apply", "--server-side", "-f", str(INSTALL_YAML), check=False)
        assert second.returncode == 0, second.stderr
        assert fingerprint(present(cluster, INSTALL_YAML)) == before

        deleted = cluster.kubectl("delete", "-f", str(INSTALL_YAML), "--wait", "--timeout=240s", check=False,
                                  timeout=300)
        assert deleted.returncode == 0, deleted.stderr
        left = present(cluster, INSTALL_YAML)
        assert left == [], [f"{o['kind']}/{o['metadata']['name']}" for o in left]
        pods = cluster.kubectl("get", "pods", "-A", "-l", "app.kubernetes.io/part-of=tritium", "-o", "name").stdout
        assert pods.strip() == ""


MODES = {
    "cluster-wide": ((), ()),
    "namespaced": (("-f", str(VALUES_DIR / "namespaced.yaml")), ("team-a", "team-b")),
}


def release_status(cluster: Cluster) -> dict[str, Any]:
    return json.loads(cluster.helm("status", RELEASE, "-n", NAMESPACE, "-o", "json").stdout)


@pytest.mark.parametrize("mode", MODES)
def test_helm_install_upgrade_uninstall(tmp_path: Path, mode: str) -> None:
    values, namespaces = MODES[mode]
    with fresh_cluster(tmp_path / "plane", start_control_plane) as cluster:
        assert not any(cluster.get("crd", name) for name in CRDS), "the control plane is not fresh"

        # install --wait: the simulated pods become Ready, so Helm's wait can finish.
        cluster.helm_install(*values, namespaces=namespaces)
        status = release_status(cluster)
        assert (status["info"]["status"], status["version"]) == ("deployed", 1)
        assert all(cluster.crd_established(name) for name in CRDS), "Helm installs the chart's crds/ first"
        deploy = cluster.deployment_available("tritium", NAMESPACE)
        assert deploy is not None and deploy["status"]["readyReplicas"] == 2
        objects = cluster.release_objects()
        for kind, name, ns in objects:
            assert cluster.get(kind, name, ns) is not None, f"{kind} {ns}/{name} of the release is missing"
        roles = sorted((ns or "", name) for kind, name, ns in objects if kind == "Role")
        if namespaces:
            assert roles == [(ns, "tritium") for ns in namespaces]
            assert [f"--namespace={ns}" for ns in namespaces] == [
                a for a in deploy["spec"]["template"]["spec"]["containers"][0]["args"] if a.startswith("--namespace")]
        else:
            assert roles == [] and ("ClusterRoleBinding", "tritium", None) in objects

        # upgrade: a changed value reaches the Deployment, and the rollout finishes.
        cluster.helm("upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "--reuse-values", "--set", "replicaCount=1",
                     "--set", "operator.verbose=true", "--wait", "--timeout", "5m")
        status = release_status(cluster)
        assert (status["info"]["status"], status["version"]) == ("deployed", 2)
        deploy = wait_for("the upgraded Deployment ready", lambda: cluster.deployment_available("tritium", NAMESPACE))
        assert deploy["spec"]["replicas"] == 1
        assert "--verbose" in deploy["spec"]["template"]["spec"]["containers"][0]["args"]
        assert sorted(cluster.release_objects()) == sorted(objects), "the same objects, changed in place"

        # uninstall: every object of the release goes; Helm keeps CRDs by design (docs/install.md).
        cluster.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "5m")
        for kind, name, ns in objects:
            wait_for(f"{kind} {ns}/{name} deleted", lambda k=kind, n=name, s=ns: cluster.get(k, n, s) is None)
        wait_for("the operator pods gone", lambda: cluster.kubectl(
            "get", "pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "name",
        ).stdout.strip() == "")
        assert cluster.helm("list", "-n", NAMESPACE, "-a", "-q").stdout.strip() == ""
        assert all(cluster.get("crd", name) for name in CRDS)
