"""Every spec of tests/data/invalid-specs.yaml, applied to a Ready service on the real API server.

The API server accepts each (its schema and CEL cannot judge them); the operator must report
Ready=False / InvalidSpec naming the field, for that generation, and leave the running
Deployment exactly as it was; put back, the service is Ready again. One service goes through the
whole catalogue, as a user fixing mistakes one after another would.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from tests.support.operator_scenarios import (
    children,
    condition,
    create,
    get_isvc,
    make_isvc,
    patch_spec,
    wait_status,
)
from tests.support.specs import ROOT
from tritium.controller.kube import KubeClient

CATALOGUE = ROOT / "tests" / "data" / "invalid-specs.yaml"
READY_TIMEOUT = 60


def ready_at(generation: int):  # type: ignore[no-untyped-def]
    def check(obj: dict[str, Any] | None) -> bool:
        cond = condition(obj, "Ready")
        return (obj is not None and cond.get("status") == "True" and obj["status"].get("phase") == "Ready"
                and obj["status"].get("observedGeneration") == generation)
    return check


def refused_at(generation: int):  # type: ignore[no-untyped-def]
    def check(obj: dict[str, Any] | None) -> bool:
        cond = condition(obj, "Ready")
        return (obj is not None and cond.get("reason") == "InvalidSpec"
                and obj["status"].get("observedGeneration") == generation)
    return check


def undo(patch: Any, original: Any) -> Any:
    """The merge patch that puts back what `patch` changed in `original` (null: was not there)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(original)
    out: dict[str, Any] = {}
    for key, value in patch.items():
        if not isinstance(original, dict) or key not in original:
            out[key] = None
        elif isinstance(value, dict) and isinstance(original[key], dict):
            out[key] = undo(value, original[key])
        else:
            out[key] = copy.deepcopy(original[key])
    return out


async def deployments(api: KubeClient, namespace: str, name: str) -> dict[str, tuple[str, Any]]:
    return {d["metadata"]["name"]: (d["metadata"]["resourceVersion"], d["spec"])
            for d in await children(api, namespace, name, "Deployment")}


async def test_each_invalid_spec_is_reported_and_the_running_revision_untouched(
        api: KubeClient, namespace: str, operator: None) -> None:
    name = "catalogue"
    await create(api, make_isvc(name, namespace))
    obj = await wait_status(api, namespace, name, ready_at(1), timeout=READY_TIMEOUT)
    spec = obj["spec"]
    running = await deployments(api, namespace, name)
    assert len(running) == 1

    for entry in yaml.safe_load(CATALOGUE.read_text()):
        await patch_spec(api, namespace, name, entry["spec"])
        generation = (await get_isvc(api, namespace, name) or {})["metadata"]["generation"]
        obj = await wait_status(api, namespace, name, refused_at(generation), timeout=30)
        message = condition(obj, "Ready")["message"]
        assert message.startswith(entry["field"]) and entry["says"] in message, (entry["name"], message)
        assert obj["status"]["phase"] == "Degraded", (entry["name"], "the old revision still serves")
        assert await deployments(api, namespace, name) == running, (entry["name"], "the Deployment was touched")

        await patch_spec(api, namespace, name, undo(entry["spec"], spec))
        current = await get_isvc(api, namespace, name) or {}
        assert current["spec"] == spec, (entry["name"], "the undo patch did not restore the spec")
        await wait_status(api, namespace, name, ready_at(current["metadata"]["generation"]), timeout=READY_TIMEOUT)
        assert await deployments(api, namespace, name) == running, (entry["name"], "putting it back rewrote it")
