"""Child processes of local mode: own process groups, prefixed log streaming, clean stops.

Each child runs in its own process group so that a stop reaches everything it started (Triton's
python stubs, worker processes) and so that a terminal's Ctrl-C reaches only `tritium up`, which
then stops the pipeline in order (gateway first, Triton last). A parent-death signal covers the
case where `tritium up` itself is killed and cannot clean up.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO

_PR_SET_PDEATHSIG = 1
# Resolved once in the parent: the child must not load libraries between fork and exec.
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


class LogMux:
    """Writes whole lines from several sources to one stream, each with its ``[stage]`` prefix."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def line(self, prefix: str, text: str) -> None:
        with self._lock:
            try:
                self._out.write(f"[{prefix}] {text}\n" if prefix else f"{text}\n")
                self._out.flush()
            except (OSError, ValueError):
                pass  # the reader went away (closed pipe): logs are best effort, stopping is not

    def follow(self, prefix: str, fd: int, keep: Callable[[str], bool] | None = None) -> threading.Thread:
        """Stream the lines read from ``fd`` until its writers are all gone (EOF); ``keep`` sees
        every line first and drops those it answers False for."""

        def pump() -> None:
            with os.fdopen(fd, "rb", buffering=0) as stream:
                for raw in iter(stream.readline, b""):
                    text = raw.decode(errors="replace").rstrip("\r\n")
                    if keep is None or keep(text):
                        self.line(prefix, text)

        thread = threading.Thread(target=pump, name=f"log-{prefix}", daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    def join(self, timeout: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def parent_death_signal() -> None:
    """Runs in the child before exec: SIGKILL when the parent dies.

    The parent-death signal is tied to the thread that forked: children are started from the
    main thread, which lives as long as `tritium up` does.
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def stop_group(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM the process group, wait up to ``timeout``, then SIGKILL whatever is left of it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    # Also after a clean exit of the leader: grandchildren may still hold the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()


class Child:
    """One pipeline process (stage, gateway, fetch) whose output goes to the LogMux."""

    def __init__(self, name: str, argv: Sequence[str], mux: LogMux, env: Mapping[str, str]) -> None:
        self.name = name
        self.argv = list(argv)
        read_fd, write_fd = os.pipe()
        try:
            self.process: subprocess.Popen[bytes] = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=write_fd, stderr=subprocess.STDOUT,
                env=dict(env), process_group=0, preexec_fn=parent_death_signal,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        mux.follow(name, read_fd)

    def poll(self) -> int | None:
        return self.process.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.process.wait(timeout)

    def stop(self, timeout: float = 10.0) -> int:
        return stop_group(self.process, timeout)
