"""The rollout state machine: every transition, and invariants over random observation sequences."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tritium.rollout.analysis import Measurement
from tritium.rollout.machine import (
    Commands,
    Decision,
    Observations,
    analysis_window,
    canary_size,
    decide,
)
from tritium.rollout.phases import TERMINAL, WAITING_FOR_A_PERSON, Phase, allowed
from tritium.rollout.revisions import DeploymentObservation
from tritium.rollout.state import HISTORY_LIMIT, Policy, RolloutState

OLD, NEW, OTHER = "aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc"
POLICY = Policy(weights=(5,), interval=10, duration=60, failure_limit=1, progress_deadline=100,
                scale_down_delay=30)
GOOD = Measurement(requests=100, errors=0, p99_ms=50, window_seconds=10, source="test")
BAD = Measurement(requests=100, errors=20, p99_ms=50, window_seconds=10, source="test")
SLOW = Measurement(requests=100, errors=0, p99_ms=5000, window_seconds=10, source="test")
QUIET = Measurement(requests=3, errors=0, p99_ms=50, window_seconds=10, source="test")
DOWN = Measurement(requests=0, errors=0, p99_ms=None, window_seconds=10, source="test", error="refused")


def dep(revision: str, desired: int, ready: int | None = None) -> DeploymentObservation:
    ready = desired if ready is None else ready
    return DeploymentObservation(revision=revision, desired=desired, replicas=desired, ready=ready, current=True)


STABLE_STATE = RolloutState(stable=OLD, revision=OLD, phase=Phase.PROMOTED, reason="FirstRevision",
                            message=f"revision {OLD} is Ready and serves")


def step(state: RolloutState, deployments: dict[str, DeploymentObservation], now: float,
         policy: Policy = POLICY, target: str = NEW, commands: Commands = Commands(),  # noqa: B008 (frozen)
         measurement: Measurement | None = None) -> Decision:
    decision = decide(policy, state, Observations(target, deployments, commands, measurement), now)
    path = [state.phase, *decision.state.trail]
    for before, after in itertools.pairwise(path):
        assert before is None or allowed(before, after), path
    return decision


def reasons(decision: Decision) -> list[str]:
    return [e.reason for e in decision.events]


# -- the first revision ---------------------------------------------------------------------------


def test_first_revision_serves_once_ready_without_a_canary() -> None:
    d = step(RolloutState(), {}, 0, target=OLD)
    assert d.state.phase == Phase.STARTING and d.keep == {OLD} and d.render_target and d.weight == 0
    d = step(d.state, {OLD: dep(OLD, 2, 1)}, 5, target=OLD)
    assert d.state.phase == Phase.STARTING and d.requeue_after == pytest.approx(95)
    d = step(d.state, {OLD: dep(OLD, 2)}, 6, target=OLD)
    assert d.state.phase == Phase.PROMOTED and d.state.stable == OLD and d.state.reason == "FirstRevision"
    assert d.state.to_status()["canaryRevision"] is None


def test_first_revision_past_its_deadline_fails_but_keeps_trying() -> None:
    d = step(RolloutState(), {OLD: dep(OLD, 2, 0)}, 0, target=OLD)
    d = step(d.state, {OLD: dep(OLD, 2, 0)}, 100, target=OLD)
    assert d.state.phase == Phase.FAILED and d.state.reason == "ProgressDeadlineExceeded"
    assert "DeadlineExceeded" in [e.notify for e in d.events]
    assert d.render_target and d.keep == {OLD}
    d = step(d.state, {OLD: dep(OLD, 2)}, 200, target=OLD)
    assert d.state.phase == Phase.PROMOTED and d.state.stable == OLD


# -- the happy path -------------------------------------------------------------------------------


def test_canary_is_analysed_promoted_and_the_old_revision_removed_after_the_delay() -> None:
    stable = {OLD: dep(OLD, 4)}
    d = step(STABLE_STATE, stable, 0)
    assert d.state.phase == Phase.PENDING and d.keep == {OLD, NEW} and d.weight == 0
    assert d.canary_replicas == 1 and "RolloutStarted" in reasons(d)
    d = step(d.state, {**stable, NEW: dep(NEW, 1, 0)}, 1)
    assert d.state.phase == Phase.STARTING and d.weight == 0
    d = step(d.state, {**stable, NEW: dep(NEW, 1)}, 2)
    assert d.state.phase == Phase.CANARY and d.weight == 5 and "CanaryStarted" in reasons(d)
    state = d.state
    assert analysis_window(POLICY, state, NEW, 11) is None
    for t in (12, 22, 32, 42, 52):
        assert analysis_window(POLICY, state, NEW, t) == pytest.approx(10)
        d = step(state, {**stable, NEW: dep(NEW, 1)}, t, measurement=GOOD)
        assert d.state.phase == Phase.CANARY and d.weight == 5
        state = d.state
    d = step(state, {**stable, NEW: dep(NEW, 1)}, 62, measurement=GOOD)
    assert d.state.phase == Phase.PROMOTING and d.canary_replicas == 4 and d.weight == 5
    assert d.keep == {OLD, NEW}
    # scaled but not all Ready: still 5 %, never 100 % onto too few pods
    d = step(d.state, {**stable, NEW: dep(NEW, 4, 3)}, 63)
    assert d.state.phase == Phase.PROMOTING and d.weight == 5
    d = step(d.state, {**stable, NEW: dep(NEW, 4)}, 64)
    assert d.state.phase == Phase.PROMOTED and d.state.stable == NEW and d.state.previous == OLD
    assert d.keep == {OLD, NEW} and d.canary_replicas is None and d.serving == NEW
    assert d.requeue_after == pytest.approx(30)
    d = step(d.state, {**stable, NEW: dep(NEW, 4)}, 80)
    assert d.keep == {OLD, NEW}
    d = step(d.state, {**stable, NEW: dep(NEW, 4)}, 94)
    assert d.keep == {NEW} and d.state.previous is None and d.state.phase == Phase.PROMOTED
    assert len(d.state.history) == 6


def test_steps_raise_the_weight_after_each_passed_step() -> None:
    policy = dataclasses.replace(POLICY, weights=(5, 25, 50), duration=60)
    stable = {OLD: dep(OLD, 4)}
    d = step(STABLE_STATE, {**stable, NEW: dep(NEW, 1)}, 0, policy=policy)
    assert d.state.phase == Phase.CANARY and d.weight == 5
    d = step(d.state, {**stable, NEW: dep(NEW, 1)}, 10, policy=policy, measurement=GOOD)
    d = step(d.state, {**stable, NEW: dep(NEW, 1)}, 20, policy=policy, measurement=GOOD)
    assert d.state.step == 1 and d.weight == 25 and d.canary_replicas == 1 and "CanaryStep" in reasons(d)
    d = step(d.state, {**stable, NEW: dep(NEW, 1)}, 30, policy=policy, measurement=GOOD)
    d = step(d.state, {**stable, NEW: dep(NEW, 1)}, 40, policy=policy, measurement=GOOD)
    assert d.state.step == 2 and d.weight == 25 and d.canary_replicas == 2  # 50 % waits for its second pod
    d = step(d.state, {**stable, NEW: dep(NEW, 2)}, 41, policy=policy)
    assert d.weight == 50
    d = step(d.state, {**stable, NEW: dep(NEW, 2)}, 50, policy=policy, measurement=GOOD)
    d = step(d.state, {**stable, NEW: dep(NEW, 2)}, 60, policy=policy, measurement=GOOD)
    assert d.state.phase == Phase.PROMOTING


# -- rollbacks -------------------------------------------------------------------------------------


def canary_at(now: float = 0, policy: Policy = POLICY) -> Decision:
    return step(STABLE_STATE, {OLD: dep(OLD, 2), NEW: dep(NEW, 1)}, now, policy=policy)


@pytest.mark.parametrize("bad", [BAD, SLOW])
def test_more_failures_than_the_limit_roll_back_and_say_why(bad: Measurement) -> None:
    d = canary_at()
    d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 1)}, 10, measurement=bad)
    assert d.state.phase == Phase.CANARY and d.state.failures == 1 and "AnalysisFailed" in reasons(d)
    d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 1)}, 20, measurement=bad)
    assert d.state.phase == Phase.ROLLING_BACK and d.state.reason == "AnalysisFailed"
    assert d.weight == 0 and d.keep == {OLD} and not d.render_target
    assert "RolledBack" in [e.notify for e in d.events]
    d = step(d.state, {OLD: dep(OLD, 2)}, 21)
    assert d.state.phase == Phase.ROLLED_BACK and d.state.rejected == NEW
    # not retried while the spec asks for it
    d = step(d.state, {OLD: dep(OLD, 2)}, 500)
    assert d.state.phase == Phase.ROLLED_BACK and not d.render_target and d.keep == {OLD}
    # a new spec is a new rollout
    d = step(d.state, {OLD: dep(OLD, 2)}, 501, target=OTHER)
    assert d.state.phase == Phase.PENDING and d.state.revision == OTHER and d.state.failures == 0


def test_a_canary_never_ready_is_rolled_back_after_the_deadline() -> None:
    d = step(STABLE_STATE, {OLD: dep(OLD, 2), NEW: dep(NEW, 1, 0)}, 0)
    d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 1, 0)}, 99)
    assert d.state.phase == Phase.STARTING and d.keep == {OLD, NEW}
    d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 1, 0)}, 100)
    assert d.state.phase == Phase.ROLLING_BACK and d.state.reason == "ProgressDeadlineExceeded"
    assert "DeadlineExceeded" in [e.notify for e in d.events]


def test_a_canary_that_loses_readiness_gets_no_traffic_and_is_rolled_back_if_it_stays_so() -> None:
    d = canary_at()
    d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 1, 0)}, 5)
    assert d.state.phase == Phase.CANARY and d.weight == 0 and d.state.unready_since == 5
    d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 1)}, 6)
    assert d.weight == 5 and d.state.unready_since is None
    d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 1, 0)}, 7)
    d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 1, 0)}, 107)
    assert d.state.phase == Phase.ROLLING_BACK and d.state.reason == "CanaryNotReady"


def test_promotion_that_never_gets_ready_rolls_back() -> None:
    d = canary_at(policy=dataclasses.replace(POLICY, duration=0))
    assert d.state.phase == Phase.PROMOTING and d.canary_replicas == 2  # durationSeconds 0: no analysis
    d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 2, 1)}, 110)
    assert d.state.phase == Phase.ROLLING_BACK and d.state.reason == "PromotionDeadlineExceeded"


def test_reverting_the_spec_removes_the_canary() -> None:
    d = canary_at()
    d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 1)}, 5, target=OLD)
    assert d.state.phase == Phase.ROLLED_BACK and d.state.reason == "SpecReverted" and d.keep == {OLD}
    assert d.state.rejected is None and d.render_target
    d = step(d.state, {OLD: dep(OLD, 2)}, 6, target=NEW)  # asking for it again is a new rollout
    assert d.state.phase == Phase.PENDING


def test_a_newer_spec_supersedes_the_canary() -> None:
    d = canary_at()
    d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 1)}, 5, target=OTHER)
    assert d.state.revision == OTHER and d.keep == {OLD, OTHER} and "RolloutSuperseded" in reasons(d)


# -- inconclusive analysis and people --------------------------------------------------------------


@pytest.mark.parametrize("quiet", [QUIET, DOWN])
def test_no_conclusive_data_waits_for_a_person_instead_of_promoting(quiet: Measurement) -> None:
    d = canary_at()
    for t in range(10, 61, 10):
        d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 1)}, t, measurement=quiet)
    assert d.state.phase == Phase.PAUSED and d.state.reason == "Inconclusive" and d.weight == 5
    assert all(r.verdict == "Inconclusive" for r in d.state.history)
    d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 1)}, 61, commands=Commands(promote=NEW))
    assert d.state.phase == Phase.PROMOTING and d.state.reason == "PromotedByPerson"


def test_auto_promote_false_waits_for_promote() -> None:
    policy = dataclasses.replace(POLICY, auto_promote=False, duration=10)
    d = canary_at(policy=policy)
    d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 1)}, 10, policy=policy, measurement=GOOD)
    assert d.state.phase == Phase.PAUSED and d.state.reason == "AwaitingPromotion"
    d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 1)}, 20, policy=policy, commands=Commands(promote=OTHER))
    assert d.state.phase == Phase.PAUSED  # a command for another revision does nothing
    d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 1)}, 21, policy=policy, commands=Commands(promote=NEW))
    assert d.state.phase == Phase.PROMOTING


def test_pause_holds_the_weight_keeps_measuring_and_resume_goes_on() -> None:
    d = canary_at()
    d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 1)}, 1, commands=Commands(paused=True))
    assert d.state.phase == Phase.PAUSED and d.state.reason == "PausedByPerson" and d.weight == 5
    d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 1)}, 100, commands=Commands(paused=True), measurement=GOOD)
    assert d.state.phase == Phase.PAUSED  # the step's time is up, but paused holds
    d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 1)}, 101)
    assert d.state.phase == Phase.CANARY
    d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 1)}, 102)
    assert d.state.phase == Phase.PROMOTING


def test_failures_while_paused_still_roll_back() -> None:
    d = canary_at()
    d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 1)}, 1, commands=Commands(paused=True))
    for t in (11, 21):
        d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 1)}, t, commands=Commands(paused=True), measurement=BAD)
    assert d.state.phase == Phase.ROLLING_BACK


def test_abort_rolls_back_from_any_active_phase() -> None:
    for deployments in ({OLD: dep(OLD, 2), NEW: dep(NEW, 1, 0)}, {OLD: dep(OLD, 2), NEW: dep(NEW, 1)}):
        d = step(STABLE_STATE, deployments, 0)
        d = step(d.state, deployments, 1, commands=Commands(abort=NEW))
        assert d.state.phase == Phase.ROLLING_BACK and d.state.reason == "Aborted" and d.keep == {OLD}


# -- status round trip ------------------------------------------------------------------------------


def test_state_survives_a_round_trip_through_status() -> None:
    policy = dataclasses.replace(POLICY, duration=1000)
    d = canary_at(policy=policy)
    for t in range(10, 200, 10):
        d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 1)}, t, policy=policy,
                 measurement=GOOD if t % 20 else QUIET)
    assert d.state.phase == Phase.CANARY
    back = RolloutState.from_status(d.state.to_status())
    assert back == d.state
    assert len(back.history) == HISTORY_LIMIT


def test_canary_size() -> None:
    assert canary_size(2, 5) == 1 and canary_size(10, 50) == 5 and canary_size(3, 34) == 2


def test_the_canary_follows_what_the_stable_hpa_does_and_never_holds_the_stable_down() -> None:
    """The canary has no autoscaler of its own: it is sized for its share of the stable revision,
    whose HPA keeps scaling on the load. When that HPA adds pods, the canary grows with them;
    when it removes pods, the canary shrinks; the operator never sets the stable's count."""
    policy = dataclasses.replace(POLICY, weights=(25,), duration=1000)
    d = canary_at(policy=policy)
    sizes = []
    for t, stable in ((10, 2), (20, 8), (30, 20), (40, 4)):
        d = step(d.state, {OLD: dep(OLD, stable), NEW: dep(NEW, d.canary_replicas or 1)}, t, policy=policy,
                 measurement=GOOD)
        assert d.state.phase == Phase.CANARY
        assert d.stable_replicas is None  # surge (the default): the stable's count is its HPA's
        sizes.append(d.canary_replicas)
    assert sizes == [canary_size(2, 25), canary_size(8, 25), canary_size(20, 25), canary_size(4, 25)] == [1, 2, 5, 1]


