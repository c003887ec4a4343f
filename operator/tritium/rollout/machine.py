"""The rollout state machine: ``decide(policy, state, observations, now) -> Decision`` (pure).

The controller gathers what it sees (the revisions' Deployments, the person's commands, one
analysis measurement when one is due) and carries out the decision: which revisions' children
stay, the canary's replica count and weight, the events to post and when to look again. Every
rule that keeps users safe is here, where a property test can hold it to account:

- weight goes only to a Ready canary, and the weights of stable and canary sum to 100;
- the operator never takes capacity from the stable revision before promotion (it is not even
  rendered again: its Deployment and autoscaler stay exactly as they were);
- promotion first scales the canary to the stable revision's replica count, and moves 100 % only
  once all of those pods are Ready — never onto a single canary pod;
- more failed measurements than ``failureLimit`` always roll back;
- every rollout ends: promoted, rolled back, or waiting for a person, and status says why.

With ``surge: false`` (clusters without spare GPUs) two of these give way, by the user's choice:
the canary's pods are taken from the stable revision (its replica count is lowered by the
canary's, and given back on rollback), and promotion moves one pod at a time until the canary
has all but one, then switches all traffic to it and removes the old revision at once; the
total of both revisions' pods never exceeds what the stable revision had.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from tritium.rollout.analysis import Measurement, Verdict, judge
from tritium.rollout.phases import ANALYSED, TERMINAL, WEIGHTED, Phase
from tritium.rollout.revisions import DeploymentObservation
from tritium.rollout.state import HISTORY_LIMIT, AnalysisResult, Policy, RolloutState

# Notification types (controller/notify.py sends them to spec.monitoring.webhook).
ROLLOUT_STARTED = "RolloutStarted"
CANARY_STARTED = "CanaryStarted"
ANALYSIS_FAILED = "AnalysisFailed"
PROMOTED = "Promoted"
ROLLED_BACK = "RolledBack"
DEADLINE_EXCEEDED = "DeadlineExceeded"


@dataclass(frozen=True)
class Commands:
    """What a person asked for, from the service's annotations (see rollout/commands.py).

    ``promote`` and ``abort`` name the revision they are meant for, so a command left behind in
    Git or in an annotation never acts on a later rollout.
    """

    promote: str | None = None
    abort: str | None = None
    paused: bool = False


@dataclass(frozen=True)
class Observations:
    target: str  # the revision the spec asks for
    deployments: Mapping[str, DeploymentObservation]
    commands: Commands = Commands()
    measurement: Measurement | None = None  # taken when analysis_window() said one is due


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    warning: bool = False
    notify: str | None = None  # a notification type, when this event goes to the webhook too


@dataclass(frozen=True)
class Decision:
    state: RolloutState
    keep: frozenset[str]  # revisions whose per-revision children stay
    render_target: bool  # whether the target revision's children are wanted (rendered from the spec)
    canary_replicas: int | None  # the target's replicas while it is a canary (None: the usual rule)
    events: tuple[Event, ...] = field(default=())
    requeue_after: float | None = None  # seconds until a decision that time alone can bring
    stable_replicas: int | None = None  # surge false: the stable revision's replicas (None: leave them)

    @property
    def weight(self) -> int:
        return self.state.weight

    @property
    def serving(self) -> str | None:
        """The revision the Service sends traffic to (the stable one, else the only one)."""
        return self.state.stable or self.state.revision


def canary_size(stable_replicas: int, weight: int) -> int:
    """Pods a canary needs for its share of the stable revision's load (at least one)."""
    return max(1, math.ceil(stable_replicas * weight / 100))


def analysis_window(policy: Policy, state: RolloutState, target: str, now: float) -> float | None:
    """Seconds since the last measurement when one is due now, else None."""
    if state.phase not in ANALYSED or state.revision != target:
        return None
    since = state.last_analysis_at if state.last_analysis_at is not None else state.canary_since
    if since is None or now - since < policy.interval:
        return None
    return now - since


