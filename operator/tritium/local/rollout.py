"""Blue-green rollouts in local mode: the operator's state machine driven over local pipelines.

`tritium up --watch` runs the very ``decide()`` the operator runs (rollout/machine.py); this
module is the glue between it and local processes, and does no I/O itself: what it observes
comes in as :class:`RevisionView` values, what it does goes out through an :class:`Effects`
object. So every rule of the rollout (weights only to a ready canary, analysis, promotion,
rollback, scale-down delay) is the operator's, and the glue's own rules are tested with fakes:

- a revision's pipeline is one pod: desired = 1, ready = 1 once all of its processes are up;
- the traffic file the stable gateway follows says what the decision's state says;
- the user's port goes to the revision the decision says serves, once it is ready;
- a revision the decision no longer keeps is stopped, but only after every gateway has had time
  to re-read the traffic file (they poll it once a second), so none forwards to it any more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from tritium.dataplane.canary.traffic import POLL_SECONDS
from tritium.rollout.analysis import Measurement
from tritium.rollout.machine import Decision, Observations, analysis_window, decide
from tritium.rollout.phases import Phase
from tritium.rollout.revisions import DeploymentObservation
from tritium.rollout.state import Policy, RolloutState

# A stopped revision must be out of every traffic file for this long first: two polls, so a
# gateway mid-poll when the file changed has surely read it.
TRAFFIC_GRACE_SECONDS = 2 * POLL_SECONDS + 0.5


@dataclass(frozen=True)
class RevisionView:
    """What the loop sees of one revision's local pipeline."""

    revision: str
    ready: bool  # every process started and still running
    gateway_url: str | None = None  # http://127.0.0.1:PORT, once its ports are chosen


class Effects(Protocol):
    """The I/O the loop asks for (local/watch.py does it for real; the unit tests record it)."""

    def start(self, revision: str) -> None:
        """Start the revision's pipeline; it appears in the views at once, not ready."""

    def stop(self, revision: str) -> None:
        """Stop the revision's pipeline; it leaves the views at once."""

    def write_traffic(self, doc: dict[str, Any]) -> None:
        """The traffic file every running gateway follows (only the stable one forwards)."""

    def serve(self, revision: str) -> None:
        """Send the user's port to this revision's gateway."""

    def measure(self, revision: str, window_seconds: float) -> Measurement:
        """The revision's gateway metrics over the window (never raises: see Measurement.error)."""

    def say(self, line: str) -> None:
        """One line for the person watching."""


def observations(views: Mapping[str, RevisionView]) -> dict[str, DeploymentObservation]:
    """Each pipeline as a one-pod Deployment: ready 1 once all its processes run, else 0."""
    return {rev: DeploymentObservation(revision=rev, desired=1, replicas=1, ready=1 if view.ready else 0,
                                       current=True)
            for rev, view in views.items()}


def traffic_doc(state: RolloutState, views: Mapping[str, RevisionView]) -> dict[str, Any]:
    """The traffic file for ``state``: the canary's weight and URL while it is in flight."""
    status = state.to_status()
    canary = status["canaryRevision"]
    weight = int(status["canaryWeight"] or 0)
    view = views.get(canary) if canary else None
    url = view.gateway_url if view is not None and view.ready else None
    if url is None or weight <= 0:
        return {"stable": state.stable, "canary": None, "canaryWeight": 0, "canaryUrl": None}
    return {"stable": state.stable, "canary": canary, "canaryWeight": weight, "canaryUrl": url}


def event_lines(before: RolloutState, decision: Decision) -> list[str]:
    """One line per event of the decision; a phase change without an event gets one of its own."""
    state = decision.state
    lines = [f"{event.reason}: {event.message}" for event in decision.events]
    if not lines and state.phase is not None and state.phase != before.phase:
        lines.append(f"{state.phase}: {state.message}")
    return lines


class RolloutLoop:
    """One rollout at a time over local pipelines; ``step()`` is called a few times a second."""

    def __init__(self, policy: Policy, target: str, effects: Effects, state: RolloutState | None = None) -> None:
        self.policy = policy
        self.target = target
        self.effects = effects
        self.state = state or RolloutState()
        self.serving: str | None = None
        self.traffic: dict[str, Any] | None = None
        self.traffic_at = float("-inf")  # when the traffic file last changed
        self.last: Decision | None = None

    def want(self, target: str, policy: Policy) -> None:
        """The file changed: a new target revision (a rollout), or only new rollout settings."""
        if target == self.target and policy == self.policy:
            return
        if target == self.target:
            self.effects.say(f"rollout settings updated; revision {target} stays")
        self.target, self.policy = target, policy

    def step(self, views: Mapping[str, RevisionView], now: float) -> Decision:
        measurement = None
        window = analysis_window(self.policy, self.state, self.target, now)
        if window is not None and self.state.revision is not None:
            measurement = self.effects.measure(self.state.revision, window)
        obs = Observations(target=self.target, deployments=observations(views), measurement=measurement)
        before = self.state
        decision = decide(self.policy, before, obs, now)
        self.state = dataclasses.replace(decision.state, trail=())
        self.last = decision
        for line in event_lines(before, decision):
            self.effects.say(line)

        doc = traffic_doc(decision.state, views)
        if doc != self.traffic:
            self.effects.write_traffic(doc)
            self.traffic, self.traffic_at = doc, now

        serving = decision.serving
        if serving is not None and serving != self.serving and serving in views and views[serving].ready:
            self.effects.serve(serving)
            self.serving = serving

        if decision.render_target and self.target not in views:
            self.effects.start(self.target)
        for revision in views:
            if revision not in decision.keep and revision != self.serving and self._unreferenced(revision, now):
                self.effects.stop(revision)
        return decision

    def _unreferenced(self, revision: str, now: float) -> bool:
        """No traffic file names it, and none has for long enough that every gateway knows."""
        named = self.traffic is not None and revision in (self.traffic.get("stable"), self.traffic.get("canary"))
        return not named and now - self.traffic_at >= TRAFFIC_GRACE_SECONDS

    @property
    def phase(self) -> Phase | None:
        return self.state.phase