# -- invariants over random worlds -----------------------------------------------------------------

measurements = st.sampled_from([None, GOOD, BAD, SLOW, QUIET, DOWN])
commands = st.sampled_from([Commands(), Commands(), Commands(), Commands(promote=NEW), Commands(abort=NEW),
                            Commands(paused=True), Commands(promote=OTHER)])


@st.composite
def worlds(draw: st.DrawFn) -> tuple[Policy, list[tuple[float, bool, Measurement | None, Commands]]]:
    policy = Policy(
        weights=tuple(sorted(draw(st.lists(st.integers(1, 50), min_size=1, max_size=3)))),
        interval=draw(st.sampled_from([5.0, 10.0, 30.0])),
        duration=draw(st.sampled_from([0.0, 20.0, 60.0, 300.0])),
        failure_limit=draw(st.integers(0, 3)),
        auto_promote=draw(st.booleans()),
        progress_deadline=draw(st.sampled_from([30.0, 100.0])),
        scale_down_delay=draw(st.sampled_from([0.0, 30.0])),
    )
    events = draw(st.lists(st.tuples(st.floats(0.5, 40), st.booleans(), measurements, commands), max_size=60))
    return policy, events


def run_world(policy: Policy, script: list[tuple[float, bool, Measurement | None, Commands]],
              stable_size: int) -> None:
    """Apply each decision to a simulated cluster (the controller's part) and check the invariants."""
    state, now = STABLE_STATE, 0.0
    deployments = {OLD: dep(OLD, stable_size)}
    for gap, pods_ready, measurement, command in script:
        now += gap
        due = analysis_window(policy, state, NEW, now) is not None
        d = step(state, deployments, now, policy=policy, commands=command, measurement=measurement if due else None)
        new = d.state
        canary = deployments.get(NEW)
        # weights sum to 100, and weight only to a Ready canary
        assert 0 <= d.weight <= 100 and (100 - d.weight) + d.weight == 100
        if d.weight > 0:
            assert canary is not None and canary.ready >= canary_size(stable_size, d.weight)
            assert new.phase in (Phase.CANARY, Phase.PAUSED, Phase.PROMOTING)
        # stable capacity: the stable revision stays, untouched, until promotion
        if new.stable == OLD:
            assert OLD in d.keep
        if Phase.PROMOTED in new.trail and new.stable == NEW:  # promoted by this decision
            assert canary is not None and canary.is_ready and canary.desired >= stable_size
            if OLD not in d.keep:
                assert now >= (new.promoted_at or 0) + policy.scale_down_delay or OLD not in deployments
        # a failed analysis beyond the limit always ends in rollback
        if new.failures > policy.failure_limit:
            assert new.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK)
        if new.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK):
            assert d.weight == 0 and NEW not in d.keep
        # the controller's part: the kept revisions exist, the canary at its replica count
        deployments = {r: o for r, o in deployments.items() if r in d.keep}
        if d.render_target and NEW in d.keep:
            size = d.canary_replicas if d.canary_replicas is not None else stable_size
            deployments[NEW] = dep(NEW, size, size if pods_ready else max(0, size - 1))
        state = new
    # every rollout ends: given time and ready pods, it is promoted, rolled back or waits for a person
    for _ in range(200):
        if state.phase in TERMINAL | WAITING_FOR_A_PERSON and not (state.phase == Phase.PROMOTED and state.previous):
            break
        now += policy.interval
        due = analysis_window(policy, state, NEW, now) is not None
        d = step(state, deployments, now, policy=policy, measurement=GOOD if due else None)
        deployments = {r: o for r, o in deployments.items() if r in d.keep}
        if d.render_target and NEW in d.keep:
            size = d.canary_replicas if d.canary_replicas is not None else stable_size
            deployments[NEW] = dep(NEW, size)
        state = d.state
    assert state.phase in TERMINAL | WAITING_FOR_A_PERSON, state
    event(f"ended {state.phase} ({state.reason})")
    assert state.message and state.reason


