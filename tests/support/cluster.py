"""A real Kubernetes control plane on loopback, for the e2e tests and `make cluster-up`.

envtest-style: etcd (Debian's etcd-server), kube-apiserver and kube-controller-manager (built
from the k8s.io/kubernetes Go module by scripts/build-control-plane.sh, or taken from
KUBEBUILDER_ASSETS), plus tests/support/nodesim.py, which plays the kubelets: it registers nodes,
binds pods and reports them Running/Ready with 127.x addresses. Everything listens on 127.0.0.1
on free ports; every file lives in one work directory.

    python -m tests.support.cluster up [--dir DIR]     start in the background, print KUBECONFIG
    python -m tests.support.cluster down [--dir DIR]   stop what `up` started
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.certs import make_certs

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = ROOT / ".cache" / "cluster"
# ClusterIPs are only allocated from here, nothing ever dials one. A /16: in a /24 the allocator
# spends seconds per Service looking for a free address once a few hundred Services exist.
SERVICE_CIDR = "10.0.0.0/16"


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started; the message names the part and its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binaries() -> Path:
    """The directory with kube-apiserver, kube-controller-manager and kubectl (built once if needed)."""
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-control-plane.sh")], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ControlPlaneError(f"building the control plane failed: {result.stderr.strip()[-2000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def etcd_binary() -> str:
    found = shutil.which("etcd") or next(
        (str(p) for p in [Path(os.environ.get("KUBEBUILDER_ASSETS", "/nonexistent")) / "etcd"] if p.exists()), None
    )
    if not found:
        raise ControlPlaneError("etcd not found: install Debian's etcd-server (make system-deps)")
    return found


@dataclass
class ControlPlane:
    """One running control plane; ``start`` and ``stop`` it, or use it as a context manager."""

    workdir: Path
    bin_dir: Path | None = None
    nodes: int = 2
    # The API request rate kube-controller-manager's controllers may use (burst twice that); None
    # keeps Kubernetes' defaults (20 per second, burst 30), which is what a cluster runs unless
    # its operators raise them. Benchmarks raise it to see the operator's own floor.
    controller_manager_qps: int | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def env(self) -> dict[str, str]:
        """An environment whose kubectl, helm and kopf talk to this control plane."""
        assert self.bin_dir is not None
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- start -----------------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bin_dir = self.bin_dir or binaries()
        certs = make_certs(self.workdir / "pki").directory
        self.ports = {name: free_port() for name in ("etcd", "etcd-peer", "apiserver", "controller-manager")}
        self._write_kubeconfig(certs)
        try:
            self._start_etcd()
            self._start_apiserver(certs)
            self._wait_ready(timeout)
            self._start_controller_manager(certs)
            self._start_node_simulator()
            self._wait_default_service_account(timeout)
        except BaseException:
            self.stop()
            raise
        (self.workdir / "state.json").write_text(
            json.dumps({"pids": {n: p.pid for n, p in self.processes.items()}, "ports": self.ports})
        )

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it open
        self.processes[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )
        log.close()

    def _start_etcd(self) -> None:
        # etcd's data on tmpfs when there is one: fsync there is free, so writes take microseconds.
        shm = Path("/dev/shm")
        data = Path(tempfile.mkdtemp(prefix="tritium-etcd-", dir=shm if shm.is_dir() else self.workdir))
        (self.workdir / "etcd-data").write_text(str(data))
        client, peer = f"http://127.0.0.1:{self.ports['etcd']}", f"http://127.0.0.1:{self.ports['etcd-peer']}"
        self._spawn("etcd", [
            etcd_binary(), "--data-dir", str(data), "--name", "default",
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"default={peer}", "--log-level", "warn",
        ])

    def _start_apiserver(self, pki: Path) -> None:
        assert self.bin_dir is not None
        self._spawn("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports['apiserver']}",
            f"--cert-dir={self.workdir / 'apiserver'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # 127.0.0.1 cannot be an Endpoints address, so the kubernetes Service is not reconciled.
            "--endpoint-reconciler-type=none",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            "--profiling=false",
        ])

    def _start_controller_manager(self, pki: Path) -> None:
        assert self.bin_dir is not None
        self._spawn("kube-controller-manager", [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports['controller-manager']}",
            f"--cert-dir={self.workdir / 'controller-manager'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            "--controllers=*",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--profiling=false",
            *self._controller_manager_rate(),
        ])

    def _controller_manager_rate(self) -> list[str]:
        if self.controller_manager_qps is None:
            return []
        qps = self.controller_manager_qps
        return [f"--kube-api-qps={qps}", f"--kube-api-burst={2 * qps}"]

    def _start_node_simulator(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self._spawn(
            "nodesim",
            [sys.executable, "-m", "tests.support.nodesim", "--kubeconfig", str(self.kubeconfig),
             "--nodes", str(self.nodes)],
            env=env,
        )

    def _write_kubeconfig(self, pki: Path) -> None:
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "tritium-test", "cluster": {
                "server": self.server, "certificate-authority": str(pki / "ca.crt")}}],
            "users": [{"name": "admin", "user": {
                "client-certificate": str(pki / "admin.crt"), "client-key": str(pki / "admin.key")}}],
            "contexts": [{"name": "tritium-test", "context": {"cluster": "tritium-test", "user": "admin"}}],
            "current-context": "tritium-test",
        }, indent=2))

    def ssl_context(self) -> ssl.SSLContext:
        pki = self.workdir / "pki"
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return context

    def get(self, path: str) -> tuple[int, bytes]:
        """One GET as the admin; (status, body), status 0 when nothing answers."""
        try:
            with urllib.request.urlopen(self.server + path, context=self.ssl_context(), timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError):
            return 0, b""

    def _check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise ControlPlaneError(f"{name} exited with {proc.returncode}; its log ends:\n{tail}")

    def _wait(self, what: str, check: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if check():  # type: ignore[operator]
                return
            time.sleep(0.2)
        raise ControlPlaneError(f"{what} not reached within {timeout:.0f} s (logs in {self.workdir})")

    def _wait_ready(self, timeout: float) -> None:
        self._wait("kube-apiserver /readyz", lambda: self.get("/readyz")[0] == 200, timeout)

    def _wait_default_service_account(self, timeout: float) -> None:
        # The service-account controller of kube-controller-manager creates it: the sign that it runs.
        def ready() -> bool:
            return self.get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200 and bool(
                json.loads(self.get("/api/v1/nodes")[1] or b"{}").get("items")
            )

        self._wait("the default ServiceAccount and the simulated nodes", ready, timeout)

    def wait_crd_established(self, name: str, timeout: float = 60.0) -> None:
        """Until the CRD ``name`` is Established. (`kubectl wait --for=condition=Established` fails
        at once instead of waiting when it reads the CRD before its status has any condition.)"""
        def established() -> bool:
            status, body = self.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            conditions = (json.loads(body).get("status") or {}).get("conditions") or [] if status == 200 else []
            return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)

        self._wait(f"CRD {name} Established", established, timeout)

    # --- stop ------------------------------------------------------------------------------------

    def stop(self) -> None:
        for name in ("nodesim", "kube-controller-manager", "kube-apiserver", "etcd"):
            proc = self.processes.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        _remove_etcd_data(self.workdir)


def _remove_etcd_data(workdir: Path) -> None:
    marker = workdir / "etcd-data"
    if marker.exists():
        shutil.rmtree(marker.read_text().strip(), ignore_errors=True)
        marker.unlink()


def down(workdir: Path) -> None:
    """Stop a control plane that `up` left running (by the pids it recorded)."""
    state = workdir / "state.json"
    if not state.exists():
        return
    pids = json.loads(state.read_text())["pids"]
    for name in ("nodesim", "kube-controller-manager", "kube-apiserver", "etcd"):
        pid = pids.get(name)
        if pid:
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(75):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
    state.unlink()
    _remove_etcd_data(workdir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.cluster")
    parser.add_argument("command", choices=["up", "down", "build"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"work directory (default {DEFAULT_DIR})")
    parser.add_argument("--nodes", type=int, default=2, help="simulated nodes (default 2)")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(binaries())
        elif args.command == "down":
            down(args.dir)
            print(f"control plane in {args.dir} stopped")
        else:
            down(args.dir)
            plane = ControlPlane(args.dir, nodes=args.nodes)
            started = time.monotonic()
            plane.start()
            plane.processes.clear()  # keep them running after this command exits
            print(f"control plane ready in {time.monotonic() - started:.1f} s at {plane.server}")
            print(f"export KUBECONFIG={plane.kubeconfig} PATH={plane.bin_dir}:$PATH")
    except ControlPlaneError as exc:
        print(f"cluster {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
