"""The real Triton Inference Server as a local process (local mode, tests, benchmarks).

The binary comes from the ``nvidia-pytriton`` wheel. Three things must be right or python-backend
models fail to start, so they are done here once instead of by every caller:

1. the backend directory must hold the python backend *and* the stub built for this interpreter;
2. the stub finds site-packages through ``python3`` on PATH, so this interpreter's bin goes first;
3. the stub links against libpython: LD_LIBRARY_PATH must point at this interpreter's LIBDIR.

Triton starts python-backend stubs as child processes. The server runs in its own process group
with a parent-death signal, and :meth:`TritonServer.stop` ends the whole group, so neither a
normal stop nor a crashed caller leaves processes behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

TRITON_PACKAGE = "pytriton"
_PR_SET_PDEATHSIG = 1


class TritonNotFoundError(RuntimeError):
    """The tritonserver binary (or the python backend stub) is not installed."""


class TritonStartError(RuntimeError):
    """Triton exited or did not become ready in time; the message carries the end of its log."""


def _pytriton_root() -> Path | None:
    try:
        import importlib.util

        spec = importlib.util.find_spec(TRITON_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "tritonserver"


def find_tritonserver() -> Path:
    """Path of the tritonserver binary: $TRITONSERVER, then the nvidia-pytriton wheel, then PATH."""
    env = os.environ.get("TRITONSERVER")
    if env:
        path = Path(env)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise TritonNotFoundError(f"TRITONSERVER={env} is not an executable file")
    root = _pytriton_root()
    if root is not None and (root / "bin" / "tritonserver").is_file():
        return root / "bin" / "tritonserver"
    found = shutil.which("tritonserver")
    if found:
        return Path(found)
    raise TritonNotFoundError(
        "tritonserver not found: install it with `pip install nvidia-pytriton==0.7.0` "
        "(or `pip install -e '.[local]'`), or set TRITONSERVER to the binary"
    )


def _python_tag() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def default_backend_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tritium" / "triton-backends"


def prepare_backend_directory(dest: Path | None = None) -> Path:
    """A Triton --backend-directory with the python backend and the stub for this interpreter.

    Built once per (pytriton version, python version) under the user cache and reused; building
    goes to a temporary directory renamed into place so concurrent starts never see half a copy.
    """
    root = _pytriton_root()
    if root is None:
        raise TritonNotFoundError("the nvidia-pytriton package is not installed (pip install nvidia-pytriton==0.7.0)")
    stub = root / "python_backend_stubs" / _python_tag() / "triton_python_backend_stub"
    source = root / "backends" / "python"
    if not stub.is_file() or not (source / "libtriton_python.so").is_file():
        raise TritonNotFoundError(f"no python backend stub for Python {_python_tag()} in {root}")
    if dest is None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            tag = version("nvidia-pytriton")
        except PackageNotFoundError:
            tag = "unknown"
        dest = default_backend_cache() / f"pytriton-{tag}-py{_python_tag()}"
    if (dest / "python" / "triton_python_backend_stub").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".backends-", dir=dest.parent))
    try:
        shutil.copytree(source, staging / "python", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(stub, staging / "python" / "triton_python_backend_stub")
        try:
            staging.rename(dest)
        except OSError:
            if not (dest / "python" / "triton_python_backend_stub").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def cache_directory() -> Path | None:
    """Triton's --cache-directory (the local response cache plugin) from the wheel, if present."""
    root = _pytriton_root()
    return root / "caches" if root is not None and (root / "caches").is_dir() else None