@settings(max_examples=300, deadline=None)
@given(worlds(), st.integers(1, 6))
def test_invariants_hold_over_random_observations(world, stable_size: int) -> None:  # type: ignore[no-untyped-def]
    policy, script = world
    run_world(policy, script, stable_size)


# -- surge false: no pods beyond what the stable revision had ---------------------------------------

NO_SURGE = dataclasses.replace(POLICY, surge=False, duration=0)


def test_without_surge_the_canary_takes_its_pods_from_stable_and_promotion_moves_one_at_a_time() -> None:
    deps = {OLD: dep(OLD, 4)}
    d = step(STABLE_STATE, deps, 0, policy=NO_SURGE)
    assert d.state.baseline == 4 and d.canary_replicas == 1 and d.stable_replicas == 3
    deps = {OLD: dep(OLD, 3), NEW: dep(NEW, 1)}
    d = step(d.state, deps, 1, policy=NO_SURGE)  # Ready -> Canary -> (no analysis) Promoting
    assert d.state.phase == Phase.PROMOTING and d.weight == 25  # the share follows the pods that moved
    assert (d.canary_replicas, d.stable_replicas) == (2, 2)
    # The next pod only once the last one is Ready; the total never exceeds the baseline.
    d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 2, 1)}, 2, policy=NO_SURGE)
    assert (d.canary_replicas, d.stable_replicas) == (2, 2) and d.state.phase == Phase.PROMOTING
    d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 2)}, 3, policy=NO_SURGE)
    assert (d.canary_replicas, d.stable_replicas) == (3, 1) and d.weight == 50
    d = step(d.state, {OLD: dep(OLD, 1), NEW: dep(NEW, 3)}, 4, policy=NO_SURGE)
    assert d.state.phase == Phase.PROMOTED and d.state.stable == NEW and d.keep == {NEW}  # old goes at once
    assert d.state.baseline is None and d.state.previous is None


