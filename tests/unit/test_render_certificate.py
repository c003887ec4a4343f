"""security.tls.certManager: the Certificate cert-manager fills the TLS Secret from, checked against
cert-manager's official CRD schema (cert-manager.io_certificates.yaml of the Go module
github.com/cert-manager/cert-manager, scripts/optional-crds.sh), applied the way kube-apiserver would.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.optional_crds import crd_schema, problems
from tests.support.specs import manifest
from tritium.api.checks import check_spec, references
from tritium.api.resource import InferenceService, parse_inference_service
from tritium.render import certificate, render_children
from tritium.render.metadata import revision_of

ISSUER = {"name": "internal-ca", "kind": "ClusterIssuer"}


def _isvc(cert_manager: dict[str, Any] | None = None, secret: str = "demo-tls", **spec: Any) -> InferenceService:
    tls: dict[str, Any] = {"secretName": secret}
    if cert_manager is not None:
        tls["certManager"] = cert_manager
    isvc = parse_inference_service(manifest({"security": {"tls": tls}, **spec}, namespace="serving",
                                            uid="0f0f0f0f-0000-4000-8000-000000000003"))
    check_spec(isvc)
    return isvc


def _certificates(isvc: InferenceService) -> list[dict[str, Any]]:
    return [c for c in render_children(isvc) if c["kind"] == "Certificate"]


def test_no_certificate_without_cert_manager() -> None:
    assert _certificates(_isvc()) == []
    assert _certificates(parse_inference_service(manifest({}))) == []


def test_the_certificate_writes_the_mounted_secret_for_the_service_names() -> None:
    isvc = _isvc({"issuerRef": ISSUER, "dnsNames": ["demo.example.com", "demo.serving.svc", "demo.example.com"],
                  "duration": "2160h", "renewBefore": "360h"})
    (cert,) = _certificates(isvc)
    assert cert["apiVersion"] == "cert-manager.io/v1"
    assert cert["metadata"]["name"] == isvc.name and cert["metadata"]["namespace"] == "serving"
    assert cert["metadata"]["ownerReferences"][0]["uid"] == "0f0f0f0f-0000-4000-8000-000000000003"
    spec = cert["spec"]
    (deployment,) = [c for c in render_children(isvc) if c["kind"] == "Deployment"]
    mounted = [v["secret"]["secretName"] for v in deployment["spec"]["template"]["spec"]["volumes"]
               if v["name"] == "tls"]
    assert [spec["secretName"]] == mounted == ["demo-tls"]
    assert spec["issuerRef"] == {"name": "internal-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    name = isvc.name
    # The Service's names first, then the extra ones; one the Service already has is not repeated.
    assert spec["dnsNames"] == [name, f"{name}.serving", f"{name}.serving.svc", f"{name}.serving.svc.cluster.local",
                                "demo.example.com"]
    assert (spec["duration"], spec["renewBefore"]) == ("2160h", "360h")
    assert spec["privateKey"]["rotationPolicy"] == "Always"
    assert "commonName" not in spec


def test_the_issuer_kind_defaults_to_a_namespaced_issuer_and_lifetimes_to_cert_managers() -> None:
    (cert,) = _certificates(_isvc({"issuerRef": {"name": "ns-ca"}}))
    assert cert["spec"]["issuerRef"] == {"name": "ns-ca", "kind": "Issuer", "group": "cert-manager.io"}
    assert "duration" not in cert["spec"] and "renewBefore" not in cert["spec"]


def test_the_certificate_is_shared_by_the_revisions_and_comes_before_the_pods() -> None:
    isvc = _isvc({"issuerRef": ISSUER})
    kinds = [c["kind"] for c in render_children(isvc)]
    assert kinds.index("Certificate") < kinds.index("Deployment")
    first = certificate.render(isvc, "aaaaaaaaaa")
    later = certificate.render(isvc, "bbbbbbbbbb")
    assert first is not None and later is not None
    assert first["metadata"]["name"] == later["metadata"]["name"] == isvc.name


def test_who_issues_the_certificate_is_changed_in_place_not_rolled_out() -> None:
    by_hand = _isvc()
    issued = _isvc({"issuerRef": ISSUER})
    other_issuer = _isvc({"issuerRef": {"name": "other-ca"}, "dnsNames": ["x.example.com"]})
    assert revision_of(by_hand.spec) == revision_of(issued.spec) == revision_of(other_issuer.spec)
    # The Secret the pods mount is in the pod: another one is a new revision.
    assert revision_of(_isvc({"issuerRef": ISSUER}, secret="other-tls").spec) != revision_of(issued.spec)


def test_the_tls_secret_reference_says_the_certificate_writes_it() -> None:
    (by_hand,) = [r for r in references(_isvc()) if r.field == "spec.security.tls.secretName"]
    (issued,) = [r for r in references(_isvc({"issuerRef": ISSUER})) if r.field == "spec.security.tls.secretName"]
    assert by_hand.issued_by is None
    assert (issued.kind, issued.name, issued.issued_by) == ("Secret", "demo-tls", "Certificate")


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return crd_schema("cert-manager.io_certificates.yaml", "v1")


DNS_NAME = st.from_regex(r"\A(\*\.)?[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z0-9]{1,8}){0,3}\Z")
DURATION = st.sampled_from(["1h", "2160h", "90m", "1h30m", "8760h"])


@given(dns_names=st.lists(DNS_NAME, max_size=5), duration=st.none() | DURATION,
       renew_before=st.none() | DURATION, kind=st.sampled_from(["Issuer", "ClusterIssuer"]))
def test_every_rendered_certificate_passes_cert_managers_schema(
    schema: dict[str, Any], dns_names: list[str], duration: str | None, renew_before: str | None, kind: str,
) -> None:
    wanted: dict[str, Any] = {"issuerRef": {"name": "ca", "kind": kind}, "dnsNames": dns_names}
    if duration:
        wanted["duration"] = duration
    if renew_before:
        wanted["renewBefore"] = renew_before
    (cert,) = _certificates(_isvc(wanted))
    assert problems(cert, schema) == []
    assert len(cert["spec"]["dnsNames"]) == len(set(cert["spec"]["dnsNames"]))


def test_the_schema_check_can_fail(schema: dict[str, Any]) -> None:
    (cert,) = _certificates(_isvc({"issuerRef": ISSUER}))
    cert["spec"]["privateKey"]["rotationPolicy"] = "Sometimes"
    del cert["spec"]["issuerRef"]
    found = problems(cert, schema)
    assert any("rotationPolicy" in p for p in found) and any("issuerRef" in p for p in found), found
