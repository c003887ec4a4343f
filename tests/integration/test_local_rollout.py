"""`tritium up --watch` end to end: real Triton servers, gateways and a real load on the user's port.

Both endings of a rollout of examples/rollout: a good new version (Y = X + 2) is promoted, a
broken one (30 % model errors) is rolled back. A load generator keeps 8 requests in flight the
whole time and records every answer with the revision that served it (X-Tritium-Revision), so
the tests check, over real requests: the canary's share of the split, that no request on the
stable path failed (the promotion's port hand-over included), and that nothing is left running.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.support.local_up import ROOT, UpProcess, require_tritonserver, start_up

EXAMPLE = ROOT / "examples" / "rollout"
BODY = orjson.dumps({"inputs": [{"name": "X", "datatype": "FP32", "shape": [2], "data": [1, 2]}]})
CANARY_PERCENT = 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Answer:
    at: float  # monotonic time the answer was complete
    status: int
    revision: str | None
    body: bytes


@dataclass
class Load:
    """8 requests in flight to the user's port until stopped; every answer kept."""

    url: str
    answers: list[Answer] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> Load:
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()
        return self

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as session:
            async def worker() -> None:
                while not self.stop.is_set():
                    try:
                        async with session.post(f"{self.url}/v2/models/adder/infer", data=BODY,
                                                headers={"Content-Type": "application/json"}) as resp:
                            body = await resp.read()
                            self.answers.append(Answer(time.monotonic(), resp.status,
                                                       resp.headers.get("X-Tritium-Revision"), body))
                    except aiohttp.ClientError as exc:
                        self.answers.append(Answer(time.monotonic(), 0, None, repr(exc).encode()))
            await asyncio.gather(*(worker() for _ in range(8)))

    def finish(self) -> list[Answer]:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(30)
        return self.answers


def wait_line(up: UpProcess, pattern: str, timeout: float = 90.0) -> tuple[float, re.Match[str]]:
    """The first output line matching ``pattern`` and when it was seen (monotonic)."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        lines = up.lines[seen:]
        for line in lines:
            m = regex.search(line)
            if m:
                return time.monotonic(), m
        seen += len(lines)
        if up.process.poll() is not None:
            break
        time.sleep(0.02)
    tail = "\n".join(line for line in up.lines if line.startswith(("[rollout]", "[tritium")))
    raise AssertionError(f"no line matching {pattern!r}; rollout lines:\n{tail}")


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[UpProcess, Path, str]]:
    """`tritium up --watch` on a copy of the example (absolute model paths), serving version 1."""
    require_tritonserver()
    spec = tmp_path / "isvc.yaml"
    spec.write_text((EXAMPLE / "isvc.yaml").read_text().replace("file://./", f"file://{EXAMPLE}/"))
    port = _free_port()
    up = start_up(spec, "--watch", "--port", str(port))
    try:
        assert up.wait_ready() == f"http://127.0.0.1:{port}"
        yield up, spec, f"http://127.0.0.1:{port}"
    finally:
        if up.process.poll() is None:
            up.stop()


def change_model(spec: Path, version: str) -> None:
    """Edit the file as an editor saving it would: a new file renamed over the old one."""
    text = re.sub(r"model-[a-z0-9]+", f"model-{version}", spec.read_text())
    tmp = spec.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(spec)


def stop_cleanly(up: UpProcess) -> None:
    assert up.stop(signal.SIGTERM) == 0, "\n".join(up.lines[-30:])
    assert up.leftovers() == [], "processes of the run survived SIGTERM"


def test_a_good_version_is_promoted_with_an_exact_split_and_no_failed_request(
        watched: tuple[UpProcess, Path, str]) -> None:
    up, spec, url = watched
    _, first = wait_line(up, r"\[rollout\] Promoted: revision (\w+) is Ready and serves")
    stable = first[1]
    load = Load(url).start()
    time.sleep(1.0)
    change_model(spec, "v2")
    _, changed = wait_line(up, r"changed: revision (\w+) \(stable")
    canary = changed[1]
    split_from, _ = wait_line(up, rf"traffic: {CANARY_PERCENT} % to canary {canary}")
    split_until, _ = wait_line(up, rf"PromotionStarted: revision {canary}")
    wait_line(up, rf"\[rollout\] Promoted: revision {canary} is promoted")
    wait_line(up, rf"revision {stable}: stopping its pipeline")
    wait_line(up, rf"\[tritium {stable}\] triton stopped")
    time.sleep(1.0)
    answers = load.finish()

    failed = [a for a in answers if a.status != 200]
    assert not failed, f"{len(failed)} of {len(answers)} requests failed, e.g. {failed[:3]}"
    # The gateways re-read the traffic file within a second: judge the split once it applies.
    window = [a for a in answers if split_from + 2.0 <= a.at <= split_until - 0.3]
    share = 100 * sum(a.revision == canary for a in window) / max(len(window), 1)
    assert len(window) >= 2000, f"only {len(window)} requests during the canary step"
    assert abs(share - CANARY_PERCENT) <= 1.0, f"canary share {share:.2f} % over {len(window)} requests"
    assert {a.revision for a in window} == {stable, canary}
    last = answers[-200:]
    assert {a.revision for a in last} == {canary}, "after promotion the new revision serves the port"
    assert orjson.loads(last[-1].body)["outputs"][0]["data"] == [3.0, 4.0], "version 2: X + 2"
    stop_cleanly(up)


def test_a_broken_version_is_rolled_back_and_the_stable_path_fails_no_request(
        watched: tuple[UpProcess, Path, str]) -> None:
    up, spec, url = watched
    _, first = wait_line(up, r"\[rollout\] Promoted: revision (\w+) is Ready and serves")
    stable = first[1]
    load = Load(url).start()
    time.sleep(1.0)
    change_model(spec, "broken")
    _, changed = wait_line(up, r"changed: revision (\w+) \(stable")
    canary = changed[1]
    wait_line(up, rf"traffic: {CANARY_PERCENT} % to canary {canary}")
    wait_line(up, rf"AnalysisFailed: revision {canary}: error ratio")
    rolled_back, _ = wait_line(up, rf"\[rollout\] RolledBack: revision {canary}")
    time.sleep(3.0)
    answers = load.finish()

    # A failure is either the broken version's own model error, or one on the stable path.
    canary_errors = [a for a in answers if a.status == 500 and b"regression" in a.body]
    stable_failures = [a for a in answers if a.status != 200 and a not in canary_errors]
    assert not stable_failures, f"{len(stable_failures)} failed on the stable path, e.g. {stable_failures[:3]}"
    canary_served = sum(a.revision == canary for a in answers) + len(canary_errors)
    assert canary_errors and 0.15 <= len(canary_errors) / canary_served <= 0.45, (len(canary_errors), canary_served)
    after = [a for a in answers if a.at > rolled_back]
    assert after and {a.revision for a in after} == {stable}, "after the rollback only the stable revision serves"
    assert not any(line.startswith(f"[rollout] revision {canary}: starting") for line in up.lines[-50:]), \
        "a rejected revision is not started again"
    stop_cleanly(up)