def test_without_surge_a_rollback_gives_the_stable_revision_its_pods_back() -> None:
    d = step(STABLE_STATE, {OLD: dep(OLD, 3)}, 0, policy=dataclasses.replace(NO_SURGE, duration=60))
    assert d.stable_replicas == 2
    d = step(d.state, {OLD: dep(OLD, 2), NEW: dep(NEW, 1)}, 1, policy=NO_SURGE, commands=Commands(abort=NEW))
    assert d.state.phase == Phase.ROLLING_BACK and d.stable_replicas == 3
    d = step(d.state, {OLD: dep(OLD, 2)}, 2, policy=NO_SURGE)
    assert d.state.phase == Phase.ROLLED_BACK and d.stable_replicas == 3
    d = step(d.state, {OLD: dep(OLD, 3)}, 3, policy=NO_SURGE)  # rejected: held there
    assert d.stable_replicas == 3 and d.keep == {OLD}
    back = RolloutState.from_status(d.state.to_status())
    assert back.baseline == 3


@settings(max_examples=300, deadline=None)
@given(worlds(), st.integers(2, 6))
def test_without_surge_the_pods_never_exceed_the_baseline(world, stable_size: int) -> None:  # type: ignore[no-untyped-def]
    policy, script = world
    policy = dataclasses.replace(policy, surge=False)
    state, now = STABLE_STATE, 0.0
    deployments = {OLD: dep(OLD, stable_size)}
    for gap, pods_ready, measurement, command in [*script, *[(policy.interval, True, GOOD, Commands())] * 200]:
        now += gap
        due = analysis_window(policy, state, NEW, now) is not None
        d = step(state, deployments, now, policy=policy, commands=command, measurement=measurement if due else None)
        canary = deployments.get(NEW)
        if d.weight > 0:
            assert canary is not None and canary.ready > 0 and d.weight < 100
        # the controller's part: the stable scaled as asked, the canary at its count
        if d.stable_replicas is not None and OLD in d.keep:
            old = deployments[OLD]
            deployments[OLD] = dep(OLD, d.stable_replicas, min(old.ready, d.stable_replicas))
        deployments = {r: o for r, o in deployments.items() if r in d.keep}
        if d.render_target and NEW in d.keep:
            size = d.canary_replicas if d.canary_replicas is not None else stable_size
            deployments[NEW] = dep(NEW, size, size if pods_ready else max(0, size - 1))
        if d.state.stable == OLD:
            assert sum(o.desired for o in deployments.values()) <= stable_size, deployments
            assert deployments[OLD].desired >= 1, "the stable revision always keeps a pod to serve"
        state = d.state
        if state.phase in TERMINAL | WAITING_FOR_A_PERSON and gap == policy.interval and measurement is GOOD:
            break
    assert state.phase in TERMINAL | WAITING_FOR_A_PERSON, state
