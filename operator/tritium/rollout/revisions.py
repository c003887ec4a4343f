"""What the operator sees of each revision, and the status that says which serves (pure).

rollout/machine.py decides which revisions stay and who gets traffic; this module holds what it
decides from (DeploymentObservation), the replica rule for autoscaled revisions
(target_replicas), and the serving part of status (phase, Ready, replica counts) from the
revisions kept (RevisionPlan). ``plan_revisions`` is the plan without a canary: a new revision
replaces the stable one once Ready (what decide() does with ``analysis.durationSeconds: 0`` and
no scale-down delay); the status tests use it as the simplest plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tritium.api import status as st
from tritium.api.conditions import set_condition


@dataclass(frozen=True)
class DeploymentObservation:
    """What the operator saw of one revision's Deployment."""

    revision: str
    desired: int
    replicas: int
    ready: int
    current: bool  # the Deployment controller has seen its latest spec
    updated: int | None = None  # pods of the current pod template (None: all of them)

    @property
    def is_ready(self) -> bool:
        return self.current and self.ready >= self.desired and (self.ready > 0 or self.desired == 0)

    @property
    def rolled_out(self) -> bool:
        """No pod of an older pod template is left (a revision's template only changes when a
        hand edit is put back, or the operator's own rendering changed)."""
        return self.updated is None or self.updated >= self.replicas

    @staticmethod
    def from_object(obj: dict[str, Any], revision_label: str) -> DeploymentObservation:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        generation = meta.get("generation")
        observed = status.get("observedGeneration")
        return DeploymentObservation(
            revision=(meta.get("labels") or {}).get(revision_label, ""),
            desired=int(spec.get("replicas", 1)),
            replicas=int(status.get("replicas") or 0),
            ready=int(status.get("readyReplicas") or 0),
            current=generation is None or (observed is not None and observed >= generation),
            updated=int(status.get("updatedReplicas") or 0),
        )


@dataclass(frozen=True)
class RevisionPlan:
    """The revisions whose children must stay, and which one is stable."""

    target: str
    stable: str | None
    keep: frozenset[str]

    @property
    def progressing(self) -> bool:
        return self.stable != self.target


def plan_revisions(
    target: str, previous_stable: str | None, observed: dict[str, DeploymentObservation]
) -> RevisionPlan:
    """Keep the stable revision until the target revision is ready, then only the target."""
    target_obs = observed.get(target)
    if target_obs is not None and target_obs.is_ready:
        return RevisionPlan(target=target, stable=target, keep=frozenset({target}))
    stable = previous_stable if previous_stable in observed else None
    keep = {target} | ({stable} if stable else set())
    return RevisionPlan(target=target, stable=stable, keep=frozenset(keep))


def target_replicas(
    *, base: int, autoscaled: bool, lowest: int, highest: int, target: str, stable: str | None,
    observed: dict[str, DeploymentObservation],
) -> int:
    """How many pods the target revision's Deployment is given.

    Without autoscaling: ``base`` (spec.replicas, else minReplicas). With it, the HPA decides,
    so the operator writes back what the Deployment already has (never fighting the HPA within
    its bounds), brought into [lowest, highest] on every reconcile: a count outside them (new
    bounds, or a hand edit) is corrected at once, without waiting for the HPA's next sync; and a
    new revision starts at the stable revision's current size, so that replacing it takes no
    capacity away.
    """
    if not autoscaled:
        return base
    for revision in (target, stable):
        if revision and revision in observed:
            return max(lowest, min(highest, observed[revision].desired))
    return lowest


