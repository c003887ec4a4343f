"""The per-revision PodDisruptionBudget: voluntary evictions (node drains, cluster upgrades) take
at most one pod of a revision at a time, so a drain never empties a service.

``maxUnavailable: 1`` rather than a ``minAvailable``: it protects a revision of any size without
ever blocking a drain for good (a one-pod revision can still be moved), and pods that are not
ready do not count against it (``unhealthyPodEvictionPolicy: AlwaysAllow``), so a broken pod
never holds a node hostage.
"""

from __future__ import annotations

from typing import Any

from tritium.api.resource import InferenceService
from tritium.render.metadata import LABEL_REVISION, object_meta, revision_name, selector_labels


def render(isvc: InferenceService, revision: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_meta(isvc, revision_name(isvc, revision), revision),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {**selector_labels(isvc), LABEL_REVISION: revision}},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
