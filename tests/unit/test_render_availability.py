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
