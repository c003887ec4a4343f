"""Reconciler.wants, .wrote and reconcile_later: which events of a service and its children
reconcile it, in which order and how many at once (controller/reconcile.py).

The operator is level-triggered: every event of a service is offered, and only one that changes
what a reconcile starts from may cost a reconcile. The reconcile here is the real one, with a
stand-in API client that answers writes with increasing resourceVersions (what is checked is the
bookkeeping, not the API server: the e2e suite runs the same code against a real one).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

from tests.support.operator_scenarios import make_isvc
from tritium.controller.reconcile import Reconciler, merge_patch


class RecordingClient:
    """Answers every write with the next resourceVersion; keeps the service's status as patched."""

    def __init__(self) -> None:
        self.version = 100
        self.status: dict[str, Any] = {}
        self.writes: list[str] = []
        self.applied: dict[tuple[str, str], str] = {}  # (kind, name) -> the resourceVersion answered

    def _next(self) -> str:
        self.version += 1
        return str(self.version)

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(f"apply {obj['kind']}")
        version = self.applied[(obj["kind"], obj["metadata"]["name"])] = self._next()
        return {**obj, "metadata": {**obj["metadata"], "resourceVersion": version}}

    async def patch_status(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.writes.append("status")
        self.status = _merged(self.status, patch)
        return {"metadata": {"resourceVersion": self._next()}, "status": self.status}

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(f"create {obj['kind']}")
        return obj

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return None


def _merged(old: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(old)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def service() -> dict[str, Any]:
    body = make_isvc("m", "ns")
    body["metadata"].update(uid="u-1", generation=1, resourceVersion="100")
    return body


async def reconciled() -> tuple[Reconciler, RecordingClient, dict[str, Any]]:
    """A reconcile of a new service, and the service as its status write's echo shows it."""
    client = RecordingClient()
    reconciler = Reconciler(client)  # type: ignore[arg-type]
    body = service()
    assert reconciler.wants(body), "never reconciled: any event counts"

    async def fetch() -> dict[str, Any]:
        return body

    await reconciler.reconcile_later(("ns", "m"), fetch=fetch, children=list, logger=logging.getLogger("t"))
    assert "status" in client.writes
    echo = copy.deepcopy(body)
    echo["metadata"]["resourceVersion"] = str(client.version)
    echo["status"] = copy.deepcopy(client.status)
    return reconciler, client, echo


async def test_the_echo_of_the_own_status_write_reconciles_nothing() -> None:
    reconciler, _, echo = await reconciled()
    assert not reconciler.wants(echo)
    older = copy.deepcopy(echo)
    older["metadata"]["resourceVersion"] = "101"  # an event from before the status write
    older["status"] = {}
    assert not reconciler.wants(older)


async def test_a_child_at_the_version_its_apply_left_is_the_echo_of_that_write() -> None:
    reconciler, client, _ = await reconciled()
    assert client.applied, "a new service's children were applied"
    for (kind, name), version in client.applied.items():
        assert reconciler.wrote("ns", kind, name, version)
        assert not reconciler.wrote("ns", kind, name, str(client.version + 1))  # changed after our write
        assert not reconciler.wrote("other", kind, name, version)
        assert not reconciler.wrote("ns", kind, name, "")
    (kind, name), version = next(iter(client.applied.items()))
    reconciler.forget_child("ns", kind, name)  # deleted: a child created again under its name is news
    assert not reconciler.wrote("ns", kind, name, version)


async def test_metadata_a_reconcile_ignores_reconciles_nothing() -> None:
    reconciler, client, echo = await reconciled()
    later = copy.deepcopy(echo)
    later["metadata"]["resourceVersion"] = str(client.version + 5)
    later["metadata"]["finalizers"] = []  # e.g. kopf removing an earlier version's finalizer
    later["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    later["status"]["kopf"] = {"progress": {}}  # earlier versions' bookkeeping is not ours
    assert not reconciler.wants(later)


async def test_spec_labels_annotations_and_a_new_object_reconcile() -> None:
    reconciler, client, echo = await reconciled()

    def changed(**meta: Any) -> dict[str, Any]:
        out = copy.deepcopy(echo)
        out["metadata"].update(meta, resourceVersion=str(client.version + 1))
        return out

    assert reconciler.wants(changed(generation=2))
    assert reconciler.wants(changed(annotations={"serving.tritium.dev/promote": "true"}))
    assert reconciler.wants(changed(labels={"team": "search"}))
    assert reconciler.wants(changed(uid="u-2")), "deleted and created again under the same name"


async def test_a_status_someone_else_wrote_reconciles() -> None:
    reconciler, client, echo = await reconciled()
    wiped = copy.deepcopy(echo)
    wiped["metadata"]["resourceVersion"] = str(client.version + 1)
    wiped["status"] = {}
    assert reconciler.wants(wiped)
    edited = copy.deepcopy(echo)
    edited["metadata"]["resourceVersion"] = str(client.version + 1)
    edited["status"]["phase"] = "Ready" if echo["status"].get("phase") != "Ready" else "Failed"
    assert reconciler.wants(edited)


async def test_a_reconcile_that_writes_no_status_still_settles() -> None:
    reconciler, client, echo = await reconciled()
    writes = len(client.writes)

    async def fetch() -> dict[str, Any]:
        return echo

    await reconciler.reconcile_later(("ns", "m"), fetch=fetch, children=list, logger=logging.getLogger("t"))
    assert "status" not in client.writes[writes:], "nothing changed: no status write"
    restarted = Reconciler(client)  # type: ignore[arg-type]  # a new process: nothing written by it yet
    await restarted.reconcile_later(("ns", "m"), fetch=fetch, children=list, logger=logging.getLogger("t"))
    later = copy.deepcopy(echo)
    later["metadata"]["resourceVersion"] = str(client.version + 3)
    assert not restarted.wants(later), "the status it found is the status it would write"


def test_merge_patch_helper_agrees() -> None:
    old = {"phase": "Progressing", "rollout": {"phase": "Canary", "since": "t"}}
    new = {"phase": "Ready", "rollout": {"phase": "Promoted"}}
    assert _merged(old, merge_patch(old, new)) == new


async def test_a_spec_is_parsed_once_per_generation(monkeypatch: Any) -> None:
    from tritium.controller import reconcile

    parsed: list[int] = []
    real = reconcile._parse

    def counting(body: dict[str, Any]) -> Any:
        parsed.append(body["metadata"]["generation"])
        return real(body)

    monkeypatch.setattr(reconcile, "_parse", counting)
    reconciler, client, echo = await reconciled()
    bodies = [echo, copy.deepcopy(echo)]
    bodies[1]["metadata"]["resourceVersion"] = str(client.version + 1)  # e.g. after a child's change
    changed = copy.deepcopy(echo)
    changed["metadata"]["generation"] = 2
    changed["spec"]["model"]["maxBatchSize"] = 16
    for body in [*bodies, changed]:
        async def fetch(b: dict[str, Any] = body) -> dict[str, Any]:
            return b

        await reconciler.reconcile_later(("ns", "m"), fetch=fetch, children=list, logger=logging.getLogger("t"))
    assert parsed == [1, 2], "parsed for the first reconcile and for the new generation only"


# --- a child's echo waits for the services being created or edited ----------------------------


def named(name: str) -> dict[str, Any]:
    body = service()
    body["metadata"]["name"] = name
    return body


def later(reconciler: Reconciler, name: str, fetch: Any, deferrable: bool = False) -> Any:
    """reconcile_later of service ns/NAME, as the handlers call it."""
    return reconciler.reconcile_later(("ns", name), fetch=fetch, children=list, logger=logging.getLogger("t"),
                                      deferrable=deferrable)


async def test_a_childs_change_waits_while_a_service_change_is_pending() -> None:
    """What people wait for (a new or edited service) goes first; a child's echo takes its turn after."""
    reconciler = Reconciler(RecordingClient())  # type: ignore[arg-type]
    release = asyncio.Event()
    fetched: list[str] = []

    async def blocked_fetch() -> dict[str, Any]:
        fetched.append("a")
        await release.wait()
        return service()

    async def child_fetch() -> dict[str, Any]:
        fetched.append("b")
        return named("b")

    first = asyncio.create_task(later(reconciler, "m", blocked_fetch))
    await asyncio.sleep(0)
    echo = asyncio.create_task(later(reconciler, "b", child_fetch, deferrable=True))
    await asyncio.sleep(0.05)
    assert fetched == ["a"], "the child's reconcile waits"
    release.set()
    await asyncio.gather(first, echo)
    assert fetched == ["a", "b"]


async def test_the_wait_is_bounded(monkeypatch: Any) -> None:
    from tritium.controller import reconcile

    monkeypatch.setattr(reconcile, "DEFER_SECONDS", 0.05)
    reconciler = Reconciler(RecordingClient())  # type: ignore[arg-type]
    never = asyncio.Event()

    async def stuck() -> dict[str, Any]:
        await never.wait()
        return service()

    async def other() -> dict[str, Any]:
        return named("b")

    first = asyncio.create_task(later(reconciler, "m", stuck))
    await asyncio.sleep(0)
    await asyncio.wait_for(later(reconciler, "b", other, deferrable=True), timeout=2)
    first.cancel()


async def test_a_childs_change_a_later_reconcile_covered_is_skipped() -> None:
    reconciler = Reconciler(RecordingClient())  # type: ignore[arg-type]
    release = asyncio.Event()
    fetched: list[str] = []

    async def elsewhere() -> dict[str, Any]:
        await release.wait()
        return named("x")

    async def fetch() -> dict[str, Any]:
        fetched.append("m")
        return service()

    busy = asyncio.create_task(later(reconciler, "x", elsewhere))
    await asyncio.sleep(0)
    echo = asyncio.create_task(later(reconciler, "m", fetch, deferrable=True))
    await asyncio.sleep(0.01)
    await later(reconciler, "m", fetch)  # the service changed
    assert fetched == ["m"]
    release.set()
    await asyncio.gather(busy, echo)
    assert fetched == ["m"], "the reconcile after the service's change saw the child's change too"


# --- at most RECONCILE_SLOTS reconciles at once -----------------------------------------------


async def test_no_more_than_the_slots_reconcile_at_once(monkeypatch: Any) -> None:
    from tritium.controller import reconcile

    monkeypatch.setattr(reconcile, "RECONCILE_SLOTS", 3)
    reconciler = Reconciler(RecordingClient())  # type: ignore[arg-type]
    release = asyncio.Event()
    began: list[str] = []

    def blocked(name: str) -> Any:
        async def fetch() -> dict[str, Any]:
            began.append(name)
            await release.wait()
            return named(name)
        return fetch

    tasks = [asyncio.create_task(later(reconciler, f"s{i}", blocked(f"s{i}"))) for i in range(9)]
    await asyncio.sleep(0.05)
    assert began == ["s0", "s1", "s2"], "three slots: the others wait, in the order they came"
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    assert sorted(began) == sorted(f"s{i}" for i in range(9)), "every one ran once a slot was free"


async def test_a_trigger_waiting_for_a_slot_collapses_the_next(monkeypatch: Any) -> None:
    from tritium.controller import reconcile

    monkeypatch.setattr(reconcile, "RECONCILE_SLOTS", 1)
    reconciler = Reconciler(RecordingClient())  # type: ignore[arg-type]
    release = asyncio.Event()
    fetched: list[str] = []

    async def busy() -> dict[str, Any]:
        await release.wait()
        return named("x")

    async def fetch() -> dict[str, Any]:
        fetched.append("m")
        return service()

    holder = asyncio.create_task(later(reconciler, "x", busy))
    await asyncio.sleep(0)
    waiting = asyncio.create_task(later(reconciler, "m", fetch))
    await asyncio.sleep(0.01)
    await later(reconciler, "m", fetch)  # arrives while the first waits for the slot: nothing to add
    assert fetched == []
    release.set()
    await asyncio.wait_for(asyncio.gather(holder, waiting), timeout=5)
    assert fetched == ["m"], "one reconcile, after both triggers"
