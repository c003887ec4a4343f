"""The rollout's state, kept in the InferenceService's status, and the policy read from its spec.

All of a rollout lives in status (``status.rollout`` plus the stable/canary revisions, the
canary weight and the recent analysis results), so an operator restarted mid-rollout reads it
back and goes on from the same step: nothing is repeated and nothing is lost. Times are stored
as RFC 3339 (to the second) for people reading ``kubectl get -o yaml``, and handled as epoch
seconds inside the machine.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tritium.api.spec import RolloutSpec
from tritium.rollout.analysis import Thresholds, Verdict
from tritium.rollout.phases import Phase

HISTORY_LIMIT = 10  # analysis results kept in status (the newest last)


def to_time(value: float | None) -> str | None:
    if value is None:
        return None
    return datetime.datetime.fromtimestamp(value, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class Policy:
    """What the spec asks of a rollout, in the machine's units (seconds, percent)."""

    weights: tuple[int, ...] = (5,)  # canary weight of each step
    interval: float = 30.0
    duration: float = 86400.0  # analysis time in all, shared by the steps
    thresholds: Thresholds = field(default_factory=Thresholds)
    failure_limit: int = 1  # failed measurements tolerated; one more rolls back
    auto_promote: bool = True
    progress_deadline: float = 600.0
    scale_down_delay: float = 30.0
    surge: bool = True  # False: the canary's pods are taken from the stable revision (no extra GPUs)

    @property
    def step_duration(self) -> float:
        return self.duration / len(self.weights)

    @staticmethod
    def from_spec(spec: RolloutSpec) -> Policy:
        analysis = spec.analysis
        return Policy(
            weights=tuple(spec.steps) if spec.steps else (spec.canary_percent,),
            interval=float(analysis.interval_seconds),
            duration=float(analysis.duration_seconds),
            thresholds=Thresholds(analysis.max_error_ratio, analysis.max_p99_latency_ms, analysis.min_requests),
            failure_limit=analysis.failure_limit,
            auto_promote=spec.auto_promote,
            progress_deadline=float(spec.progress_deadline_seconds),
            scale_down_delay=float(spec.scale_down_delay_seconds),
            surge=spec.surge,
        )


@dataclass(frozen=True)
class AnalysisResult:
    time: float
    revision: str
    verdict: Verdict
    requests: float
    error_ratio: float | None
    p99_ms: float | None
    message: str

    def to_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"time": to_time(self.time), "revision": self.revision, "result": str(self.verdict),
                               "requests": int(self.requests), "message": self.message}
        if self.error_ratio is not None:
            out["errorRatio"] = round(self.error_ratio, 6)
        if self.p99_ms is not None:
            out["p99LatencyMs"] = round(self.p99_ms, 3)
        return out

    @staticmethod
    def from_status(item: Mapping[str, Any]) -> AnalysisResult | None:
        when = from_time(item.get("time"))
        try:
            verdict = Verdict(item.get("result"))
        except ValueError:
            return None
        if when is None:
            return None
        return AnalysisResult(
            time=when, revision=str(item.get("revision", "")), verdict=verdict,
            requests=float(item.get("requests") or 0), error_ratio=item.get("errorRatio"),
            p99_ms=item.get("p99LatencyMs"), message=str(item.get("message", "")),
        )


@dataclass(frozen=True)
class RolloutState:
    """Where the rollout stands. ``revision`` is the revision the rollout is about."""

    stable: str | None = None
    revision: str | None = None
    phase: Phase | None = None
    weight: int = 0  # canary weight applied now (0 unless the canary is Ready)
    step: int = 0
    started_at: float | None = None
    phase_since: float | None = None
    canary_since: float | None = None  # start of the current step's analysis time
    unready_since: float | None = None  # the canary lost readiness at
    last_analysis_at: float | None = None
    failures: int = 0
    passes: int = 0  # conclusive passed measurements in the current step
    promoted_at: float | None = None
    previous: str | None = None  # the revision promoted over, kept scaleDownDelaySeconds
    rejected: str | None = None  # rolled back: not retried while the spec asks for it
    baseline: int | None = None  # surge false: the stable revision's replicas before the rollout
    reason: str = ""
    message: str = ""
    history: tuple[AnalysisResult, ...] = field(default=())
    # The phases one decision went through, in order (not stored: it lets tests check each step).
    trail: tuple[Phase, ...] = field(default=(), compare=False, repr=False)

    def moved(self, phase: Phase, now: float, reason: str, message: str, **changes: Any) -> RolloutState:
        since = now if phase != self.phase else self.phase_since
        trail = (*self.trail, phase) if phase != self.phase else self.trail
        return dataclasses.replace(self, phase=phase, phase_since=since, reason=reason, message=message,
                                   trail=trail, **changes)

    # -- status (de)serialisation -------------------------------------------------------------

    _TIMES = ("startedAt", "phaseSince", "canarySince", "unreadySince", "lastAnalysisAt", "promotedAt")
    _FIELDS = ("started_at", "phase_since", "canary_since", "unready_since", "last_analysis_at", "promoted_at")

    def to_status(self) -> dict[str, Any]:
        """The status fields the rollout owns (None removes a field with a merge patch)."""
        rollout: dict[str, Any] = {}
        if self.phase is not None:
            rollout = {"phase": str(self.phase), "revision": self.revision, "step": self.step,
                       "failures": self.failures, "passes": self.passes, "reason": self.reason,
                       "message": self.message}
            for wire, attr in zip(self._TIMES, self._FIELDS, strict=True):
                value = to_time(getattr(self, attr))
                if value is not None:
                    rollout[wire] = value
            if self.previous:
                rollout["previousRevision"] = self.previous
            if self.rejected:
                rollout["rejectedRevision"] = self.rejected
            if self.baseline is not None:
                rollout["baselineReplicas"] = self.baseline
        in_flight = self.revision is not None and self.revision != self.stable and self.phase not in (
            Phase.ROLLED_BACK, Phase.FAILED, Phase.PROMOTED, None)
        return {
            "stableRevision": self.stable,
            "canaryRevision": self.revision if in_flight else None,
            "canaryWeight": self.weight if in_flight else None,
            "analysis": [r.to_status() for r in self.history] or None,
            "rollout": rollout or None,
        }

    @staticmethod
    def from_status(status: Mapping[str, Any]) -> RolloutState:
        rollout = status.get("rollout") or {}
        try:
            phase: Phase | None = Phase(rollout["phase"]) if rollout.get("phase") else None
        except ValueError:
            phase = None
        times = {attr: from_time(rollout.get(wire))
                 for wire, attr in zip(RolloutState._TIMES, RolloutState._FIELDS, strict=True)}
        history = tuple(r for r in (AnalysisResult.from_status(i) for i in status.get("analysis") or []
                                    if isinstance(i, Mapping)) if r is not None)
        return RolloutState(
            stable=status.get("stableRevision") or None,
            revision=rollout.get("revision") or None,
            phase=phase,
            weight=int(status.get("canaryWeight") or 0),
            step=int(rollout.get("step") or 0),
            failures=int(rollout.get("failures") or 0),
            passes=int(rollout.get("passes") or 0),
            previous=rollout.get("previousRevision") or None,
            rejected=rollout.get("rejectedRevision") or None,
            baseline=int(rollout["baselineReplicas"]) if rollout.get("baselineReplicas") else None,
            reason=str(rollout.get("reason") or ""),
            message=str(rollout.get("message") or ""),
            history=history[-HISTORY_LIMIT:],
            **times,
        )
