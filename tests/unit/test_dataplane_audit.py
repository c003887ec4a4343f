"""The audit log's writes: batched within FLUSH_SECONDS in a running gateway, never lost at close;
its timestamps."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime

from tritium.api.spec import AuditSpec
from tritium.dataplane.http.server import Request
from tritium.dataplane.security.audit import FLUSH_SECONDS, AuditLog, Clock


class CountingStream(io.StringIO):
    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def request(rid: str) -> Request:
    req = Request("POST", "/v2/models/add/infer", "", {"content-type": "application/json"}, b'{"inputs": []}')
    req.state, req.match_info = {"X-Request-Id": rid}, {}
    return req


def record(log: AuditLog, rid: str) -> None:
    log.record(request(rid), endpoint="infer", model="add", status=200, seconds=0.001, key_id=None,
               client="127.0.0.1", cache=None)


async def test_records_go_out_together_within_the_flush_interval() -> None:
    stream = CountingStream()
    log = AuditLog(AuditSpec(enabled=True), "r1", stream=stream)
    for i in range(5):
        record(log, f"req-{i}")
    assert stream.getvalue() == ""  # not yet: one write for the batch
    await asyncio.sleep(FLUSH_SECONDS * 4)
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == [f"req-{i}" for i in range(5)]
    assert stream.writes == 1
    record(log, "req-5")  # a new batch, a new timer
    await asyncio.sleep(FLUSH_SECONDS * 4)
    assert stream.writes == 2 and json.loads(stream.getvalue().splitlines()[-1])["request_id"] == "req-5"


async def test_close_writes_what_is_left() -> None:
    stream = CountingStream()
    log = AuditLog(AuditSpec(enabled=True), "r1", stream=stream)
    record(log, "last")
    log.close()
    assert json.loads(stream.getvalue())["request_id"] == "last"


def test_without_an_event_loop_each_record_is_written_at_once() -> None:
    stream = CountingStream()
    log = AuditLog(AuditSpec(enabled=True), "r1", stream=stream)
    record(log, "sync")
    assert json.loads(stream.getvalue())["request_id"] == "sync"


def test_clock_is_utc_to_the_millisecond(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    for now in (1_796_300_709.0, 1_796_300_709.1234, 1_796_300_709.9999, 1_796_300_710.0005, 1_796_387_199.999):
        monkeypatch.setattr("tritium.dataplane.security.audit.time.time", lambda now=now: now)
        expected = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z"
        assert clock.now() == expected
