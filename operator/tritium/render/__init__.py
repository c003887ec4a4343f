"""Pure rendering: InferenceService -> the Kubernetes objects it becomes.

One module per child kind (like KServe's reconcilers); each returns the desired object, or None
when that child is not wanted. No I/O here: the controller applies what this returns.
"""

from __future__ import annotations

from typing import Any

import yaml

from tritium.api.resource import InferenceService
from tritium.images import DEFAULT_IMAGES, Images
from tritium.render import (
    alertmanagerconfig,
    certificate,
    configmap,
    deployment,
    hpa,
    httproute,
    networkpolicy,
    pdb,
    podmonitor,
    prometheusrule,
    scaledobject,
    service,
    serviceaccount,
    traffic,
)
from tritium.render.metadata import revision_of, stamp_applied_hash
from tritium.render.routing import Routing


def render_children(
    isvc: InferenceService, revision: str | None = None, images: Images = DEFAULT_IMAGES,
    replicas: int | None = None, routing: Routing | None = None,
) -> list[dict[str, Any]]:
    """Every child the service wants, in apply order, each stamped with the hash of its content.

    ``images`` are the operator's defaults for containers whose image the spec leaves unset;
    ``replicas`` the revision's replica count when the operator knows better than the spec (the
    autoscaler's current count, or a canary's size); ``routing`` which revisions get traffic
    (rollout/machine.py decides; by default ``revision`` takes it all). While ``revision`` is the
    canary it has no autoscaler (neither HPA nor ScaledObject): the operator sizes it for its share,
    and the stable revision's autoscaler, never re-rendered during the rollout, keeps the capacity
    it has.
    """
    rev = revision or revision_of(isvc.spec, images)
    route = routing or Routing.only(rev)
    canary = route.canary == rev
    # Children shared by the revisions carry the serving revision's label: a new revision does
    # not rewrite them, only a promotion does.
    shared = route.stable
    # Order matters for the first apply: the ServiceAccount and ConfigMaps exist before pods need them.
    children = [
        serviceaccount.render(isvc, shared),
        # Before the pods that mount its Secret, so that cert-manager starts issuing at once; a cluster
        # without cert-manager's CRD skips it like the other optional kinds below.
        certificate.render(isvc, shared),
        configmap.render(isvc, rev),
        traffic.render(isvc, route),
        deployment.render(isvc, rev, images=images, replicas=replicas),
        None if canary else hpa.render(isvc, rev),
        pdb.render(isvc, rev),
        *service.render_revisions(isvc, route),
        service.render(isvc, route),
        networkpolicy.render(isvc, shared),
        # Kinds whose CRDs a cluster may lack last: it skips them (controller/reconcile.py).
        httproute.render(isvc, route),
        podmonitor.render(isvc, shared),
        prometheusrule.render(isvc, shared),
        alertmanagerconfig.render(isvc, shared),
        None if canary else scaledobject.render(isvc, rev),
    ]
    return [stamp_applied_hash(c) for c in children if c is not None]


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (config.pbtxt, JSON) as literal blocks, readable in review."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(objects: list[dict[str, Any]]) -> str:
    """Multi-document YAML; byte-identical for the same input (dict order is fixed by the renderers)."""
    return "".join("---\n" + yaml.dump(o, Dumper=_Dumper, sort_keys=False, width=120) for o in objects)
