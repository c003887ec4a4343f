"""High availability children: the per-revision PodDisruptionBudget and the pods' spread."""

from __future__ import annotations

from typing import Any

from tests.support.k8s_schema import validate_strict
from tests.support.specs import manifest
from tritium.api.resource import parse_inference_service
from tritium.render import render_children
from tritium.render.metadata import LABEL_REVISION

REVISION = "0123456789"


def _children(patch: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    objs = render_children(parse_inference_service(manifest(patch or {})), REVISION)
    return {o["kind"]: o for o in objs}


def test_one_pdb_per_revision_selects_exactly_its_pods() -> None:
    children = _children()
    pdb, deployment = children["PodDisruptionBudget"], children["Deployment"]
    assert pdb["metadata"]["name"] == deployment["metadata"]["name"]
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert deployment["spec"]["selector"]["matchLabels"][LABEL_REVISION] == REVISION
    assert pdb["spec"]["maxUnavailable"] == 1, "a drain takes one pod at a time and is never blocked for good"
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert validate_strict(pdb) is not None


def test_pods_spread_softly_over_zones_then_nodes() -> None:
    pod = _children()["Deployment"]["spec"]["template"]["spec"]
    spread = pod["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in spread] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    assert all(c["whenUnsatisfiable"] == "ScheduleAnyway" and c["maxSkew"] == 1 for c in spread)
    labels = _children()["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for c in spread:
        assert all(labels[k] == v for k, v in c["labelSelector"]["matchLabels"].items()), "it selects its own pods"


def test_gpu_placement_from_the_spec_is_kept() -> None:
    pod = _children({"runtime": {"nodeSelector": {"nvidia.com/gpu.product": "A100"}, "resources": {"gpu": 1},
                                 "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]}}
                    )["Deployment"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "A100"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"


def _pod(patch: dict[str, Any] | None = None) -> dict[str, Any]:
    return _children(patch)["Deployment"]["spec"]["template"]["spec"]


def test_a_failed_pod_leaves_the_endpoints_within_5_seconds() -> None:
    """Readiness of every container fails within periodSeconds x failureThreshold + timeoutSeconds."""
    pod = _pod({"preprocess": {"builtin": {"format": "json"}}})
    for container in pod["containers"]:
        probe = container["readinessProbe"]
        worst = probe["periodSeconds"] * probe["failureThreshold"] + probe["timeoutSeconds"]
        assert worst <= 5, (container["name"], probe)


def test_a_stopping_pod_answers_what_it_accepted() -> None:
    """preStop: the gateway serves while the pod leaves the endpoints, then drains; the backends it
    calls stop only after that; the grace period covers the backends' wait and Triton's exit."""
    from tritium import pod_layout as L
    from tritium.render.deployment import GATEWAY_DRAIN

    pod = _pod({"preprocess": {"builtin": {"format": "json"}}})
    by_name = {c["name"]: c for c in pod["containers"]}
    wait = {name: c["lifecycle"]["preStop"]["sleep"]["seconds"] for name, c in by_name.items()}
    gateway = wait.pop(L.GATEWAY_CONTAINER)
    assert gateway >= 5 > 0
    assert all(w >= gateway + GATEWAY_DRAIN for w in wait.values()), wait
    assert f"--exit-timeout-secs={L.TRITON_EXIT_TIMEOUT}" in by_name[L.TRITON_CONTAINER]["command"]
    assert pod["terminationGracePeriodSeconds"] > max(wait.values()) + L.TRITON_EXIT_TIMEOUT
    assert validate_strict(_children()["Deployment"]) is not None
