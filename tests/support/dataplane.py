"""Helpers of the data-plane integration tests: the test model repository and real processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tritium.local.tritonserver import TritonNotFoundError, TritonServer, find_tritonserver, free_port

MODELS = Path(__file__).resolve().parents[1] / "data" / "models"


def missing(what: str) -> None:
    """Skip locally, fail in CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI is set, so this is a failure rather than a skip)", pytrace=False)
    pytest.skip(what)


def start_triton(**kwargs: object) -> TritonServer:
    """A started Triton on the test model repository (add, identity, stream, slow); the caller stops it."""
    try:
        find_tritonserver()
    except TritonNotFoundError as exc:
        missing(str(exc))
    server = TritonServer(MODELS, **kwargs)  # type: ignore[arg-type]
    return server.start(timeout=90)


# -- data-plane processes ---------------------------------------------------------------------

def base_spec(model: str = "add", **sections: Any) -> dict[str, Any]:
    """A minimal InferenceService spec for the test models (the file:// URI is never fetched here)."""
    spec: dict[str, Any] = {"model": {"name": model, "storageUri": f"file://{MODELS / model}", "format": "python"}}
    spec.update(sections)
    return spec


def write_config(directory: Path, spec: dict[str, Any], name: str = "test", revision: str = "r1") -> Path:
    """The data-plane config file, shaped like render.configmap.data_plane_config."""
    path = directory / f"{name}-{revision}.json"
    path.write_text(json.dumps({"name": name, "namespace": "default", "revision": revision, "spec": spec}))
    return path


class Proc:
    """A `tritium ...` subprocess that is ready once its health URL answers 200."""

    def __init__(self, args: list[str], health_url: str, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.health_url = health_url
        self.env = {**os.environ, **(env or {})}
        self.popen: subprocess.Popen[bytes] | None = None
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process

    def launch(self) -> Proc:
        self.popen = subprocess.Popen([sys.executable, "-m", "tritium.cli", *self.args], stdout=self.log,
                                      stderr=subprocess.STDOUT, env=self.env)
        return self

    def wait_ready(self, timeout: float = 60.0) -> Proc:
        """Ready in about a second on an idle machine; the generous bound is for a loaded one."""
        assert self.popen is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.args[0]} exited with {self.popen.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.health_url, timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.args[0]} not ready at {self.health_url}:\n{self.output()}")

    def start(self, timeout: float = 60.0) -> Proc:
        return self.launch().wait_ready(timeout)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Deployment:
    """A gateway (and its stages) in front of a Triton, like one pod."""

    url: str
    metrics_url: str
    gateway: Proc
    stages: dict[str, Proc] = field(default_factory=dict)
    config: Path | None = None
    sockets: Path | None = None

    def stop(self) -> None:
        self.gateway.stop()
        for proc in self.stages.values():
            proc.stop()
        if self.sockets is not None:
            shutil.rmtree(self.sockets, ignore_errors=True)


def deploy(directory: Path, triton: TritonServer, spec: dict[str, Any], env: dict[str, str] | None = None,
           name: str = "test") -> Deployment:
    """Start the stages the spec asks for and a gateway, on free ports; the caller stops it.

    Wired as in a pod (render/commands.py): each stage listens on a TCP port (health) and on a Unix
    socket, which is where the gateway calls it.
    """
    config = write_config(directory, spec, name=name)
    stages: dict[str, Proc] = {}
    gateway_args: list[str] = []
    sockets = Path(tempfile.mkdtemp(prefix="tritium-sock-"))  # short: sun_path holds 107 bytes
    for stage in ("pre", "post"):
        if spec.get(f"{stage}process"):
            port = free_port()
            sock = sockets / f"tritium-{stage}.sock"
            stages[stage] = Proc(["stage", stage, "--spec", str(config), "--host", "127.0.0.1", "--port", str(port),
                                  "--socket", str(sock)], f"http://127.0.0.1:{port}/healthz", env)
            gateway_args += [f"--{stage}", f"unix:{sock}"]
    port, metrics_port = free_port(), free_port()
    gateway = Proc(["gateway", "--spec", str(config), "--host", "127.0.0.1", "--port", str(port),
                    "--metrics-port", str(metrics_port), "--triton-grpc", triton.grpc_address,
                    "--triton-http", triton.http_url, *gateway_args],
                   f"http://127.0.0.1:{port}/v2/health/live", env)
    dep = Deployment(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics", gateway, stages, config,
                     sockets)
    procs = [*stages.values(), gateway]
    try:
        for proc in procs:  # all at once: start-up is mostly imports, which run in parallel
            proc.launch()
        for proc in procs:
            proc.wait_ready()
    except BaseException:
        dep.stop()
        raise
    return dep


@contextmanager
def deployed(directory: Path, triton: TritonServer, specs: dict[str, dict[str, Any]],
             prefix: str) -> Iterator[dict[str, Deployment]]:
    """deploy() each spec (named PREFIX-KEY) and stop every one started, however the block ends."""
    deps: dict[str, Deployment] = {}
    try:
        for key, spec in specs.items():
            deps[key] = deploy(directory, triton, spec, name=f"{prefix}-{key}")
        yield deps
    finally:
        for dep in deps.values():
            dep.stop()