def decide(policy: Policy, state: RolloutState, obs: Observations, now: float) -> Decision:
    target, deps = obs.target, obs.deployments
    state = dataclasses.replace(state, trail=())
    stable = state.stable
    if stable is not None and stable != target and stable not in deps:
        stable = None  # its Deployment is gone: nothing is left to protect or to roll back to
    if stable != state.stable:
        state = dataclasses.replace(state, stable=stable)
    if stable is None:
        return _first_revision(policy, state, target, deps, now)
    if stable == target:
        return _steady(policy, state, target, deps, now)
    if state.rejected == target and state.phase == Phase.ROLLED_BACK:
        return Decision(state=dataclasses.replace(state, weight=0), keep=frozenset({stable}), render_target=False,
                        canary_replicas=None, stable_replicas=state.baseline)
    events: list[Event] = []
    if state.revision != target or state.phase in (None, Phase.ROLLED_BACK, Phase.PROMOTED, Phase.FAILED):
        events.extend(_superseded(state, target))
        baseline = None
        if not policy.surge:  # what the stable revision had before any canary took from it
            baseline = state.baseline if state.baseline and state.stable == stable else max(deps[stable].desired, 1)
        state = RolloutState(stable=stable, revision=target, started_at=now, history=state.history,
                             phase=state.phase, trail=state.trail, baseline=baseline).moved(
            Phase.PENDING, now, "NewRevision", f"revision {target} starts beside stable revision {stable}")
        events.append(Event("RolloutStarted", f"revision {target} starts beside stable revision {stable}",
                            notify=ROLLOUT_STARTED))
    return _rollout(policy, state, target, deps[stable], deps.get(target), obs, now, events)


def _superseded(state: RolloutState, target: str) -> list[Event]:
    if state.revision and state.revision not in (target, state.stable) and state.phase not in TERMINAL:
        return [Event("RolloutSuperseded", f"revision {state.revision} is abandoned: the spec now asks for "
                      f"revision {target}")]
    return []


def _first_revision(
    policy: Policy, state: RolloutState, target: str, deps: Mapping[str, DeploymentObservation], now: float
) -> Decision:
    """No stable revision yet: the first one serves as soon as it is Ready (there is nothing to compare with)."""
    events: list[Event] = []
    if state.revision != target or state.phase is None:
        state = RolloutState(revision=target, started_at=now, history=state.history, phase=state.phase,
                             trail=state.trail).moved(
            Phase.STARTING, now, "FirstRevision", f"revision {target} starts")
    obs = deps.get(target)
    requeue = None
    if obs is not None and obs.is_ready:
        state = state.moved(Phase.PROMOTED, now, "FirstRevision", f"revision {target} is Ready and serves",
                            stable=target, weight=0, promoted_at=now)
        events.append(Event("Promoted", f"revision {target} is Ready and serves"))
    elif state.phase != Phase.FAILED:
        left = _at(state.started_at, now) + policy.progress_deadline - now
        if left <= 0:
            message = (f"revision {target} is not Ready after {policy.progress_deadline:.0f} s "
                       "(progressDeadlineSeconds); there is no earlier revision to roll back to, so it keeps trying")
            state = state.moved(Phase.FAILED, now, "ProgressDeadlineExceeded", message)
            events.append(Event("ProgressDeadlineExceeded", message, warning=True, notify=DEADLINE_EXCEEDED))
        else:
            requeue = left
    return Decision(state=state, keep=frozenset({target}), render_target=True, canary_replicas=None,
                    events=tuple(events), requeue_after=requeue)


