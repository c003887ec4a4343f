"""InferenceService status: what the operator observed. Status is ours, spec is the user's."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tritium.api.base import ApiModel, described

Phase = Literal["Pending", "Progressing", "Ready", "Degraded", "Failed"]
ConditionStatus = Literal["True", "False", "Unknown"]

# Condition types the operator writes (Kubernetes API conventions: positive polarity, CamelCase).
READY = "Ready"
SPEC_VALID = "SpecValid"
ROLLOUT_PROGRESSING = "RolloutProgressing"
DEGRADED = "Degraded"
MONITORING_READY = "MonitoringReady"  # only while monitoring children are wanted
AUTOSCALING_READY = "AutoscalingReady"  # only while a KEDA ScaledObject is wanted (autoscaler keda)


class Condition(ApiModel):
    """One aspect of the service's state, per the Kubernetes API conventions."""

    type: str = described("Condition type, e.g. Ready.", min_length=1, max_length=316)
    status: ConditionStatus = described("True, False or Unknown.")
    reason: str = described("One CamelCase word saying why.", min_length=1, max_length=1024)
    message: str = described("What happened, for humans.", default="", max_length=32768)
    last_transition_time: str = described("When status last changed (RFC 3339).")
    observed_generation: int | None = described("The spec generation the condition describes.", default=None)


class AnalysisRecord(ApiModel):
    """One measurement of a canary revision."""

    time: str = described("When it was taken (RFC 3339).")
    revision: str = described("Revision measured.")
    result: Literal["Passed", "Failed", "Inconclusive"] = described(
        "Passed or Failed against the thresholds; Inconclusive with no data or too few requests."
    )
    requests: int = described("Requests in the window, over every pod of the revision.", default=0)
    error_ratio: float | None = described("Ratio of 5xx answers.", default=None)
    p99_latency_ms: float | None = described("p99 latency in milliseconds.", default=None)
    message: str = described("The figures against the thresholds.", default="")


RolloutPhase = Literal[
    "Pending", "Starting", "Canary", "Paused", "Promoting", "Promoted", "RollingBack", "RolledBack", "Failed"
]


class RolloutStatus(ApiModel):
    """The state of the last rollout; the operator resumes from it after a restart."""

    phase: RolloutPhase = described("Where the rollout stands (see docs/rollouts.md).")
    revision: str | None = described("The revision the rollout is about.", default=None)
    step: int = described("Index of the current canary step.", default=0)
    failures: int = described("Failed measurements so far.", default=0)
    passes: int = described("Passed measurements in the current step.", default=0)
    reason: str = described("Why the rollout is in this phase, one CamelCase word.", default="")
    message: str = described("What happened, for humans.", default="")
    started_at: str | None = described("When the rollout started (RFC 3339).", default=None)
    phase_since: str | None = described("When the current phase began.", default=None)
    canary_since: str | None = described("When the current canary step began.", default=None)
    unready_since: str | None = described("When the canary lost readiness, while it is unready.", default=None)
    last_analysis_at: str | None = described("When the canary was last measured.", default=None)
    promoted_at: str | None = described("When the revision was promoted.", default=None)
    previous_revision: str | None = described(
        "The revision promoted over, kept scaleDownDelaySeconds.", default=None
    )
    rejected_revision: str | None = described(
        "A rolled-back revision: not tried again while the spec asks for it.", default=None
    )
    baseline_replicas: int | None = described(
        "With surge false: the stable revision's replicas before the rollout, given back on rollback.",
        default=None,
    )


class InferenceServiceStatus(ApiModel):
    """Observed state of an InferenceService."""

    observed_generation: int | None = described("Spec generation last acted upon.", default=None)
    phase: Phase | None = described("Pending, Progressing, Ready, Degraded or Failed.", default=None)
    url: str | None = described("In-cluster URL of the gateway.", default=None)
    conditions: list[Condition] | None = Field(
        default=None,
        description="Current conditions (Ready, SpecValid, RolloutProgressing, Degraded, MonitoringReady, "
        "AutoscalingReady).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    stable_revision: str | None = described("Revision serving most traffic.", default=None)
    canary_revision: str | None = described("Revision under analysis, if any.", default=None)
    canary_weight: int | None = described("Percent of traffic sent to the canary revision.", default=None)
    analysis: list[AnalysisRecord] | None = described("Recent canary measurements, the newest last.", default=None)
    rollout: RolloutStatus | None = described("The last rollout.", default=None)
    replicas: int | None = described("Serving pods that exist.", default=None)
    ready_replicas: int | None = described("Serving pods that are ready.", default=None)
    selector: str | None = described("Label selector of the serving pods (for the scale subresource).", default=None)
    kopf: dict[str, Any] | None = Field(
        default=None,
        description=("Bookkeeping of earlier operator versions (kopf's handler progress); ignored, "
                     "not part of the API contract."),
        json_schema_extra={"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    )

    model_config = ApiModel.model_config | {"extra": "ignore"}
