"""Installing Tritium on a fresh test control plane, the way users do: kubectl, helm, the chart's identity.

Shared by tests/e2e/test_install.py and tests/e2e/test_chart_rbac.py. Each test gets a control
plane of its own (a fresh one has no CRDs yet), reached only through a kubeconfig; helm keeps
its configuration and cache in the plane's work directory, never in $HOME.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.cluster import ROOT, ControlPlane

CHART = ROOT / "charts" / "tritium"
INSTALL_YAML = ROOT / "deploy" / "install.yaml"
VALUES_DIR = ROOT / "tests" / "data" / "chart-values"
RELEASE = "tritium"
NAMESPACE = "tritium-system"
# An authorization failure in a client's output (kopf logs the API's answers verbatim), looked for
# after the log line's timestamp, whose milliseconds could read 403.
DENIED = re.compile(r"\b(403|401)\b|forbidden|unauthorized", re.IGNORECASE)
TIMESTAMP = re.compile(r"^\[[^\]]*\]")


def _tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    found = str(local) if local.is_file() else shutil.which(name)
    assert found, f"{name} not found (install the project's virtual environment)"
    return found


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120.0, interval: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` (and the last error) otherwise."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
            if result:
                return result
            last = result
        except AssertionError as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last})")
        time.sleep(interval)


@dataclass
class Cluster:
    """A fresh control plane with kubectl and helm pointed at it."""

    plane: ControlPlane

    @property
    def env(self) -> dict[str, str]:
        home = self.plane.workdir / "helm"
        return {
            **self.plane.env,
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_DATA_HOME": str(home / "data"),
            "KUBECACHEDIR": str(self.plane.workdir / "kubectl-cache"),
        }

    def _run(self, argv: list[str], input: str | None, check: bool, timeout: float) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(argv, env=self.env, input=input, capture_output=True, text=True, timeout=timeout,
                                check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return self._run(["kubectl", *args], input, check, timeout)

    def helm(self, *args: str, check: bool = True, timeout: float = 400) -> subprocess.CompletedProcess[str]:
        return self._run([_tool("helm"), *args], None, check, timeout)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object as JSON, or None when it does not exist."""
        args = ["get", kind, name, "-o", "json", "--ignore-not-found"]
        if namespace:
            args += ["-n", namespace]
        out = self.kubectl(*args).stdout.strip()
        return json.loads(out) if out else None

    def crd_established(self, name: str) -> bool:
        crd = self.get("customresourcedefinition", name)
        conditions = ((crd or {}).get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    def deployment_available(self, name: str, namespace: str) -> dict[str, Any] | None:
        """The Deployment once every replica of its current generation is ready (simulated pods)."""
        deploy = self.get("deployment", name, namespace)
        if deploy is None:
            return None
        status, spec = deploy.get("status") or {}, deploy["spec"]
        done = (status.get("observedGeneration") == deploy["metadata"]["generation"]
                and status.get("updatedReplicas", 0) == spec["replicas"]
                and status.get("readyReplicas", 0) == spec["replicas"]
                and status.get("replicas", 0) == spec["replicas"])
        return deploy if done else None

    def helm_install(self, *args: str, namespaces: tuple[str, ...] = ()) -> None:
        """`helm install --wait` of the chart into tritium-system (watched namespaces created first)."""
        for ns in namespaces:
            self.kubectl("create", "namespace", ns)
        self.helm("install", RELEASE, str(CHART), "-n", NAMESPACE, "--create-namespace", "--wait",
                  "--timeout", "5m", *args)

    def release_objects(self) -> list[tuple[str, str, str | None]]:
        """(kind, name, namespace) of every object in the release's manifest."""
        manifest = self.helm("get", "manifest", RELEASE, "-n", NAMESPACE).stdout
        out = []
        for doc in yaml.safe_load_all(manifest):
            if doc:
                meta = doc["metadata"]
                out.append((doc["kind"], meta["name"], meta.get("namespace")))
        return out


@contextmanager
def fresh_cluster(workdir: Path, start: Callable[[Path], ControlPlane]) -> Iterator[Cluster]:
    """A control plane of the test's own, stopped afterwards (``start`` is conftest's start_control_plane)."""
    plane = start(workdir)
    try:
        yield Cluster(plane)
    finally:
        plane.stop()


# --- the operator under the chart's ServiceAccount ---------------------------------------------------


def service_account_kubeconfig(cluster: Cluster, service_account: str, namespace: str, path: Path) -> Path:
    """A kubeconfig that authenticates with a token minted for the ServiceAccount (server and CA of the admin's)."""
    token = cluster.kubectl("create", "token", service_account, "-n", namespace, "--duration=2h").stdout.strip()
    assert token.count(".") == 2, "not a JWT"
    admin = json.loads(cluster.plane.kubeconfig.read_text())
    server = admin["clusters"][0]["cluster"]
    path.write_text(json.dumps({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": server["server"], "certificate-authority": server["certificate-authority"]}}],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "test", "user": service_account}}],
        "current-context": "operator",
    }, indent=2))
    return path


@dataclass
class OperatorProcess:
    """`tritium operator` as a subprocess, its stdout and stderr in one log file."""

    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, args: list[str], env: dict[str, str], log: Path) -> OperatorProcess:
        with open(log, "wb") as out:
            process = subprocess.Popen([_tool("tritium"), *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        return cls(process, log)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"the operator exited with {self.process.returncode}:\n{self.output()[-4000:]}")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, as the kubelet does; kopf stops cleanly (and leaves the peering)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def denied_lines(text: str) -> list[str]:
    """The lines of an operator log that tell of an authorization failure."""
    return [line for line in text.splitlines() if DENIED.search(TIMESTAMP.sub("", line))]


def operator_command(deployment: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The operator's arguments and literal environment as the chart's Deployment runs it.

    The liveness and metrics endpoints are turned off (port 0): they would listen on every
    interface, and the pods have their own ports; everything else is the chart's.
    """
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["tritium"]
    args = [a for a in container["args"] if not a.startswith(("--liveness-port=", "--metrics-port="))]
    args += ["--liveness-port=0", "--metrics-port=0"]
    env = {e["name"]: e["value"] for e in container.get("env") or [] if "value" in e}
    return args, env