def _steady(
    policy: Policy, state: RolloutState, target: str, deps: Mapping[str, DeploymentObservation], now: float
) -> Decision:
    """The spec asks for the stable revision: no rollout in flight (or one just promoted)."""
    events: list[Event] = []
    keep = {target}
    requeue = None
    if state.revision not in (None, target) and state.phase not in TERMINAL:
        message = f"the spec asks for stable revision {target} again: revision {state.revision} is removed"
        state = state.moved(Phase.ROLLED_BACK, now, "SpecReverted", message, weight=0)
        events.append(Event("RolledBack", message, notify=ROLLED_BACK))
    if state.phase == Phase.PROMOTED and state.previous:
        due = _at(state.promoted_at, now) + policy.scale_down_delay
        if now >= due or state.previous not in deps:
            state = dataclasses.replace(state, previous=None)
        else:
            keep.add(state.previous)
            requeue = due - now
    return Decision(state=dataclasses.replace(state, weight=0), keep=frozenset(keep), render_target=True,
                    canary_replicas=None, events=tuple(events), requeue_after=requeue)


def _rollout(
    policy: Policy, state: RolloutState, target: str, stable: DeploymentObservation,
    canary: DeploymentObservation | None, obs: Observations, now: float, events: list[Event],
) -> Decision:
    ready = canary is not None and canary.is_ready
    commands = obs.commands
    stable_size = state.baseline if state.baseline else max(stable.desired, 1)

    def roll_back(reason: str, message: str, notify: str = ROLLED_BACK) -> None:
        nonlocal state
        state = state.moved(Phase.ROLLING_BACK, now, reason, message, weight=0, rejected=target)
        events.append(Event(reason, message, warning=True, notify=notify))

    if state.phase in (Phase.PENDING, Phase.STARTING, Phase.CANARY, Phase.PAUSED, Phase.PROMOTING) and (
        commands.abort == target
    ):
        roll_back("Aborted", f"revision {target} was aborted by a person; stable revision {state.stable} serves")

    if state.phase in (Phase.PENDING, Phase.STARTING):
        if canary is not None and state.phase == Phase.PENDING:
            state = state.moved(Phase.STARTING, now, "Starting", f"revision {target}: its pods start")
        if ready:
            weight = policy.weights[0]
            message = f"revision {target} is Ready and gets {weight} % of traffic"
            state = state.moved(Phase.CANARY, now, "CanaryStarted", message, weight=weight, step=0,
                                canary_since=now, passes=0)
            events.append(Event("CanaryStarted", message, notify=CANARY_STARTED))
        elif now - _at(state.started_at, now) >= policy.progress_deadline:
            roll_back("ProgressDeadlineExceeded", f"revision {target} is not Ready after "
                      f"{policy.progress_deadline:.0f} s (progressDeadlineSeconds); rolled back",
                      notify=DEADLINE_EXCEEDED)

    if state.phase in ANALYSED:
        if ready:
            state = dataclasses.replace(state, unready_since=None)
        elif state.unready_since is None:
            state = dataclasses.replace(state, unready_since=now)
        elif now - state.unready_since >= policy.progress_deadline:
            roll_back("CanaryNotReady", f"revision {target} has not been Ready for "
                      f"{policy.progress_deadline:.0f} s (progressDeadlineSeconds); rolled back",
                      notify=DEADLINE_EXCEEDED)
    if state.phase in ANALYSED and obs.measurement is not None:
        state = _record(policy, state, target, obs.measurement, now, events)
        if state.failures > policy.failure_limit:
            roll_back("AnalysisFailed", f"revision {target} failed analysis {state.failures} time(s) (failureLimit "
                      f"{policy.failure_limit}): {state.history[-1].message}; rolled back")
    if state.phase in ANALYSED:
        state = _advance(policy, state, target, commands, now, events)

    if state.phase == Phase.PROMOTING and not policy.surge:
        if canary is not None and canary.is_ready and canary.ready >= stable_size - 1:
            message = (f"revision {target} is promoted: {canary.ready} pod(s) Ready take 100 % of traffic; "
                       f"revision {state.stable} is removed now to make room (surge false)")
            state = state.moved(Phase.PROMOTED, now, "Promoted", message, stable=target, previous=None,
                                promoted_at=now, weight=0, baseline=None)
            events.append(Event("Promoted", message, notify=PROMOTED))
        elif now - _at(state.phase_since, now) >= policy.progress_deadline:
            roll_back("PromotionDeadlineExceeded", f"revision {target} moving to {stable_size - 1} pod(s) is not "
                      f"Ready after {policy.progress_deadline:.0f} s (progressDeadlineSeconds); rolled back",
                      notify=DEADLINE_EXCEEDED)
    elif state.phase == Phase.PROMOTING:
        if canary is not None and canary.is_ready and canary.desired >= stable_size:
            message = (f"revision {target} is promoted: {canary.ready} pod(s) Ready take 100 % of traffic; "
                       f"revision {state.stable} is removed in {policy.scale_down_delay:.0f} s")
            state = state.moved(Phase.PROMOTED, now, "Promoted", message, stable=target, previous=state.stable,
                                promoted_at=now, weight=0)
            events.append(Event("Promoted", message, notify=PROMOTED))
        elif now - _at(state.phase_since, now) >= policy.progress_deadline:
            roll_back("PromotionDeadlineExceeded", f"revision {target} scaled to {stable_size} pod(s) is not Ready "
                      f"after {policy.progress_deadline:.0f} s (progressDeadlineSeconds); rolled back",
                      notify=DEADLINE_EXCEEDED)

    if state.phase == Phase.ROLLING_BACK and canary is None:
        state = state.moved(Phase.ROLLED_BACK, now, state.reason, state.message)

    if state.phase == Phase.PROMOTED:
        promoted = _steady(policy, state, target, obs.deployments, now)
        if not policy.surge and canary is not None:
            # The old revision is removed by this decision; the new one grows to full size in the
            # next, so the two never hold more pods than the old one had.
            promoted = dataclasses.replace(promoted, canary_replicas=canary.desired, requeue_after=1.0)
        return dataclasses.replace(promoted, events=(*events, *promoted.events))

    weight = 0
    step_weight = policy.weights[min(state.step, len(policy.weights) - 1)]
    if state.phase in WEIGHTED and canary is not None:
        # The largest share up to this step that its Ready pods can take: a step up waits for the
        # pods it needs, holding the share before it meanwhile.
        weight = max((w for w in policy.weights[: state.step + 1] if canary.ready >= canary_size(stable_size, w)),
                     default=0)
    removing = state.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK)
    replicas = stable_size if state.phase == Phase.PROMOTING else canary_size(stable_size, step_weight)
    stable_replicas = None
    if not policy.surge:
        if state.phase == Phase.PROMOTING:
            # One pod at a time: the next one once every pod asked for so far is Ready.
            current = canary.desired if canary is not None else canary_size(stable_size, step_weight)
            step_up = canary is not None and canary.ready >= current
            replicas = min(current + 1, stable_size - 1) if step_up else current
            if canary is not None and canary.ready > 0:  # the share follows the pods that moved
                weight = max(weight, min(99, 100 * canary.ready // stable_size))
        stable_replicas = stable_size if removing else stable_size - replicas
    state = dataclasses.replace(state, weight=weight)
    return Decision(
        state=state,
        keep=frozenset({state.stable} if removing else {state.stable, target}),  # type: ignore[arg-type]
        render_target=not removing,
        canary_replicas=None if removing else replicas,
        events=tuple(events),
        requeue_after=_requeue(policy, state, now),
        stable_replicas=stable_replicas,
    )


def _record(policy: Policy, state: RolloutState, target: str, m: Measurement, now: float,
            events: list[Event]) -> RolloutState:
    """Add one measurement to the history and count it."""
    verdict = judge(m, policy.thresholds)
    result = AnalysisResult(time=now, revision=target, verdict=verdict.verdict, requests=m.requests,
                            error_ratio=m.error_ratio, p99_ms=m.p99_ms, message=verdict.message)
    history = (*state.history, result)[-HISTORY_LIMIT:]
    state = dataclasses.replace(state, history=history, last_analysis_at=now)
    if verdict.verdict == Verdict.FAILED:
        state = dataclasses.replace(state, failures=state.failures + 1)
        events.append(Event("AnalysisFailed", f"revision {target}: {verdict.message}", warning=True,
                            notify=ANALYSIS_FAILED))
    elif verdict.verdict == Verdict.PASSED:
        state = dataclasses.replace(state, passes=state.passes + 1)
        events.append(Event("AnalysisPassed", f"revision {target}: {verdict.message}"))
    else:
        events.append(Event("AnalysisInconclusive", f"revision {target}: {verdict.message}"))
    return state


def _advance(policy: Policy, state: RolloutState, target: str, commands: Commands, now: float,
             events: list[Event]) -> RolloutState:
    """Canary and Paused: a person's command, the next step, promotion, or a pause."""
    if commands.promote == target:
        message = f"revision {target} is promoted by a person: scaling it to the stable revision's size"
        events.append(Event("PromotionStarted", message))
        return state.moved(Phase.PROMOTING, now, "PromotedByPerson", message)
    if state.phase == Phase.PAUSED:
        if state.reason == "PausedByPerson" and not commands.paused:
            events.append(Event("RolloutResumed", f"revision {target}: analysis resumed"))
            return state.moved(Phase.CANARY, now, "Resumed", f"revision {target}: analysis resumed")
        return state
    if commands.paused:
        message = f"revision {target} is paused by a person at {state.weight} %; resume or promote"
        events.append(Event("RolloutPaused", message))
        return state.moved(Phase.PAUSED, now, "PausedByPerson", message)
    if now - _at(state.canary_since, now) < policy.step_duration:
        return state
    if state.passes == 0 and policy.step_duration > 0:  # durationSeconds 0: no analysis is asked for
        message = (f"revision {target}: no conclusive measurement in {policy.step_duration:.0f} s (too few "
                   "requests); waiting for a person to promote or abort")
        events.append(Event("AnalysisInconclusive", message, warning=True))
        return state.moved(Phase.PAUSED, now, "Inconclusive", message)
    if state.step + 1 < len(policy.weights):
        weight = policy.weights[state.step + 1]
        message = f"revision {target} passed step {state.step + 1}: now {weight} % of traffic"
        events.append(Event("CanaryStep", message))
        return state.moved(Phase.CANARY, now, "NextStep", message, step=state.step + 1, canary_since=now, passes=0)
    if not policy.auto_promote:
        message = f"revision {target} passed analysis; autoPromote is false: waiting for a person to promote"
        events.append(Event("AwaitingPromotion", message))
        return state.moved(Phase.PAUSED, now, "AwaitingPromotion", message)
    message = f"revision {target} passed analysis: scaling it to the stable revision's size"
    events.append(Event("PromotionStarted", message))
    return state.moved(Phase.PROMOTING, now, "AnalysisPassed", message)


def _at(value: float | None, default: float) -> float:
    return default if value is None else value


def _requeue(policy: Policy, state: RolloutState, now: float) -> float | None:
    """When time alone would change the decision (deadlines, analysis, step ends)."""
    times: list[float] = []
    if state.phase in (Phase.PENDING, Phase.STARTING):
        times.append(_at(state.started_at, now) + policy.progress_deadline)
    if state.phase in ANALYSED:
        since = state.last_analysis_at if state.last_analysis_at is not None else state.canary_since
        times.append(_at(since, now) + policy.interval)
        if state.unready_since is not None:
            times.append(state.unready_since + policy.progress_deadline)
    if state.phase == Phase.CANARY:
        times.append(_at(state.canary_since, now) + policy.step_duration)
    if state.phase == Phase.PROMOTING:
        times.append(_at(state.phase_since, now) + policy.progress_deadline)
    if not times:
        return None
    return max(min(times) - now, 0.5)
