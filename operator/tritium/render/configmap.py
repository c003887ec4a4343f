"""Per-revision ConfigMap: Triton's config.pbtxt and the spec the data-plane processes read.

It is named after the revision so that a running revision's configuration never changes under
it: a new spec makes a new ConfigMap beside the old one, and the old one goes with its Deployment.
"""

from __future__ import annotations

import json
from typing import Any

from tritium import pod_layout
from tritium.api.resource import InferenceService
from tritium.render.metadata import REVISION_SECTIONS, object_meta, revision_name
from tritium.render.triton_config import render_config


def data_plane_config(isvc: InferenceService, revision: str) -> dict[str, Any]:
    """What the gateway and stage servers read at start (also written by local mode).

    Only the pod-relevant sections: the content is then a function of the revision alone, and
    scaling or rollout changes never touch a running revision's configuration.
    """
    wire = isvc.spec.to_wire()
    spec = {k: wire[k] for k in REVISION_SECTIONS if k in wire}
    return {"name": isvc.name, "namespace": isvc.namespace, "revision": revision, "spec": spec}


def render(isvc: InferenceService, revision: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(isvc, revision_name(isvc, revision), revision),
        "data": {
            pod_layout.TRITON_CONFIG_FILE: render_config(isvc.spec.model),
            pod_layout.SPEC_FILE: json.dumps(data_plane_config(isvc, revision), sort_keys=True, indent=1) + "\n",
        },
    }
