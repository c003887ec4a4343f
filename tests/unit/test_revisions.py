"""The revision plan and the status it produces (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as stn

from tritium.rollout.revisions import DeploymentObservation, plan_revisions, serving_status

NOW = "2026-01-01T00:00:00Z"


def obs(rev: str, desired: int = 2, ready: int = 2, current: bool = True) -> DeploymentObservation:
    return DeploymentObservation(revision=rev, desired=desired, replicas=desired, ready=ready, current=current)


def status_for(plan, observed, previous=None, **kw):  # type: ignore[no-untyped-def]
    return serving_status(previous=previous or {}, generation=3, plan=plan, observed=observed,
                          url="http://x", selector="a=b", now=NOW, **kw)


def cond(status: dict, type_: str) -> dict:
    return next(c for c in status["conditions"] if c["type"] == type_)


def test_ready_target_becomes_stable_and_drops_the_old_revision() -> None:
    plan = plan_revisions("new", "old", {"old": obs("old"), "new": obs("new")})
    assert plan.stable == "new" and plan.keep == {"new"} and not plan.progressing


def test_old_revision_is_kept_until_the_new_one_is_ready() -> None:
    observed = {"old": obs("old"), "new": obs("new", ready=1)}
    plan = plan_revisions("new", "old", observed)
    assert plan.stable == "old" and plan.keep == {"old", "new"} and plan.progressing
    status = status_for(plan, observed)
    assert status["phase"] == "Progressing"
    assert cond(status, "Ready")["status"] == "True" and cond(status, "Ready")["reason"] == "StableServing"
    assert status["canaryRevision"] == "new" and status["stableRevision"] == "old"
    assert status["readyReplicas"] == 3


def test_a_deployment_not_yet_seen_by_its_controller_is_not_ready() -> None:
    assert not obs("a", current=False).is_ready
    assert not obs("a", desired=1, ready=0).is_ready
    assert obs("a", desired=0, ready=0).is_ready


def test_first_revision_not_ready_is_progressing_not_ready() -> None:
    plan = plan_revisions("a", None, {"a": obs("a", ready=0)})
    status = status_for(plan, {"a": obs("a", ready=0)})
    assert status["phase"] == "Progressing"
    assert cond(status, "Ready")["status"] == "False" and cond(status, "Ready")["reason"] == "RevisionNotReady"
    assert "stableRevision" not in status


def test_invalid_spec_keeps_stable_and_reports_the_field() -> None:
    previous = {"stableRevision": "a", "conditions": []}
    status = status_for(None, {"a": obs("a")}, previous=previous, spec_error="spec.model.storageUri: bad")
    assert status["phase"] == "Degraded" and status["stableRevision"] == "a"
    assert cond(status, "Ready")["reason"] == "InvalidSpec"
    assert "spec.model.storageUri" in cond(status, "Ready")["message"]
    nothing = status_for(None, {}, spec_error="spec.x: bad")
    assert nothing["phase"] == "Failed"


def test_transition_time_changes_only_with_status() -> None:
    plan = plan_revisions("a", None, {"a": obs("a")})
    first = status_for(plan, {"a": obs("a")})
    later = serving_status(previous=first, generation=3, plan=plan, observed={"a": obs("a")}, url="http://x",
                           selector="a=b", now="2030-01-01T00:00:00Z")
    assert later == first, "an unchanged state must give an identical status (no write)"
    broken = serving_status(previous=first, generation=3, plan=plan, observed={"a": obs("a", ready=0)},
                            url="http://x", selector="a=b", now="2030-01-01T00:00:00Z")
    assert cond(broken, "Ready")["lastTransitionTime"] == "2030-01-01T00:00:00Z"


@given(
    stn.dictionaries(stn.sampled_from(["a", "b", "c"]), stn.tuples(stn.integers(0, 3), stn.integers(0, 3)),
                     max_size=3),
    stn.sampled_from(["a", "b", "c"]),
    stn.one_of(stn.none(), stn.sampled_from(["a", "b", "c"])),
)
def test_plan_invariants(deps, target, stable) -> None:  # type: ignore[no-untyped-def]
    observed = {r: obs(r, desired=d, ready=min(rd, d)) for r, (d, rd) in deps.items()}
    plan = plan_revisions(target, stable, observed)
    assert target in plan.keep, "the target revision is never pruned"
    assert len(plan.keep) <= 2
    if plan.stable is not None:
        assert plan.stable in plan.keep
    if target in observed and observed[target].is_ready:
        assert plan.keep == {target}


def test_status_does_not_change_when_the_deployment_is_first_seen() -> None:
    """Before and after the new Deployment appears in the watch cache, the status is identical."""
    plan_before = plan_revisions("a", None, {})
    before = serving_status(previous={}, generation=1, plan=plan_before, observed={}, url="u", selector="s",
                            now=NOW, desired_replicas=2)
    seen = {"a": DeploymentObservation(revision="a", desired=2, replicas=0, ready=0, current=False)}
    after = serving_status(previous=before, generation=1, plan=plan_revisions("a", None, seen), observed=seen,
                           url="u", selector="s", now="2030-01-01T00:00:00Z", desired_replicas=2)
    assert after == before


def test_a_template_put_back_after_a_hand_edit_is_not_ready_until_rolled_out() -> None:
    plan = plan_revisions("a", "a", {"a": obs("a")})
    corrected = status_for(plan, {"a": obs("a")}, corrected=".spec.template.spec.containers[triton].image put back")
    assert cond(corrected, "Ready")["status"] == "False" and cond(corrected, "Ready")["reason"] == "DriftCorrected"
    assert "containers[triton].image" in cond(corrected, "Ready")["message"]
    assert corrected["phase"] == "Degraded", "its old pods still answer"
    replacing = DeploymentObservation(revision="a", desired=2, replicas=3, ready=3, current=True, updated=1)
    status = status_for(plan, {"a": replacing})
    assert cond(status, "Ready")["reason"] == "PodsReplaced" and "1 of 3" in cond(status, "Ready")["message"]
    done = DeploymentObservation(revision="a", desired=2, replicas=2, ready=2, current=True, updated=2)
    assert cond(status_for(plan, {"a": done}), "Ready")["reason"] == "Serving"


def test_scaling_the_stable_revision_keeps_it_ready() -> None:
    """An HPA scale-up bumps the Deployment's generation and adds pods not yet ready: still serving."""
    plan = plan_revisions("a", "a", {"a": obs("a")})
    scaling = DeploymentObservation(revision="a", desired=5, replicas=5, ready=2, current=False, updated=5)
    status = status_for(plan, {"a": scaling})
    assert cond(status, "Ready")["status"] == "True" and status["phase"] == "Ready"


