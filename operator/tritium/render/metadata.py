"""Names, labels, owner references and hashes shared by every child."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tritium.api.resource import API_VERSION, KIND, InferenceService
from tritium.api.spec import InferenceServiceSpec
from tritium.images import DEFAULT_IMAGES, Images

LABEL_ISVC = "serving.tritium.dev/inferenceservice"
LABEL_REVISION = "serving.tritium.dev/revision"
ANNOTATION_APPLIED_HASH = "serving.tritium.dev/applied-hash"
MANAGED_BY = "tritium-operator"

# Spec sections that change what runs inside a pod: a change to any of them is a new revision
# (a new Deployment, rolled out blue-green). Scaling, rollout, traffic and monitoring settings
# are applied in place and never restart a pod.
REVISION_SECTIONS = ("model", "runtime", "preprocess", "postprocess", "gateway", "security")


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def effective_images(spec: InferenceServiceSpec, images: Images = DEFAULT_IMAGES) -> dict[str, str]:
    """The image each container of the pod runs: the spec's, else the operator's default."""
    out = {"triton": spec.runtime.image or images.triton, "gateway": spec.gateway.image or images.stage}
    if spec.preprocess:
        out["preprocess"] = spec.preprocess.image or images.stage
    if spec.postprocess:
        out["postprocess"] = spec.postprocess.image or images.stage
    return out


def revision_of(spec: InferenceServiceSpec, images: Images = DEFAULT_IMAGES) -> str:
    """Short content hash of what runs in a pod: equal specs (and default images) give equal revisions.

    The images actually used are part of it, so a new default image in the operator's
    configuration rolls out as a new revision, like any other pod change.
    """
    wire = spec.to_wire()
    relevant = {k: wire[k] for k in REVISION_SECTIONS if k in wire}
    # Who issues the certificate is not in the pod (it mounts the Secret by name): the Certificate
    # is changed in place (render/certificate.py).
    relevant.get("security", {}).get("tls", {}).pop("certManager", None)
    relevant["images"] = effective_images(spec, images)
    return hashlib.sha256(canonical_json(relevant).encode()).hexdigest()[:10]


def revision_name(isvc: InferenceService, revision: str) -> str:
    """Name of the per-revision children (Deployment, ConfigMap): NAME-REVISION, <= 63 chars."""
    return f"{isvc.name[: 63 - len(revision) - 1]}-{revision}"


def selector_labels(isvc: InferenceService) -> dict[str, str]:
    """Labels that select every serving pod of the service, whatever its revision."""
    return {"app.kubernetes.io/instance": isvc.name, "app.kubernetes.io/component": "predictor"}


def labels(isvc: InferenceService, revision: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "inferenceservice",
        **selector_labels(isvc),
        "app.kubernetes.io/part-of": "tritium",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        LABEL_ISVC: isvc.name,
        LABEL_REVISION: revision,
    }


def owner_references(isvc: InferenceService) -> list[dict[str, Any]]:
    """The InferenceService as controller owner (garbage collection deletes children with it)."""
    if not isvc.metadata.uid:
        return []  # rendered offline (`tritium render`): the uid is only known in a cluster
    return [
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": isvc.name,
            "uid": isvc.metadata.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def object_meta(isvc: InferenceService, name: str, revision: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": isvc.namespace, "labels": labels(isvc, revision)}
    owners = owner_references(isvc)
    if owners:
        meta["ownerReferences"] = owners
    return meta


def applied_hash(obj: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:16]


def stamp_applied_hash(obj: dict[str, Any]) -> dict[str, Any]:
    """Record the hash of the desired object on it, so an unchanged child costs no write."""
    digest = applied_hash(obj)
    meta = obj["metadata"]
    meta["annotations"] = {**meta.get("annotations", {}), ANNOTATION_APPLIED_HASH: digest}
    return obj
