"""Local mode: one InferenceService as processes on this machine, wired exactly like its pod.

The processes are the pod's own command lines from render/commands.py, with a local Wiring
(free loopback ports, a temporary directory instead of /etc/tritium and /models). The config
files are the revision ConfigMap's own data. What differs from a pod is only what a machine
without Kubernetes needs: the Triton binary and backends from the nvidia-pytriton wheel.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

from tritium import pod_layout
from tritium.api.resource import InferenceService
from tritium.local.processes import Child, LogMux
from tritium.local.secrets import secret_environment
from tritium.local.tritonserver import TritonServer, TritonStartError, backend_args, find_tritonserver
from tritium.local.tritonserver import triton_environment as base_environment
from tritium.render import configmap
from tritium.render.commands import Wiring, fetch_command, gateway_command, stage_command, triton_command
from tritium.render.metadata import revision_of

HOST = "127.0.0.1"
LOG = "tritium"  # prefix of local mode's own lines


# What Triton prints on a machine without an NVIDIA GPU while it probes for one: noise there.
GPU_PROBE_NOISE = (
    "CudaDriverHelper has not been initialized",
    "Failed to initialize NVML",
    "DCGM unable to start",
    "Unable to allocate pinned system memory",
)
_LOAD_FAILED = re.compile(r"failed to load '(?P<model>[^']+)' version (?P<version>\S+): (?P<message>.*)")


def has_nvidia_gpu() -> bool:
    return Path("/dev/nvidiactl").exists()


class TritonLog:
    """Reads Triton's log as local mode shows it: GPU-probing noise dropped on a machine without a
    GPU, and the first model load error kept for the one line that says why Triton stopped."""

    def __init__(self, drop_gpu_noise: bool) -> None:
        self.drop_gpu_noise = drop_gpu_noise
        self.load_error: str | None = None

    def keep(self, line: str) -> bool:
        if self.load_error is None:
            m = _LOAD_FAILED.search(line)
            if m:
                # The message is quoted with its newlines escaped; its first line is the cause.
                message = m["message"].split("\\n", 1)[0].rstrip('"').strip()
                self.load_error = f"model {m['model']!r} (version {m['version']}) failed to load: {message}"
        return not (self.drop_gpu_noise and any(noise in line for noise in GPU_PROBE_NOISE))

    def explain(self, what: str) -> str:
        return f"{what}: {self.load_error}" if self.load_error else what


class StartError(Exception):
    """The pipeline did not come up: the message says which part and why (exit 1)."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived while the pipeline was still starting."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (all sockets held until every port is picked)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers bind: connections of a previous run in TIME_WAIT do not make the port busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _socket_dir(workdir: Path) -> str:
    """Where the stages' Unix sockets go: the work directory, unless its path is too long for one
    (sun_path holds 107 bytes), then a private directory under the system's temporary directory."""
    if len(str(workdir)) + len("/tritium-post.sock") < 100:
        return str(workdir)
    return tempfile.mkdtemp(prefix="tritium-sock-")


def local_wiring(workdir: Path, gateway_port: int | None = None) -> Wiring:
    """Pod wiring with free loopback ports and paths under ``workdir``."""
    ports = free_ports(8)
    return Wiring(
        spec_file=str(workdir / "config" / pod_layout.SPEC_FILE),
        triton_config_file=str(workdir / "config" / pod_layout.TRITON_CONFIG_FILE),
        model_repository=str(workdir / "models"),
        host=HOST,
        gateway_host=HOST,
        gateway_port=gateway_port or ports[0],
        gateway_metrics_port=ports[1],
        pre_port=ports[2],
        post_port=ports[3],
        triton_http_port=ports[4],
        triton_grpc_port=ports[5],
        triton_metrics_port=ports[6],
        traffic_file=str(workdir / "traffic" / pod_layout.TRAFFIC_FILE),
        socket_dir=_socket_dir(workdir),
        tritonserver=str(find_tritonserver()),
        triton_extra=tuple(backend_args()),
    )


