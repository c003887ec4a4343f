"""The "restricted" Pod Security Standard checker itself: each control refuses what it must.

The renderer tests (test_render.py, test_chart.py) assert that every pod has no violation; that
is only worth something if each control can fail. Each mutation below breaks one control on a
rendered, compliant pod; the named control must report it. tests/e2e/test_pod_security_admission.py shows
that kube-apiserver's PodSecurity admission refuses the same mutations.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.support.pod_security import CONTROLS, MUTATIONS, restricted_violations
from tests.support.specs import VARIANTS, manifest
from tritium.api.resource import parse_inference_service
from tritium.render import render_children


def rendered_pod(patch: dict[str, Any] | None = None) -> dict[str, Any]:
    children = render_children(parse_inference_service(manifest(patch)))
    (deployment,) = [c for c in children if c["kind"] == "Deployment"]
    return copy.deepcopy(deployment["spec"]["template"]["spec"])


def test_every_control_has_a_mutation() -> None:
    assert set(MUTATIONS) == set(CONTROLS)


@pytest.mark.parametrize("control", sorted(CONTROLS))
def test_each_mutation_is_caught_by_its_control(control: str) -> None:
    pod = rendered_pod()
    assert restricted_violations(pod) == []
    MUTATIONS[control](pod)
    found = list(CONTROLS[control](pod, {}))
    assert found, f"{control} did not notice its mutation"
    assert all(v.startswith(("spec.", "metadata.")) for v in found)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variants_are_compliant(variant: str) -> None:
    assert restricted_violations(rendered_pod(VARIANTS[variant])) == []


def test_pod_level_settings_cover_containers_and_container_level_overrides_count() -> None:
    pod = {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
           "containers": [{"name": "a", "securityContext": {
               "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}]}
    assert restricted_violations(pod) == []
    pod["containers"][0]["securityContext"]["seccompProfile"] = {"type": "Unconfined"}
    assert restricted_violations(pod) == [
        "spec.containers[0].securityContext.seccompProfile.type: Unconfined is not allowed"]
    del pod["containers"][0]["securityContext"]["seccompProfile"]
    del pod["securityContext"]["seccompProfile"]
    assert restricted_violations(pod) == [
        "spec.containers[0].securityContext.seccompProfile: must be RuntimeDefault or Localhost (here or in the pod)"]


def test_allowed_values_are_not_flagged() -> None:
    pod = rendered_pod()
    sc = pod["containers"][0]["securityContext"]
    sc["capabilities"] = {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    sc["seLinuxOptions"] = {"type": "container_t", "level": "s0:c1,c2"}
    sc["procMount"] = "Default"
    sc["appArmorProfile"] = {"type": "RuntimeDefault"}
    pod["securityContext"]["sysctls"] = [{"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"}]
    pod["volumes"].append({"name": "pvc", "persistentVolumeClaim": {"claimName": "models"}})
    annotations = {"container.apparmor.security.beta.kubernetes.io/gateway": "runtime/default"}
    assert restricted_violations(pod, annotations) == []
    annotations["container.apparmor.security.beta.kubernetes.io/gateway"] = "unconfined"
    assert restricted_violations(pod, annotations) == [
        "metadata.annotations[container.apparmor.security.beta.kubernetes.io/gateway]: unconfined is not allowed"]
