"""From a rollout decision to what the renderers and status need (controller/rollouts.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tritium.controller.rollouts import canary_pod_ips, progressing_condition, routing_of
from tritium.rollout.machine import Commands, Observations, decide
from tritium.rollout.phases import Phase
from tritium.rollout.revisions import DeploymentObservation
from tritium.rollout.state import Policy, RolloutState

OLD, NEW = "aaaaaaaaaa", "bbbbbbbbbb"


def dep(rev: str, desired: int = 2, ready: int | None = None) -> DeploymentObservation:
    return DeploymentObservation(revision=rev, desired=desired, replicas=desired,
                                 ready=desired if ready is None else ready, current=True)


def test_a_ready_canary_gets_its_weight_and_both_revisions_their_services() -> None:
    state = RolloutState(stable=OLD, revision=NEW, phase=Phase.STARTING, started_at=0, phase_since=0)
    decision = decide(Policy(), state, Observations(NEW, {OLD: dep(OLD), NEW: dep(NEW, 1)}), now=10)
    routing = routing_of(decision, NEW)
    assert (routing.stable, routing.canary, routing.weight) == (OLD, NEW, 5)
    assert routing.revisions == (OLD, NEW)
    assert progressing_condition(decision, NEW) == ("True", "CanaryStarted", decision.state.message)


def test_a_starting_canary_is_named_but_gets_nothing() -> None:
    decision = decide(Policy(), RolloutState(stable=OLD), Observations(NEW, {OLD: dep(OLD)}), now=0)
    routing = routing_of(decision, NEW)
    assert (routing.stable, routing.canary, routing.weight) == (OLD, NEW, 0)


def test_a_rolled_back_revision_has_no_route_and_the_condition_says_why() -> None:
    state = RolloutState(stable=OLD, revision=NEW, phase=Phase.CANARY, weight=5, started_at=0, phase_since=0,
                         canary_since=0)
    decision = decide(Policy(), state, Observations(NEW, {OLD: dep(OLD), NEW: dep(NEW, 1)},
                                                   Commands(abort=NEW)), now=10)
    routing = routing_of(decision, NEW)
    assert (routing.stable, routing.canary, routing.weight, routing.revisions) == (OLD, None, 0, (OLD,))
    _, reason, message = progressing_condition(decision, NEW)
    assert reason == "Aborted" and NEW in message
    gone = decide(Policy(), decision.state, Observations(NEW, {OLD: dep(OLD)}), now=11)
    assert progressing_condition(gone, NEW)[0] == "False"


def test_the_first_revision_serves_alone() -> None:
    decision = decide(Policy(), RolloutState(), Observations(NEW, {NEW: dep(NEW)}), now=0)
    routing = routing_of(decision, NEW)
    assert (routing.stable, routing.canary, routing.revisions) == (NEW, None, (NEW,))
    assert progressing_condition(decision, NEW) == ("False", "Stable", f"revision {NEW} is stable")


@given(st.sampled_from(list(Phase)), st.integers(0, 50), st.booleans())
def test_routing_is_always_valid(phase: Phase, weight: int, ready: bool) -> None:
    state = RolloutState(stable=OLD, revision=NEW, phase=phase, weight=weight, started_at=0, phase_since=0,
                         canary_since=0)
    deps = {OLD: dep(OLD), NEW: dep(NEW, 1, ready=1 if ready else 0)}
    decision = decide(Policy(), state, Observations(NEW, deps), now=5)
    routing = routing_of(decision, NEW)  # Routing refuses a weight without a canary or outside 0..100
    assert routing.stable in routing.revisions
    if routing.weight:
        assert ready and routing.canary == NEW


def test_only_running_pods_with_an_address_are_measured() -> None:
    pods = [
        {"metadata": {}, "status": {"phase": "Running", "podIP": "127.1.0.3"}},
        {"metadata": {}, "status": {"phase": "Pending"}},
        {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"},
         "status": {"phase": "Running", "podIP": "127.1.0.4"}},
        {"metadata": {}, "status": {"phase": "Running", "podIP": "127.1.0.2"}},
    ]
    assert canary_pod_ips(pods) == ("127.1.0.2", "127.1.0.3")


def test_a_finished_rollouts_fields_are_removed_at_every_depth() -> None:
    """A JSON merge patch keeps what it does not name: a key gone from status.rollout must be null."""
    from tritium.controller.reconcile import merge_patch

    old = {"phase": "Ready", "canaryRevision": OLD,
           "rollout": {"phase": "Promoted", "lastAnalysisAt": "2026-01-01T00:00:00Z", "unreadySince": "x"}}
    new = {"phase": "Ready", "rollout": {"phase": "Pending", "startedAt": "2026-01-02T00:00:00Z"}}
    patch = merge_patch(old, new)
    assert patch == {"phase": "Ready", "canaryRevision": None,
                     "rollout": {"phase": "Pending", "startedAt": "2026-01-02T00:00:00Z", "lastAnalysisAt": None,
                                 "unreadySince": None}}
    # Applied as the API server applies a merge patch, it gives exactly the new status.
    def apply(target: dict, p: dict) -> dict:  # type: ignore[type-arg]
        out = dict(target)
        for k, v in p.items():
            if v is None:
                out.pop(k, None)
            elif isinstance(v, dict):
                out[k] = apply(out.get(k) or {}, v)
            else:
                out[k] = v
        return out

    assert apply(old, patch) == new
    state = RolloutState(stable=OLD, revision=NEW, phase=Phase.PENDING, started_at=0)
    assert apply(old, merge_patch(old, state.to_status() | {"phase": "Ready"}))["rollout"] == \
        {k: v for k, v in state.to_status()["rollout"].items()}