def tritium_argv() -> list[str]:
    """How to run `tritium` with this interpreter (the pod's commands start with plain `tritium`)."""
    script = Path(sys.executable).with_name("tritium")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "import sys; from tritium.cli import main; sys.exit(main())"]


def write_config(isvc: InferenceService, wiring: Wiring) -> str:
    """Write the revision ConfigMap's files where the Wiring says; returns the revision."""
    revision = revision_of(isvc.spec)
    data = configmap.render(isvc, revision)["data"]
    Path(wiring.spec_file).parent.mkdir(parents=True, exist_ok=True)
    Path(wiring.spec_file).write_text(data[pod_layout.SPEC_FILE])
    Path(wiring.triton_config_file).write_text(data[pod_layout.TRITON_CONFIG_FILE])
    return revision


def triton_process_environment(isvc: InferenceService, env: dict[str, str]) -> dict[str, str]:
    """Triton's environment: ``env`` plus spec.runtime.env, which the pod sets on the Triton container
    only (render/deployment.py), so here on the Triton process only; its values win, as a container's
    own env does over the image's."""
    return {**env, **{var.name: var.value for var in isvc.spec.runtime.env or ()}}


def gateway_scheme(isvc: InferenceService) -> str:
    """https when the spec asks for TLS: the local gateway serves the certificate from --secrets DIR."""
    return "https" if isvc.spec.security.tls else "http"


