"""The glue of local rollouts (local/rollout.py) over the real state machine, with fake pipelines.

A fake Effects keeps the "running" revisions as views and records what the loop asked for; the
clock is a number the test moves. What is checked is the glue's own promise: what runs, what the
traffic file says, which revision the user's port reaches, and when a revision may be stopped.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tritium.cli import UsageError
from tritium.controller.analysis.builtin import BuiltinProvider
from tritium.local.rollout import TRAFFIC_GRACE_SECONDS, RevisionView, RolloutLoop, observations, traffic_doc
from tritium.local.watch import TaggedOut, Watcher, load_watched
from tritium.rollout.analysis import Measurement, Thresholds
from tritium.rollout.phases import Phase
from tritium.rollout.state import Policy, RolloutState

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "rollout" / "isvc.yaml"
POLICY = Policy(weights=(20,), interval=5.0, duration=15.0, thresholds=Thresholds(0.01, 1000.0, 20),
                failure_limit=0, progress_deadline=120.0, scale_down_delay=5.0)
GOOD = Measurement(requests=500, errors=0, p99_ms=5.0, window_seconds=5.0, source="fake")
BAD = Measurement(requests=500, errors=150, p99_ms=5.0, window_seconds=5.0, source="fake")


@dataclass
class FakeEffects:
    views: dict[str, RevisionView] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    traffic: list[dict[str, Any]] = field(default_factory=list)
    measurement: Measurement = GOOD

    def start(self, revision: str) -> None:
        self.calls.append(("start", revision))
        self.views[revision] = RevisionView(revision, ready=False)

    def ready(self, revision: str) -> None:
        self.views[revision] = RevisionView(revision, ready=True, gateway_url=f"http://127.0.0.1:1{len(revision)}")

    def stop(self, revision: str) -> None:
        self.calls.append(("stop", revision))
        del self.views[revision]

    def write_traffic(self, doc: dict[str, Any]) -> None:
        self.traffic.append(doc)

    def serve(self, revision: str) -> None:
        self.calls.append(("serve", revision))

    def measure(self, revision: str, window_seconds: float) -> Measurement:
        self.calls.append(("measure", (revision, window_seconds)))
        return self.measurement

    def say(self, line: str) -> None:
        self.lines.append(line)


class Clock:
    def __init__(self, loop: RolloutLoop, fx: FakeEffects) -> None:
        self.loop, self.fx, self.now = loop, fx, 1000.0

    def run(self, seconds: float, tick: float = 0.25) -> None:
        end = self.now + seconds
        while self.now < end:
            self.loop.step(dict(self.fx.views), self.now)
            self.now += tick


def serving_v1() -> tuple[RolloutLoop, FakeEffects, Clock]:
    fx = FakeEffects()
    loop = RolloutLoop(POLICY, "v1", fx)
    clock = Clock(loop, fx)
    clock.run(1)
    fx.ready("v1")
    clock.run(1)
    return loop, fx, clock


def test_the_first_revision_is_started_then_served_once_ready() -> None:
    fx = FakeEffects()
    loop = RolloutLoop(POLICY, "v1", fx)
    clock = Clock(loop, fx)
    clock.run(1)
    assert fx.calls == [("start", "v1")], "started once, not again while it starts"
    assert loop.phase == Phase.STARTING
    fx.ready("v1")
    clock.run(1)
    assert fx.calls[-1] == ("serve", "v1")
    assert loop.phase == Phase.PROMOTED and loop.state.stable == "v1"
    assert fx.traffic[-1] == {"stable": "v1", "canary": None, "canaryWeight": 0, "canaryUrl": None}
    assert "Promoted: revision v1 is Ready and serves" in fx.lines


def test_a_good_revision_gets_its_share_then_the_port_then_the_old_one_goes() -> None:
    loop, fx, clock = serving_v1()
    loop.want("v2", POLICY)
    clock.run(1)
    assert ("start", "v2") in fx.calls and fx.traffic[-1]["canaryWeight"] == 0, "no share before it is ready"
    fx.ready("v2")
    clock.run(0.5)
    assert fx.traffic[-1] == {"stable": "v1", "canary": "v2", "canaryWeight": 20,
                              "canaryUrl": fx.views["v2"].gateway_url}
    clock.run(POLICY.duration + 1)
    measured = [c[1] for c in fx.calls if c[0] == "measure"]
    assert len(measured) == 3 and all(rev == "v2" and w >= POLICY.interval for rev, w in measured)
    assert loop.phase == Phase.PROMOTED and loop.state.stable == "v2"
    assert ("serve", "v2") in fx.calls
    assert "v1" in fx.views, "the old revision stays scaleDownDelaySeconds"
    clock.run(POLICY.scale_down_delay + 0.5)
    assert "v1" not in fx.views and fx.calls[-1] == ("stop", "v1")
    serve_at = fx.calls.index(("serve", "v2"))
    assert fx.calls.index(("stop", "v1")) > serve_at, "the port moves before the old revision stops"
    assert any(line.startswith("Promoted: revision v2") for line in fx.lines)


def test_a_failing_revision_is_rolled_back_after_the_traffic_grace_and_not_restarted() -> None:
    loop, fx, clock = serving_v1()
    fx.measurement = BAD
    loop.want("v2", POLICY)
    clock.run(0.5)
    fx.ready("v2")
    clock.run(POLICY.interval + 0.5)
    assert loop.phase == Phase.ROLLING_BACK
    assert fx.traffic[-1]["canaryWeight"] == 0 and fx.traffic[-1]["canary"] is None
    assert "v2" in fx.views, "stopped only once every gateway has re-read the traffic file"
    clock.run(TRAFFIC_GRACE_SECONDS + 0.5)
    assert "v2" not in fx.views
    assert loop.phase == Phase.ROLLED_BACK and loop.state.rejected == "v2"
    clock.run(10)
    assert fx.calls.count(("start", "v2")) == 1, "a rejected revision is not retried while the file asks for it"
    assert [c for c in fx.calls if c[0] == "serve"] == [("serve", "v1")], "the user's port never left v1"
    assert any(line.startswith("RolledBack: revision v2") for line in fx.lines)


def test_a_settings_only_change_updates_the_policy_and_starts_nothing() -> None:
    loop, fx, clock = serving_v1()
    slower = Policy(weights=(10,), interval=30.0)
    loop.want("v1", slower)
    clock.run(1)
    assert loop.policy == slower and [c for c in fx.calls if c[0] == "start"] == [("start", "v1")]
    assert fx.lines[-1] == "rollout settings updated; revision v1 stays"


def test_a_canary_that_is_not_ready_gets_no_share() -> None:
    state = RolloutState(stable="v1", revision="v2", phase=Phase.CANARY, weight=20)
    views = {"v1": RevisionView("v1", True, "http://127.0.0.1:1"), "v2": RevisionView("v2", False)}
    assert traffic_doc(state, views)["canaryWeight"] == 0
    obs = observations(views)
    assert (obs["v1"].is_ready, obs["v2"].is_ready) == (True, False)
    assert (obs["v2"].desired, obs["v2"].ready) == (1, 0)


def test_explicit_metrics_endpoints_are_addresses_never_names() -> None:
    provider = BuiltinProvider()
    assert provider.url_for_endpoint("127.0.0.1:9100") == "http://127.0.0.1:9100/metrics"
    assert provider.url_for_endpoint("[::1]:9100") == "http://[::1]:9100/metrics"
    for bad in ("localhost:9100", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:x", "metrics.example.com:80"):
        assert provider.url_for_endpoint(bad) is None, bad


def test_load_watched_accepts_rollout_settings_and_resolves_paths() -> None:
    isvc = load_watched(str(EXAMPLE))
    assert isvc.spec.rollout.canary_percent == 20 and isvc.spec.rollout.analysis.interval_seconds == 5
    assert isvc.spec.model.storage_uri == f"file://{EXAMPLE.parent / 'model-v1'}"
    assert Policy.from_spec(isvc.spec.rollout).weights == (20,)


def test_load_watched_names_the_file_in_its_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "isvc.yaml"
    bad.write_text(EXAMPLE.read_text().replace("file://./model-v1", "ftp://x/m"))
    with pytest.raises(UsageError) as err:
        load_watched(str(bad))
    assert str(bad) in str(err.value) and "ftp://" in str(err.value) and "\n" not in str(err.value)


def test_revision_lines_carry_the_revision_and_drop_their_gateway_line() -> None:
    out = io.StringIO()
    tagged = TaggedOut(out, "abc123")
    tagged.write("[triton] loaded\n")
    tagged.write("gateway: http://127.0.0.1:5\n")
    tagged.write("[tritium] ready in 2.0s\n")
    assert out.getvalue() == "[triton abc123] loaded\n[tritium abc123] ready in 2.0s\n"


def test_an_invalid_change_is_one_line_and_the_last_good_spec_stays(tmp_path: Path) -> None:
    spec = tmp_path / "isvc.yaml"
    good = EXAMPLE.read_text().replace("file://./", f"file://{EXAMPLE.parent}/")
    spec.write_text(good)
    lines: list[str] = []
    watcher = Watcher(str(spec), None, lines.append)
    assert watcher.changed() is not None and watcher.changed() is None, "unchanged bytes: nothing new"
    spec.write_text(good.replace("canaryPercent: 20", "canaryPercent: [20]"))
    assert watcher.changed() is None
    assert len(lines) == 1 and lines[0].startswith("invalid change, ignored: ") and "\n" not in lines[0], lines
    assert "keep serving" in lines[0]


def test_load_watched_refuses_tls_the_front_cannot_serve(tmp_path: Path) -> None:
    """The front holding the port speaks plain HTTP: a TLS spec behind it is refused, not downgraded."""
    import yaml

    doc = yaml.safe_load(EXAMPLE.read_text().replace("file://./", f"file://{EXAMPLE.parent}/"))
    doc["spec"].setdefault("security", {})["tls"] = {"secretName": "gw-tls"}
    spec = tmp_path / "isvc.yaml"
    spec.write_text(yaml.safe_dump(doc))
    with pytest.raises(UsageError, match=r"spec\.security\.tls is not supported with --watch"):
        load_watched(str(spec))


def test_load_watched_refuses_the_prometheus_provider_it_cannot_use(tmp_path: Path) -> None:
    """No Prometheus scrapes the local processes: refused in one line naming the field, not replaced."""
    import yaml

    doc = yaml.safe_load(EXAMPLE.read_text().replace("file://./", f"file://{EXAMPLE.parent}/"))
    doc["spec"]["rollout"]["analysis"].update(provider="prometheus", prometheusUrl="http://127.0.0.1:9090")
    spec = tmp_path / "isvc.yaml"
    spec.write_text(yaml.safe_dump(doc))
    with pytest.raises(UsageError) as err:
        load_watched(str(spec))
    message = str(err.value)
    assert message.startswith("spec.rollout.analysis.provider prometheus is not supported with --watch")
    assert "builtin" in message and "\n" not in message
    lines: list[str] = []
    assert Watcher(str(spec), None, lines.append).changed() is None  # a change to it: one ignored line
    assert len(lines) == 1 and "spec.rollout.analysis.provider" in lines[0]


def test_a_deleted_file_is_one_line_and_picked_up_again_when_back(tmp_path: Path) -> None:
    spec = tmp_path / "isvc.yaml"
    good = EXAMPLE.read_text().replace("file://./", f"file://{EXAMPLE.parent}/")
    spec.write_text(good)
    lines: list[str] = []
    watcher = Watcher(str(spec), None, lines.append)
    assert watcher.changed() is not None
    spec.unlink()
    for _ in range(Watcher.GONE_TICKS - 1):  # an editor's unlink-and-write: no line
        assert watcher.changed() is None
    assert lines == []
    for _ in range(10):
        assert watcher.changed() is None
    assert len(lines) == 1 and "is gone" in lines[0] and "keep serving" in lines[0], lines
    spec.write_text(good)  # back as it was: nothing to roll out
    assert watcher.changed() is None and lines[1:] == [f"{spec} is back"]
    spec.unlink()
    for _ in range(Watcher.GONE_TICKS):
        watcher.changed()
    spec.write_text(good.replace("canaryPercent: 20", "canaryPercent: 30"))  # back changed: taken
    new = watcher.changed()
    assert new is not None and new.spec.rollout.canary_percent == 30
    assert [line for line in lines if "is gone" in line] == [lines[0], lines[2]]
