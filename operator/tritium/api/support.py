"""Fields the API accepts whose behaviour has not landed yet: a spec that sets one is refused.

The rule: a field does what its description says, or a spec that sets it is refused with
InvalidSpec "not supported yet", naming it. Never a silent no-op: a rate limit that limits
nothing, or TLS probes against a plain-HTTP gateway, is worse than an honest refusal.

"Sets" means "differs from the default": the API server writes every default into the stored
object, so a default value cannot be told from an unset one, and a default promises nothing the
operator does not already do (each entry below says what the default means today). An entry is
removed in the change that makes its field work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tritium.api.resource import InferenceService, SpecError, spec_to_wire
from tritium.api.spec import InferenceServiceSpec, ModelSpec

# Spec path prefix -> why it is refused. Checked in this order; the first field set is named.
NOT_SUPPORTED: dict[str, str] = {
    "spec.autoscaling.scaleUpSeconds": "the HPA answers a rise in about 30 s (15 s metric resolution + 15 s "
    "sync) plus pod start-up; that figure cannot be tuned yet",
    "spec.runtime.tensorParallelSize": "Triton itself has no such setting: the model's backend takes it from "
    "its own configuration (a TensorRT-LLM engine is built for it, vLLM reads it from model.json); set it there "
    "and give the pods runtime.resources.gpu",
    # every spec.security field works (docs/security.md).
}


# Fields of one mode, read only while that mode is chosen: path -> (whether it is, what to set).
# One that differs from its default under another mode would do nothing, so the spec is refused,
# as for the fields NOT_SUPPORTED lists. (An on/off switch is another matter: autoscaling.enabled,
# cache.enabled and responseCache.enabled false turn their block off and its other fields are kept
# unused, as their descriptions say, so that a service can be switched back without rewriting them.)
ONLY_WITH: dict[str, tuple[Callable[[InferenceServiceSpec], bool], str]] = {
    **{f"spec.traffic.{f}": (lambda s: s.traffic.router == "gatewayAPI", "traffic.router: gatewayAPI")
       for f in ("parentRefs", "hostnames")},
    "spec.rollout.analysis.prometheusUrl": (lambda s: s.rollout.analysis.provider == "prometheus",
                                            "rollout.analysis.provider: prometheus"),
    "spec.rollout.scaleDownDelaySeconds": (lambda s: s.rollout.surge, "rollout.surge: true (surge false removes "
                                           "the old revision as its last pod moves)"),
}


def _default_wire() -> dict[str, Any]:
    minimal = InferenceServiceSpec(model=ModelSpec(name="m", storage_uri="s3://b/m", format="onnx"))
    return spec_to_wire(minimal)


_DEFAULTS = _default_wire()


def _lookup(wire: dict[str, Any], path: str) -> tuple[bool, Any]:
    node: Any = wire
    for part in path.split(".")[1:]:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _first_set(value: Any, default: Any, path: str) -> str | None:
    """The first path under ``path`` whose value differs from its default."""
    if isinstance(value, dict) and isinstance(default, dict):
        for key, sub in value.items():
            found = _first_set(sub, default.get(key), f"{path}.{key}")
            if found:
                return found
        return None
    return None if value == default else path


def _check_only_with(wire: dict[str, Any], spec: InferenceServiceSpec) -> None:
    for path, (on, needs) in ONLY_WITH.items():
        present, value = _lookup(wire, path)
        if present and not on(spec) and value != _lookup(_DEFAULTS, path)[1]:
            raise SpecError(path, f"used only with {needs}; without it this field does nothing (remove it, "
                            "or set it back to its default)")


def check_supported(isvc: InferenceService) -> None:
    """Raise SpecError for the first field set that does nothing: "not supported yet", or read only
    under another setting that is off (ONLY_WITH)."""
    scaling = isvc.spec.autoscaling
    if scaling.enabled and scaling.min_replicas == 0:
        raise SpecError("spec.autoscaling.minReplicas", "0 is not supported yet (scale to zero, even with "
                        "autoscaler keda: KEDA could remove the last pod, but nothing would hold a request "
                        "until one is back); use 1 or more, or autoscaling.enabled: false")
    if scaling.enabled and scaling.metric == "gpu" and isvc.spec.runtime.resources.gpu == 0:
        # Triton exports nv_gpu_utilization only for the GPUs it sees: without one the HPA would
        # find no value, and never scale.
        raise SpecError("spec.autoscaling.metric", "gpu needs runtime.resources.gpu >= 1 (a pod without a GPU "
                        "has no GPU utilisation to scale on)")
    if scaling.enabled and scaling.metric != "cpu" and not isvc.spec.monitoring.service_monitor:
        # The prometheus-adapter rules (or KEDA's query) read the series the service's PodMonitor
        # scrapes (labelled inferenceservice); without it the HPA would find no value, and never scale.
        reader = ("KEDA's prometheus trigger queries" if scaling.autoscaler == "keda"
                  else "the chart's prometheus-adapter rules serve to the HPA")
        raise SpecError("spec.autoscaling.metric", f"{scaling.metric} needs monitoring.serviceMonitor: true (the "
                        f"PodMonitor whose series {reader})")
    wire = spec_to_wire(isvc.spec)
    _check_only_with(wire, isvc.spec)
    for prefix, why in NOT_SUPPORTED.items():
        present, value = _lookup(wire, prefix)
        if not present:
            continue
        field = _first_set(value, _lookup(_DEFAULTS, prefix)[1], prefix)
        if field:
            raise SpecError(field, f"not supported yet ({why})")