def triton_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for tritonserver: this interpreter first on PATH, its libpython on LD_LIBRARY_PATH."""
    env = dict(os.environ if base is None else base)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, *[p for p in env.get("PATH", "").split(os.pathsep) if p]])
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    # The stub's RPATH is relative to its place inside the wheel; a copied stub finds the wheel's
    # vendored libraries (libcudart...) through LD_LIBRARY_PATH instead.
    root = _pytriton_root()
    vendored = root.parent.parent / "nvidia_pytriton.libs" if root is not None else None
    first = [libdir, *([str(vendored)] if vendored is not None and vendored.is_dir() else [])]
    parts = [*first, *[p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p not in first]]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in parts if p)
    return env


def backend_args(backend_dir: Path | None = None) -> list[str]:
    """The tritonserver flags that point at the prepared backends (what local mode adds to the pod's command)."""
    args = [f"--backend-directory={backend_dir or prepare_backend_directory()}"]
    caches = cache_directory()
    if caches is not None:
        args.append(f"--cache-directory={caches}")
    return args


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Runs in the child before exec: new process group + SIGKILL when the parent dies."""
    os.setpgrp()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# The python backend makes its environment directory here, a fixed path (not $TMPDIR), and
# leaves it behind when the server stops.
PYTHON_ENV_GLOB = "/tmp/python_env_*"


def _python_env_dirs() -> set[str]:
    return set(glob.glob(PYTHON_ENV_GLOB))


class TritonServer:
    """One tritonserver process on loopback ports, started, checked for readiness and stopped.

    Give ``argv`` to run a complete command line (local mode runs the pod's own command); otherwise
    the command is built from ``model_repository`` and the ports (free ones when not given).
    """

    def __init__(
        self,
        model_repository: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        models: Iterable[str] = ("*",),
        extra_args: Sequence[str] = (),
        argv: Sequence[str] | None = None,
        binary: str | Path | None = None,
        log: IO[Any] | int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if argv is None and model_repository is None:
            raise ValueError("give model_repository or argv")
        self.host = host
        self.http_port = http_port or free_port(host)
        self.grpc_port = grpc_port or free_port(host)
        self.metrics_port = metrics_port or free_port(host)
        self.model_repository = Path(model_repository) if model_repository else None
        self._models = list(models)
        self._extra = list(extra_args)
        self._argv = list(argv) if argv is not None else None
        self._binary = binary
        self._log = log
        self._env = env
        self._own_log: IO[Any] | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._envs_before: set[str] | None = None
        self._own_envs: set[str] = set()

    # -- addresses ---------------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    # -- lifecycle ---------------------------------------------------------------------------
    def command(self) -> list[str]:
        if self._argv is not None:
            return list(self._argv)
        binary = str(self._binary or find_tritonserver())
        cmd = [
            binary,
            f"--model-repository={self.model_repository}",
            *backend_args(),
            f"--http-address={self.host}", f"--http-port={self.http_port}",
            f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
            "--model-control-mode=explicit",
            "--exit-timeout-secs=5",
            "--log-verbose=0",
        ]
        cmd += [f"--load-model={m}" for m in self._models]
        return cmd + self._extra

    def start(self, timeout: float = 60.0) -> TritonServer:
        """Start the server and return once /v2/health/ready answers 200."""
        if self.process is not None and self.process.poll() is None:
            return self
        cmd = self.command()
        log = self._log
        if log is None:
            self._own_log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
            log = self._own_log
        self._envs_before = _python_env_dirs()
        self.process = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=triton_environment(self._env),
            preexec_fn=_die_with_parent,
        )
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise TritonStartError(
                    f"tritonserver exited with code {self.process.returncode}:\n{self.log_tail()}"
                )
            if self.is_ready():
                self._note_python_envs()
                return
            time.sleep(0.1)
        raise TritonStartError(f"tritonserver not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def _note_python_envs(self) -> None:
        """The python backend directories this server made: those new since it started. Taken once
        it is ready (its backends are loaded by then), so that a server started later is not
        mistaken for this one."""
        if self._envs_before is not None:
            self._own_envs |= _python_env_dirs() - self._envs_before
            self._envs_before = None

    def _remove_python_envs(self) -> None:
        for path in sorted(self._own_envs):
            shutil.rmtree(path, ignore_errors=True)
        self._own_envs.clear()

    def log_tail(self, max_bytes: int = 4000) -> str:
        """The end of the server log, when this object owns it (for error messages)."""
        if self._own_log is None:
            return "(log not captured)"
        try:
            self._own_log.flush()
            size = self._own_log.seek(0, os.SEEK_END)
            self._own_log.seek(max(0, size - max_bytes))
            return self._own_log.read().decode(errors="replace")
        except (OSError, ValueError):
            return "(log unavailable)"

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, then SIGKILL the whole process group (stubs included). Returns the exit code."""
        proc = self.process
        if proc is None:
            return None
        code: int | None = proc.poll()
        if code is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                code = None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # stubs left behind by a slow or killed server
        if code is None:
            code = proc.wait()
        self._note_python_envs()  # a server that never got ready
        self._remove_python_envs()
        if self._own_log is not None:
            with contextlib.suppress(OSError):
                self._own_log.close()
            self._own_log = None
        return code

    def kill(self) -> None:
        """Kill the server abruptly (tests of what clients see when Triton dies)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._note_python_envs()
        self._remove_python_envs()

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
