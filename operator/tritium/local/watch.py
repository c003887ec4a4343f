"""`tritium up -f FILE --watch`: the I/O side of local rollouts (local/rollout.py is the logic).

Every revision the file asks for runs as a pipeline of its own (LocalRun: own working directory,
own ports, own traffic file), the user's port is held by local/front.py, and a loop a few times a
second re-reads the file, looks at the pipelines and hands the views to RolloutLoop.step().
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson

from tritium.api.resource import InferenceService
from tritium.cli import UsageError
from tritium.controller.analysis import Target
from tritium.controller.analysis.builtin import BuiltinProvider
from tritium.local.front import Front
from tritium.local.manifest import load_manifest
from tritium.local.processes import LogMux
from tritium.local.rollout import RevisionView, RolloutLoop
from tritium.local.runner import HOST, Interrupted, LocalRun, StartError, free_ports, port_is_free
from tritium.local.secrets import secret_environment
from tritium.render.metadata import revision_of
from tritium.rollout.analysis import Measurement
from tritium.rollout.state import Policy

LOG = "rollout"  # prefix of the rollout's own lines
TICK_SECONDS = 0.25
MEASURE_TIMEOUT_SECONDS = 10.0
DRAIN_SECONDS = 30.0  # longest wait for requests in flight to a revision being stopped


def load_watched(path: str, name: str | None = None) -> InferenceService:
    """The watched file, checked as `tritium up` checks it (spec.rollout included).

    spec.security.tls is refused here: the front that holds the user's port across revisions
    speaks plain HTTP, so a TLS revision behind it would be served without TLS.

    spec.rollout.analysis.provider prometheus is refused too: its queries select series by the
    labels a PodMonitor's scrape attaches (namespace, service, revision), and no Prometheus scrapes
    the local processes, so there is no Prometheus URL it could use here; the built-in provider
    (the canary gateway's own metrics) is what watch mode measures with.
    """
    isvc = load_manifest(path, name)
    if isvc.spec.security.tls:
        raise UsageError("spec.security.tls is not supported with --watch yet (the front holding the port "
                         "across revisions speaks plain HTTP); run `tritium up` without --watch for TLS")
    if isvc.spec.rollout.analysis.provider != "builtin":
        raise UsageError(f"spec.rollout.analysis.provider {isvc.spec.rollout.analysis.provider} is not supported "
                         "with --watch (no Prometheus scrapes the local processes); use provider builtin, "
                         "which reads the canary gateway's own metrics")
    return isvc


_PREFIX = re.compile(r"^\[([a-z]+)\] ")


class TaggedOut(io.TextIOBase):
    """A revision's log lines with the revision in their prefix (``[triton 951b8ef888]``), and
    without its own ``gateway:`` line: in watch mode the front's URL is the one printed."""

    def __init__(self, out: IO[str], revision: str) -> None:
        self.out = out
        self.revision = revision

    def write(self, text: str) -> int:
        for line in text.splitlines(keepends=True):
            if line.startswith("gateway: http://"):
                continue
            self.out.write(_PREFIX.sub(lambda m: f"[{m[1]} {self.revision}] ", line, count=1))
        return len(text)

    def flush(self) -> None:
        self.out.flush()


class RevisionRun:
    """One revision's pipeline and where it stands: starting, ready, failed or stopped."""

    def __init__(self, isvc: InferenceService, out: IO[str], ready_timeout: float,
                 secrets_dir: str | None = None) -> None:
        self.isvc = isvc
        self.revision = revision_of(isvc.spec)
        self.run = LocalRun(isvc, TaggedOut(out, self.revision), ready_timeout=ready_timeout,
                            secrets_dir=secrets_dir)
        self.url: str | None = None
        self.metrics: str | None = None
        self.failure: str | None = None
        self.stopped = False
        self.finished = threading.Event()  # start() returned, or will never run

    def start(self) -> None:
        """Blocks until ready or failed (in the starter thread)."""
        if self.stopped:
            self.finished.set()
            return
        try:
            self.url = self.run.start()
            assert self.run.wiring is not None
            self.metrics = f"{HOST}:{self.run.wiring.gateway_metrics_port}"
        except (StartError, Interrupted, OSError) as exc:
            self.failure = str(exc) or "interrupted"
            self.run.starting = False
            if not self.stopped:
                self.run.say(f"failed to start: {self.failure}")
        finally:
            self.finished.set()

    def alive_problem(self) -> str | None:
        if self.failure is not None:
            return self.failure
        if self.url is None:
            return None
        try:
            self.run._check_alive()
        except StartError as exc:
            self.failure = str(exc)
        return self.failure

    @property
    def ready(self) -> bool:
        return self.url is not None and not self.stopped and self.alive_problem() is None

    def view(self) -> RevisionView:
        return RevisionView(self.revision, self.ready, self.url if self.ready else None)


class Starter(threading.Thread):
    """Starts pipelines one after another. One thread for the whole run, because a child's
    parent-death signal fires when the thread that started it ends, not the process."""

    def __init__(self) -> None:
        super().__init__(name="starter", daemon=True)
        self.jobs: queue.Queue[RevisionRun | None] = queue.Queue()

    def run(self) -> None:
        while (job := self.jobs.get()) is not None:
            job.start()


class LocalEffects:
    """What RolloutLoop asks for, done with local processes, files and the front proxy."""

    def __init__(self, front: Front, out: IO[str], ready_timeout: float, secrets_dir: str | None = None) -> None:
        self.front = front
        self.secrets_dir = secrets_dir
        self.mux = LogMux(out)
        self.out = out
        self.ready_timeout = ready_timeout
        self.runs: dict[str, RevisionRun] = {}
        self.specs: dict[str, InferenceService] = {}  # what each revision the file asked for runs
        self.starter = Starter()
        self.starter.start()
        self.provider = BuiltinProvider()
        self.traffic = b""
        self.written: dict[str, bytes] = {}
        self.stoppers: list[threading.Thread] = []
        self.announced = False

    def say(self, line: str) -> None:
        self.mux.line(LOG, line)

    def views(self) -> dict[str, RevisionView]:
        return {rev: run.view() for rev, run in self.runs.items()}

    def start(self, revision: str) -> None:
        run = RevisionRun(self.specs[revision], self.out, self.ready_timeout, self.secrets_dir)
        self.runs[revision] = run
        self.say(f"revision {revision}: starting its pipeline beside the others")
        self.starter.jobs.put(run)

    def stop(self, revision: str) -> None:
        run = self.runs.pop(revision)
        self.written.pop(revision, None)
        self.say(f"revision {revision}: stopping its pipeline")
        thread = threading.Thread(target=self._stop, args=(run,), name=f"stop-{revision}", daemon=True)
        thread.start()
        self.stoppers.append(thread)

    def _stop(self, run: RevisionRun) -> None:
        run.stopped = True
        run.run.stop_requested.set()  # a start in progress gives up
        if run.url is not None:
            self.front.drain(run.url, DRAIN_SECONDS)
        run.finished.wait()
        run.run.stop()

    def write_traffic(self, doc: dict[str, Any]) -> None:
        self.traffic = orjson.dumps(doc)
        self.sync_traffic()
        weight = doc["canaryWeight"]
        if doc["stable"] is None:
            return  # nothing serves yet: no line to say so
        self.say(f"traffic: {weight} % to canary {doc['canary']}" if weight else
                 f"traffic: revision {doc['stable']} serves every request")

    def sync_traffic(self) -> None:
        """Every running revision's traffic file holds the current document (written atomically)."""
        for rev, run in self.runs.items():
            wiring = run.run.wiring
            if wiring is None or not wiring.traffic_file or self.written.get(rev) == self.traffic or not self.traffic:
                continue
            path = Path(wiring.traffic_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(self.traffic)
            os.replace(tmp, path)
            self.written[rev] = self.traffic

    def serve(self, revision: str) -> None:
        run = self.runs[revision]
        assert run.url is not None
        self.front.serve(run.url)
        self.say(f"revision {revision} serves {self.front.url}")
        if not self.announced:
            self.announced = True
            self.mux.line("", f"gateway: {self.front.url}")

    def measure(self, revision: str, window_seconds: float) -> Measurement:
        run = self.runs.get(revision)
        endpoints = (run.metrics,) if run is not None and run.metrics else ()
        target = Target(namespace="local", name=run.isvc.name if run else "", revision=revision,
                        metrics_endpoints=endpoints)
        try:
            return self.front.run(self.provider.measure(target, window_seconds), MEASURE_TIMEOUT_SECONDS)
        except TimeoutError as exc:
            return Measurement(0, 0, None, window_seconds, "builtin", error=str(exc))

    def stop_all(self) -> None:
        """Every pipeline: the newest first, the serving one last."""
        serving = self.front.upstream
        for rev in sorted(self.runs, key=lambda r: self.runs[r].url == serving):
            self.stop(rev)
        for thread in self.stoppers:
            thread.join(60.0)
        # Only now: the starter thread's end would SIGKILL what it started (parent-death signal).
        self.starter.jobs.put(None)


class Watcher:
    """Re-reads the file when it changes; a bad file is one line, and the old spec stays."""

    #: Ticks a file may be missing before it counts as deleted: an editor's save can unlink it and
    #: write it anew (at TICK_SECONDS, about a second), which is no deletion to report.
    GONE_TICKS = 4

    def __init__(self, path: str, name: str | None, say: Callable[[str], None]) -> None:
        self.path = path
        self.name = name
        self.say = say
        self.seen: bytes | None = None
        self.missing = 0  # consecutive ticks the file was missing
        self.gone = False  # its deletion was reported and it has not come back since

    def changed(self) -> InferenceService | None:
        try:
            raw = Path(self.path).read_bytes()
        except FileNotFoundError:
            self.missing += 1
            if self.missing >= self.GONE_TICKS and not self.gone:
                self.gone = True
                self.say(f"{self.path} is gone; the running revisions keep serving as they are, "
                         "and the file is picked up again when it comes back")
            return None
        except OSError:
            return None  # mid-replace by an editor: look again at the next tick
        self.missing = 0
        if self.gone:
            self.gone = False
            self.say(f"{self.path} is back")
        if raw == self.seen:
            return None
        self.seen = raw
        try:
            return load_watched(self.path, self.name)
        except UsageError as exc:
            self.say(f"invalid change, ignored: {exc}; the running revisions keep serving")
            return None


def watch(path: str, name: str | None, out: IO[str], port: int | None, ready_timeout: float,
          stop: threading.Event, secrets_dir: str | None = None) -> int:
    """Run until ``stop`` is set (0), or until the serving revision fails (1)."""
    isvc = load_watched(path, name)
    secret_environment(isvc, secrets_dir)  # a Secret the spec names and DIR lacks: a usage error, up front
    if port is not None and not port_is_free(port):
        raise StartError(f"port {port} on {HOST} is already in use")
    front = Front(HOST, port or free_ports(1)[0])
    front.start()
    effects = LocalEffects(front, out, ready_timeout, secrets_dir)
    watcher = Watcher(path, isvc.name, effects.say)
    watcher.changed()  # the file as loaded above
    target = revision_of(isvc.spec)
    effects.specs[target] = isvc
    loop = RolloutLoop(Policy.from_spec(isvc.spec.rollout), target, effects)
    effects.say(f"watching {path}: a change of revision rolls out blue-green; Ctrl-C stops")
    code = 0
    try:
        while not stop.wait(TICK_SECONDS):
            new = watcher.changed()
            if new is not None:
                revision = revision_of(new.spec)
                effects.specs.setdefault(revision, new)
                if revision != loop.target:
                    effects.specs[revision] = new
                    effects.say(f"{path} changed: revision {revision} (stable {loop.state.stable})")
                loop.want(revision, Policy.from_spec(new.spec.rollout))
            loop.step(effects.views(), time.time())
            effects.sync_traffic()
            problem = _serving_problem(loop, effects)
            if problem is not None:
                effects.say(f"{problem}; stopping")
                code = 1
                break
    finally:
        effects.stop_all()
        with contextlib.suppress(Exception):
            front.stop()
    return code


def _serving_problem(loop: RolloutLoop, effects: LocalEffects) -> str | None:
    """Why nothing can serve any more: the first revision failed to start, or the serving one died."""
    serving = loop.serving or (loop.state.stable if loop.state.stable in effects.runs else None)
    if serving is None:
        first = effects.runs.get(loop.target)
        if loop.state.stable is None and first is not None and first.failure is not None:
            return f"revision {loop.target} failed to start: {first.failure}"
        return None
    run = effects.runs.get(serving)
    problem = run.alive_problem() if run is not None else None
    return f"serving revision {serving}: {problem}" if problem else None