def serving_status(
    *,
    previous: dict[str, Any],
    generation: int | None,
    plan: RevisionPlan | None,
    observed: dict[str, DeploymentObservation],
    url: str,
    selector: str,
    now: str,
    spec_error: str | None = None,
    desired_replicas: int | None = None,
    corrected: str | None = None,
    monitoring: tuple[str, str, str] | None = None,
    progressing: tuple[str, str, str] | None = None,
    autoscaling: tuple[str, str, str] | None = None,
) -> dict[str, Any]:
    """The status to write (without operator bookkeeping), from the plan and what was observed.

    ``desired_replicas`` is what the target revision should run: taken from the spec rather than
    from the observed Deployment, so the status reads the same before and after the Deployment is
    first seen (one status write instead of two).
    ``spec_error`` set means the new spec was refused: Ready=False/InvalidSpec while whatever
    already serves keeps serving (phase Degraded when pods still answer, Failed otherwise).
    ``corrected`` says what of the target's pod template was just put back after a hand edit:
    until every pod runs the restored template again, the service is not reported Ready.
    ``monitoring`` is the MonitoringReady condition (status, reason, message) of an accepted spec
    that wants a PodMonitor or PrometheusRule; None removes it (a refused spec leaves it as it was).
    ``autoscaling`` is the AutoscalingReady condition, the same way, for a spec that wants a KEDA
    ScaledObject (an HPA is a built-in kind: it needs no condition).
    ``progressing`` is the RolloutProgressing condition the rollout state machine gives; None
    derives it from the plan alone.
    """
    conditions: list[dict[str, Any]] = list(previous.get("conditions") or [])
    kept = [o for o in observed.values() if plan is None or o.revision in plan.keep]
    replicas = sum(o.replicas for o in kept)
    ready = sum(o.ready for o in kept)

    def cond(type_: str, status: str, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(
            conditions, type=type_, status=status, reason=reason, message=message, generation=generation, now=now
        )

    out: dict[str, Any] = {"observedGeneration": generation} if generation is not None else {}
    if spec_error is not None:
        cond(st.SPEC_VALID, "False", "InvalidSpec", spec_error)
        cond(st.READY, "False", "InvalidSpec", spec_error)
        phase = "Degraded" if ready > 0 else "Failed"
        stable = previous.get("stableRevision")
    else:
        assert plan is not None
        cond(st.SPEC_VALID, "True", "Valid", "the spec was accepted")
        target = observed.get(plan.target)
        same = plan.stable == plan.target
        if target is not None and corrected:
            cond(st.READY, "False", "DriftCorrected", f"revision {plan.target}: {corrected}")
            phase = "Degraded" if ready > 0 else "Progressing"
        elif target is not None and same and not target.rolled_out:
            cond(st.READY, "False", "PodsReplaced",
                 f"revision {plan.target}: {target.updated} of {target.replicas} pod(s) run its current template")
            phase = "Degraded" if ready > 0 else "Progressing"
        elif target is not None and target.is_ready:
            cond(st.READY, "True", "Serving", f"revision {plan.target}: {target.ready} pod(s) ready")
            phase = "Ready"
        elif target is not None and same and target.ready > 0:
            # Scaling (or the Deployment controller has not caught up yet): it serves meanwhile.
            cond(st.READY, "True", "Serving", f"revision {plan.target}: {target.ready} pod(s) ready")
            phase = "Ready"
        elif plan.stable and not same and plan.stable in observed and observed[plan.stable].ready > 0:
            cond(st.READY, "True", "StableServing",
                 f"revision {plan.stable} serves while revision {plan.target} starts")
            phase = "Progressing"
        else:
            have = target.ready if target else 0
            want = desired_replicas if desired_replicas is not None else (target.desired if target else "?")
            cond(st.READY, "False", "RevisionNotReady", f"revision {plan.target}: {have}/{want} pod(s) ready")
            phase = "Progressing" if ready == 0 else "Degraded"
        if progressing is not None:
            cond(st.ROLLOUT_PROGRESSING, *progressing)
        elif plan.progressing:
            cond(st.ROLLOUT_PROGRESSING, "True", "NewRevision",
                 f"revision {plan.target} replaces {plan.stable or 'nothing'} once ready")
        else:
            cond(st.ROLLOUT_PROGRESSING, "False", "Stable", f"revision {plan.target} is stable")
        for type_, value in ((st.MONITORING_READY, monitoring), (st.AUTOSCALING_READY, autoscaling)):
            if value is not None:
                cond(type_, *value)
            else:
                conditions = [c for c in conditions if c.get("type") != type_]
        stable = plan.stable
    out.update(
        {
            "phase": phase,
            "url": url,
            "conditions": conditions,
            "replicas": replicas,
            "readyReplicas": ready,
            "selector": selector,
        }
    )
    if stable:
        out["stableRevision"] = stable
    if plan is not None and plan.progressing:
        out["canaryRevision"] = plan.target
    return out