def _probe_context() -> ssl.SSLContext:
    """What the kubelet's HTTPS probe does: TLS without verifying the certificate (this is our own
    child process on loopback, and the certificate may name the cluster's host, not 127.0.0.1)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _http_ok(url: str) -> bool:
    try:
        context = _probe_context() if url.startswith("https://") else None
        with urllib.request.urlopen(url, timeout=1, context=context) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


class LocalRun:
    """Start, watch and stop one pipeline. ``stop()`` is safe to call at any point, repeatedly."""

    def __init__(self, isvc: InferenceService, out: IO[str], gateway_port: int | None = None,
                 ready_timeout: float = 180.0, secrets_dir: str | None = None) -> None:
        self.isvc = isvc
        self.mux = LogMux(out)
        self.gateway_port = gateway_port
        self.ready_timeout = ready_timeout
        self.workdir = Path(tempfile.mkdtemp(prefix=f"tritium-{isvc.name}-"))
        self.wiring: Wiring | None = None
        self.triton: TritonServer | None = None
        self.triton_log = TritonLog(drop_gpu_noise=not has_nvidia_gpu())
        self.children: dict[str, Child] = {}
        self.stop_requested = threading.Event()
        self.starting = True
        self._stopped = False
        env = base_environment()
        env["PYTHONUNBUFFERED"] = "1"
        env.update(secret_environment(isvc, secrets_dir))  # before any file is written: a usage error
        self.env = env
        self.triton_env = triton_process_environment(isvc, env)

    # -- helpers ---------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        self.mux.line(LOG, text)

    def _argv(self, cmd: list[str]) -> list[str]:
        return [*tritium_argv(), *cmd[1:]] if cmd and cmd[0] == "tritium" else cmd

    def _check_interrupt(self) -> None:
        if self.stop_requested.is_set():
            raise Interrupted()

    def _wait_until(self, what: str, ready: Callable[[], bool], deadline: float) -> None:
        while not ready():
            self._check_interrupt()
            self._check_alive()
            if time.monotonic() > deadline:
                raise StartError(f"{what} not ready after {self.ready_timeout:.0f}s")
            time.sleep(0.1)

    def _check_alive(self) -> None:
        for name, child in self.children.items():
            code = child.poll()
            if code is not None:
                raise StartError(f"{name} exited with code {code}")
        if self.triton and self.triton.process and self.triton.process.poll() is not None:
            raise StartError(self.triton_log.explain(f"triton exited with code {self.triton.process.returncode}"))

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> str:
        """Fetch, start everything, wait until the gateway is ready; returns the gateway URL."""
        began = time.monotonic()
        deadline = began + self.ready_timeout
        isvc = self.isvc
        if self.gateway_port and not port_is_free(self.gateway_port):
            raise StartError(f"port {self.gateway_port} on {HOST} is already in use")
        self.wiring = wiring = local_wiring(self.workdir, self.gateway_port)
        revision = write_config(isvc, wiring)
        self.say(f"InferenceService {isvc.name} revision {revision}; working directory {self.workdir}")

        fetch = Child("fetch", self._argv(fetch_command(isvc, wiring)), self.mux, self.env)
        self.children["fetch"] = fetch
        while fetch.poll() is None:
            self._check_interrupt()
            time.sleep(0.05)
        del self.children["fetch"]
        if fetch.poll() != 0:
            raise StartError(f"fetching {isvc.spec.model.storage_uri} failed (exit {fetch.poll()})")

        # Stages and gateway start while Triton loads the model: they do not need it to boot.
        stages = [s for s, spec in (("pre", isvc.spec.preprocess), ("post", isvc.spec.postprocess)) if spec]
        for stage in stages:
            self.children[stage] = Child(stage, self._argv(stage_command(stage, wiring)), self.mux, self.env)
        self.children["gateway"] = Child("gateway", self._argv(gateway_command(isvc, wiring)), self.mux, self.env)

        read_fd, write_fd = os.pipe()
        triton_reader = self.mux.follow("triton", read_fd, self.triton_log.keep)
        self.triton = TritonServer(
            argv=triton_command(isvc, wiring), host=HOST, http_port=wiring.triton_http_port,
            grpc_port=wiring.triton_grpc_port, metrics_port=wiring.triton_metrics_port, log=write_fd,
            env=self.triton_env,
        )
        failure: str | None = None
        try:
            self.triton.start(timeout=max(1.0, deadline - time.monotonic()))
        except TritonStartError as exc:
            failure = str(exc).splitlines()[0].rstrip(":")
        finally:
            os.close(write_fd)
        if failure is not None:
            triton_reader.join(2.0)  # Triton is stopped: the rest of its log, the load error with it
            raise StartError(self.triton_log.explain(failure))
        self.say(f"triton ready: model {isvc.spec.model.name} loaded")

        for stage in stages:
            port = wiring.pre_port if stage == "pre" else wiring.post_port
            self._wait_until(f"{stage} stage", lambda p=port: _http_ok(f"http://{HOST}:{p}/healthz"), deadline)
        url = f"{gateway_scheme(isvc)}://{HOST}:{wiring.gateway_port}"
        self._wait_until("gateway", lambda: _http_ok(f"{url}/v2/health/ready"), deadline)
        self.starting = False
        self.say(f"ready in {time.monotonic() - began:.1f}s; Ctrl-C stops")
        self.mux.line("", f"gateway: {url}")
        return url

    def wait(self) -> int:
        """Block until a stop is requested (0) or a process dies on its own (1)."""
        while not self.stop_requested.wait(0.2):
            try:
                self._check_alive()
            except StartError as exc:
                self.say(f"{exc}; stopping")
                return 1
        return 0

    def request_stop(self) -> None:
        """Signal-handler side: ask for a stop; interrupts a start still in progress."""
        first = not self.stop_requested.is_set()
        self.stop_requested.set()
        if first and self.starting:
            raise Interrupted()

    def stop(self) -> None:
        """Gateway first (no new requests), then the stages, Triton last; then the files."""
        if self._stopped:
            return
        self._stopped = True
        self.starting = False
        for name in ("gateway", "pre", "post", "fetch"):
            child = self.children.get(name)
            if child is not None:
                code = child.stop(timeout=5.0)
                self.say(f"{name} stopped (exit {code})")
        if self.triton is not None:
            code = self.triton.stop(timeout=15.0)
            self.say(f"triton stopped (exit {code})")
        self.mux.join()
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self.wiring is not None and Path(self.wiring.socket_dir) != self.workdir:
            shutil.rmtree(self.wiring.socket_dir, ignore_errors=True)