def test_monitoring_condition_is_set_kept_on_a_refused_spec_and_dropped_when_off() -> None:
    plan = plan_revisions("a", "a", {"a": obs("a")})
    missing = ("False", "CRDMissing", "the cluster has no PodMonitor kind")
    status = status_for(plan, {"a": obs("a")}, monitoring=missing)
    assert cond(status, "MonitoringReady")["reason"] == "CRDMissing"
    assert cond(status, "Ready")["status"] == "True", "missing monitoring never blocks serving"
    refused = status_for(None, {"a": obs("a")}, previous=status, spec_error="spec.x: bad")
    assert cond(refused, "MonitoringReady") == cond(status, "MonitoringReady")
    off = status_for(plan, {"a": obs("a")}, previous=status)
    assert all(c["type"] != "MonitoringReady" for c in off["conditions"])


def test_autoscaling_condition_follows_the_scaledobject_like_monitoring() -> None:
    plan = plan_revisions("a", "a", {"a": obs("a")})
    missing = ("False", "CRDMissing", "the cluster has no ScaledObject kind")
    status = status_for(plan, {"a": obs("a")}, autoscaling=missing)
    assert cond(status, "AutoscalingReady")["reason"] == "CRDMissing"
    assert cond(status, "Ready")["status"] == "True", "a missing autoscaler never blocks serving"
    assert all(c["type"] != "MonitoringReady" for c in status["conditions"])
    refused = status_for(None, {"a": obs("a")}, previous=status, spec_error="spec.x: bad")
    assert cond(refused, "AutoscalingReady") == cond(status, "AutoscalingReady")
    applied = status_for(plan, {"a": obs("a")}, previous=status, autoscaling=("True", "Applied", "applied"))
    assert cond(applied, "AutoscalingReady")["status"] == "True"
    off = status_for(plan, {"a": obs("a")}, previous=applied)
    assert all(c["type"] != "AutoscalingReady" for c in off["conditions"])
