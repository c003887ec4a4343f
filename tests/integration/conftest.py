"""Real parts for integration tests: one Triton server per session, a Redis when asked for.

Both run on free loopback ports and are stopped at the end of the session. A missing binary
skips the tests on a developer machine but FAILS them when the CI variable is set: CI must
never pass by skipping the tests that matter.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

from tests.support.dataplane import missing, start_triton
from tritium.local.tritonserver import TritonServer, free_port


@pytest.fixture(scope="session")
def triton() -> Iterator[TritonServer]:
    """The session's shared Triton. Do not kill it: use `start_triton()` for a private one."""
    server = start_triton()
    try:
        yield server
    finally:
        server.stop()


def _wait_port(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server on a free port (no persistence), as a redis:// URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server not installed (apt-get install redis-server, or `make system-deps` as root)")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="tritium-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir, "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port("127.0.0.1", port, proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
