"""Pod Security Standard "restricted", as kube-apiserver's PodSecurity admission enforces it.

Every pod Tritium renders (each example and each variant that switches an optional part on) and
the operator's own pod from deploy/install.yaml are created, as server-side dry runs, in a
namespace labelled `pod-security.kubernetes.io/enforce: restricted`: the server must admit them.
One mutation per control of tests/support/pod_security.py must be refused by the same admission,
so the server is shown to be enforcing, and the unit-tested checker and the server agree.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import Kube
from tests.support.cluster import ROOT
from tests.support.pod_security import MUTATIONS, restricted_violations
from tests.support.specs import VARIANTS, example_paths, load_example, manifest
from tritium.api.resource import parse_inference_service
from tritium.controller.kube import ApiError, KubeClient
from tritium.render import render_children

CASES: dict[str, dict[str, Any]] = {
    **{p.name: load_example(p) for p in example_paths()},
    **{f"variant-{name}": manifest(patch) for name, patch in VARIANTS.items()},
}
# Mutations the API server's own validation refuses before admission is asked (a Windows
# host-process pod must also use the host network and be Windows); the unit tests cover them.
REFUSED_BY_VALIDATION = {"host_process"}


@pytest.fixture(scope="module")
def restricted_namespace(kube: Kube) -> Iterator[str]:
    name = f"tritium-e2e-pss-{secrets.token_hex(2)}"
    kube.kubectl("create", "namespace", name)
    kube.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted",
                 "pod-security.kubernetes.io/enforce-version=latest")
    try:
        yield name
    finally:
        kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


def template_of(case: dict[str, Any]) -> dict[str, Any]:
    children = render_children(parse_inference_service(case))
    (deployment,) = [c for c in children if c["kind"] == "Deployment"]
    return copy.deepcopy(deployment["spec"]["template"])


def operator_template() -> dict[str, Any]:
    docs = yaml.safe_load_all((ROOT / "deploy" / "install.yaml").read_text())
    (deployment,) = [d for d in docs if d and d["kind"] == "Deployment"]
    return copy.deepcopy(deployment["spec"]["template"])


async def dry_run_pod(api: KubeClient, namespace: str, template: dict[str, Any]) -> dict[str, Any]:
    metadata = {"name": f"pss-{secrets.token_hex(3)}", "annotations": template["metadata"].get("annotations") or {}}
    # The ServiceAccount admission would look the pod's account up first; the standard ignores it.
    spec = {k: v for k, v in template["spec"].items() if k != "serviceAccountName"}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
    return await api._request("POST", f"/api/v1/namespaces/{namespace}/pods", params={"dryRun": "All"}, body=pod)


@pytest.mark.parametrize("name", sorted(CASES))
async def test_rendered_pods_are_admitted(api: KubeClient, restricted_namespace: str, name: str) -> None:
    template = template_of(CASES[name])
    assert restricted_violations(template["spec"], template["metadata"].get("annotations")) == []
    admitted = await dry_run_pod(api, restricted_namespace, template)
    assert admitted["metadata"]["namespace"] == restricted_namespace


async def test_operator_pod_is_admitted(api: KubeClient, restricted_namespace: str) -> None:
    template = operator_template()
    assert restricted_violations(template["spec"], template["metadata"].get("annotations")) == []
    await dry_run_pod(api, restricted_namespace, template)


@pytest.mark.parametrize("control", sorted(set(MUTATIONS) - REFUSED_BY_VALIDATION))
async def test_each_broken_control_is_refused_by_the_server(
        api: KubeClient, restricted_namespace: str, control: str) -> None:
    template = template_of(manifest())
    MUTATIONS[control](template["spec"])
    assert restricted_violations(template["spec"]), f"the checker misses {control}"
    with pytest.raises(ApiError) as refused:
        await dry_run_pod(api, restricted_namespace, template)
    assert refused.value.status == 403, refused.value.message
    assert 'violates PodSecurity "restricted:latest"' in refused.value.message


@pytest.mark.parametrize("control", sorted(REFUSED_BY_VALIDATION))
async def test_mutations_the_server_refuses_earlier(api: KubeClient, restricted_namespace: str, control: str) -> None:
    template = template_of(manifest())
    MUTATIONS[control](template["spec"])
    with pytest.raises(ApiError) as refused:
        await dry_run_pod(api, restricted_namespace, template)
    assert refused.value.status in (403, 422), refused.value.message
