"""The per-revision HorizontalPodAutoscaler (autoscaling/v2), or None when autoscaling is off.

One HPA per revision Deployment, named like it, so a new revision scales on its own while the
stable one keeps the capacity it has until it is removed (its HPA goes with it, never first).

Scale-up answers a burst with no stabilization and may double the pods (or add four, whichever
is more) every 15 s. The time from a load rise to a new pod's request is then about: the metric
resolution (metrics-server scrapes the kubelets every 15 s) + the HPA sync period (15 s, the
kube-controller-manager default) + the pod's start (image pull and model load), so about 30 s plus
start-up, which is what autoscaling.scaleUpSeconds' default says. Scale-down waits for the load to
stay low for scaleDownCooldownSeconds (the stabilization window), then may remove any number.
"""

from __future__ import annotations

from typing import Any

from tritium.api.resource import InferenceService
from tritium.render.metadata import object_meta, revision_name

SYNC_SECONDS = 15  # the HPA controller's default sync period, and metrics-server's resolution


def render(isvc: InferenceService, revision: str) -> dict[str, Any] | None:
    scaling = isvc.spec.autoscaling
    if not scaling.enabled:
        return None
    name = revision_name(isvc, revision)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": object_meta(isvc, name, revision),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [{
                "type": "Resource",
                "resource": {"name": "cpu", "target": {
                    "type": "Utilization", "averageUtilization": round(scaling.target_utilization * 100)}},
            }],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "selectPolicy": "Max",
                    "policies": [
                        {"type": "Percent", "value": 100, "periodSeconds": SYNC_SECONDS},
                        {"type": "Pods", "value": 4, "periodSeconds": SYNC_SECONDS},
                    ],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": scaling.scale_down_cooldown_seconds,
                    "selectPolicy": "Max",
                    "policies": [{"type": "Percent", "value": 100, "periodSeconds": SYNC_SECONDS}],
                },
            },
        },
    }
