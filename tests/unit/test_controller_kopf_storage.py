"""kopf's diff base is switched off (controller/kopf_storage.py): safe only while no handler kopf
would compare it for is registered, which is what this checks."""

from __future__ import annotations

import kopf

from tritium.controller import handlers
from tritium.controller.kopf_storage import NoDiffBaseStorage


def test_no_handler_needs_a_diff_base() -> None:
    registry = kopf.get_default_registry()
    assert handlers.service_changed is not None  # imported: the operator's handlers are registered
    assert list(registry._changing.get_all_handlers()) == [], "change handlers compare the diff base"
    assert list(registry._spawning.get_all_handlers()) == [], "daemons and timers reset on its diff"
    assert list(registry._watching.get_all_handlers()), "the operator's event handlers are registered"


def test_the_storage_builds_and_keeps_nothing() -> None:
    storage = NoDiffBaseStorage()
    body = kopf.Body({"metadata": {"name": "m", "annotations": {"a": "b"}}, "spec": {"x": 1}})
    assert storage.build(body=body) == {}
    assert storage.fetch(body=body) is None
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence={"spec": {"x": 1}})
    assert not patch
