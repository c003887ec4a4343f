"""e2e tests: against a real Kubernetes API server, never skipped in CI.

Without KUBECONFIG the session starts its own control plane on loopback (tests/support/cluster.py:
etcd, kube-apiserver, kube-controller-manager built from k8s.io/kubernetes, simulated nodes); the
first run builds the binaries into .cache/kube (several minutes), later runs reuse them.
With KUBECONFIG set, the same tests run against that cluster instead; they install the CRD and
work in namespaces of their own (prefix ``tritium-e2e-``), which they delete afterwards.

The operator runs in the test process (tests/support/operator_runner.py), or as `tritium operator`
under the chart's own ServiceAccount where RBAC is what is tested.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cluster import ROOT, ControlPlane, ControlPlaneError
from tests.support.dataplane import missing
from tests.support.operator_runner import api_client, running_operator
from tests.support.optional_crds import optional_crds_dir
from tritium.controller.kube import KubeClient


@dataclass
class Kube:
    """How tests reach the cluster under test."""

    kubeconfig: Path
    env: dict[str, str]
    plane: ControlPlane | None  # None: the user's own cluster

    @property
    def simulated(self) -> bool:
        """Pods are simulated (tests/support/nodesim.py): Ready within a second, images never pulled."""
        return self.plane is not None

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", *args], env=self.env, input=input, capture_output=True, text=True, timeout=120, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result


def wait_established(kube: Kube, *crds: str, timeout: float = 60) -> None:
    """Poll until each CRD is Established (`kubectl wait` errors while a new CRD has no conditions yet)."""
    deadline = time.monotonic() + timeout
    for crd in crds:
        while True:
            result = kube.kubectl("get", f"crd/{crd}", "-o",
                                  'jsonpath={.status.conditions[?(@.type=="Established")].status}', check=False)
            if result.stdout.strip() == "True":
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"CRD {crd} not Established within {timeout:.0f} s: {result.stderr.strip()}")
            time.sleep(0.2)


def start_control_plane(workdir: Path) -> ControlPlane:
    plane = ControlPlane(workdir)
    try:
        plane.start()
    except (ControlPlaneError, FileNotFoundError) as exc:
        missing(f"no test control plane: {exc}")
    return plane


@contextlib.contextmanager
def control_plane_with_crd(prefix: str) -> Iterator[Kube]:
    """A fresh control plane in a temporary directory, the InferenceService CRD installed."""
    with tempfile.TemporaryDirectory(prefix=prefix) as workdir:
        plane = start_control_plane(Path(workdir))
        try:
            access = Kube(plane.kubeconfig, plane.env, plane)
            access.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
            wait_established(access, "inferenceservices.serving.tritium.dev")
            yield access
        finally:
            plane.stop()


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    if os.environ.get("KUBECONFIG"):
        yield Kube(Path(os.environ["KUBECONFIG"]), dict(os.environ), None)
        return
    with control_plane_with_crd("tritium-e2e-") as access:
        yield access


@pytest.fixture(scope="session")
def optional_crds(kube: Kube) -> list[str]:
    """Install the optional CRDs on our own control plane; on a user's cluster, use what it has."""
    names = [
        "httproutes.gateway.networking.k8s.io", "servicemonitors.monitoring.coreos.com",
        "podmonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com",
        "alertmanagerconfigs.monitoring.coreos.com", "scaledobjects.keda.sh", "certificates.cert-manager.io",
    ]
    if kube.simulated:
        kube.kubectl("apply", "--server-side", "-f", str(optional_crds_dir()))
        wait_established(kube, *names)
    else:
        present = kube.kubectl("get", "crd", "-o", "name").stdout.split()
        absent = [n for n in names if f"customresourcedefinition.apiextensions.k8s.io/{n}" not in present]
        if absent:
            pytest.skip(f"this cluster lacks {', '.join(absent)}")
    return names


@pytest.fixture(autouse=True)
def _use_cluster(kube: Kube, monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf, KubeClient, kubectl and helm in this test talk to the cluster under test."""
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    monkeypatch.setenv("PATH", kube.env["PATH"])


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of the test's own, deleted afterwards (what is in it goes with it)."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.originalname.lower())[:40].strip("-")
    name = f"tritium-e2e-{stem}-{secrets.token_hex(2)}"
    kube.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
async def api() -> AsyncIterator[KubeClient]:
    client = api_client()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def operator(namespace: str) -> AsyncIterator[None]:
    """The operator, watching the test's namespace, for the length of the test."""
    async with running_operator(namespaces=[namespace]):
        yield
