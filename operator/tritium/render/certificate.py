"""The cert-manager Certificate (cert-manager.io/v1) of a service, or None unless security.tls.certManager.

cert-manager writes the certificate and key into ``security.tls.secretName``, the Secret every
revision's gateway mounts (render/deployment.py), and renews it there; the gateway reloads the
files when the kubelet refreshes them (dataplane/security/tls.py), so a renewal needs no restart.

One per service, not per revision: both revisions of a rollout mount the same Secret, and the
stable gateways pin that certificate when they forward the canary's share over HTTPS. Its names
are the main Service's (the one clients use) plus the spec's ``dnsNames``; the per-revision
Services are left out, because their names change with every revision and the canary hop checks
the pinned certificate, not a name.

No commonName: clients check the DNS names (a common name is limited to 64 characters, shorter
than NAME.NAMESPACE.svc.cluster.local can be). The private key is ECDSA P-256 and made anew at
each renewal (``rotationPolicy: Always``), so a leaked key stops being valid with the certificate
it belonged to.
"""

from __future__ import annotations

from typing import Any

from tritium.api.resource import InferenceService
from tritium.render.metadata import object_meta


def service_dns_names(isvc: InferenceService) -> list[str]:
    """The names a client inside the cluster reaches the main Service by (cluster domain cluster.local)."""
    name, namespace = isvc.name, isvc.namespace
    return [name, f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"]


def dns_names(isvc: InferenceService) -> list[str]:
    """The Service's names, then the spec's extra ones, each once and in that order."""
    tls = isvc.spec.security.tls
    extra = (tls.cert_manager.dns_names if tls and tls.cert_manager else None) or []
    return list(dict.fromkeys([*service_dns_names(isvc), *extra]))


def render(isvc: InferenceService, revision: str) -> dict[str, Any] | None:
    tls = isvc.spec.security.tls
    if tls is None or tls.cert_manager is None:
        return None
    wanted = tls.cert_manager
    spec: dict[str, Any] = {
        "secretName": tls.secret_name,
        "issuerRef": {"name": wanted.issuer_ref.name, "kind": wanted.issuer_ref.kind,
                      "group": wanted.issuer_ref.group},
        "dnsNames": dns_names(isvc),
        "usages": ["server auth", "digital signature"],
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
    }
    if wanted.duration:
        spec["duration"] = wanted.duration
    if wanted.renew_before:
        spec["renewBefore"] = wanted.renew_before
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": object_meta(isvc, isvc.name, revision),
        "spec": spec,
    }
