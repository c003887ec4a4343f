"""EventRecorder (controller/events.py): an Event is posted once, and waits while others wait.

The client here records what it is asked to create: what is checked is when the recorder asks,
not the API server (the e2e suite checks the Events a real one holds).
"""

from __future__ import annotations

import asyncio
from typing import Any

from tritium.controller.events import EventRecorder


class Recording:
    def __init__(self) -> None:
        self.created: list[str] = []

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.created.append(obj["reason"])
        return obj


SERVICE = {"metadata": {"name": "m", "namespace": "ns", "uid": "u-1", "resourceVersion": "7"}}


async def test_posted_once_per_object_reason_and_message() -> None:
    client = Recording()
    recorder = EventRecorder(client)  # type: ignore[arg-type]
    for _ in range(3):
        await recorder.post(SERVICE, "Normal", "RevisionCreated", "revision a created")
    await recorder.post(SERVICE, "Normal", "RevisionCreated", "revision b created")
    assert client.created == ["RevisionCreated", "RevisionCreated"]


async def test_while_others_wait_an_event_is_posted_once_they_are_through() -> None:
    client = Recording()
    recorder = EventRecorder(client)  # type: ignore[arg-type]
    through = asyncio.Event()
    recorder.busy = lambda: not through.is_set()
    recorder.idle = through.wait
    await recorder.post(SERVICE, "Normal", "RevisionCreated", "revision a created")
    await asyncio.sleep(0.02)
    assert client.created == [], "not while others wait"
    through.set()
    await asyncio.sleep(0.02)
    assert client.created == ["RevisionCreated"]


async def test_the_wait_is_bounded() -> None:
    client = Recording()
    recorder = EventRecorder(client)  # type: ignore[arg-type]
    recorder.busy = lambda: True
    recorder.idle = asyncio.Event().wait  # never
    recorder.defer_seconds = 0.05
    await recorder.post(SERVICE, "Warning", "DriftCorrected", "put back")
    await asyncio.sleep(0.2)
    assert client.created == ["DriftCorrected"]
