"""The framed, multiplexed gateway -> stage hop (stage_wire), over real Unix sockets."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tritium.dataplane.http import stage_wire
from tritium.dataplane.http.stage_wire import StageWireClient, StageWireError, serve_wire


@pytest.fixture
def sock_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory short enough for AF_UNIX paths (about 107 bytes)."""
    if len(str(tmp_path)) < 60:
        yield tmp_path
        return
    short = Path(tempfile.mkdtemp(dir="/tmp", prefix="wire"))
    try:
        yield short
    finally:
        shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[stage_wire._ServerConnection]:
    """Every server-side connection made during the test, in order."""
    seen: list[stage_wire._ServerConnection] = []
    made = stage_wire._ServerConnection.connection_made

    def record(self: stage_wire._ServerConnection, transport: asyncio.BaseTransport) -> None:
        seen.append(self)
        made(self, transport)

    monkeypatch.setattr(stage_wire._ServerConnection, "connection_made", record)
    return seen


async def _echo(body: bytes, header_length: int, request_id: str, timeout: float) -> tuple[int, bytes, int]:
    if body == b"boom":
        raise RuntimeError("handler bug")
    if body.startswith(b"sleep "):
        await asyncio.sleep(float(body.split()[1]))
    return 200, body, header_length


async def _call(client: StageWireClient, body: bytes, header_length: int, *, request_id: str,
                timeout: float) -> tuple[int, bytes, int]:
    """A bounded call: a broken implementation fails the test instead of hanging it."""
    async with asyncio.timeout(10):
        return await client.call(body, header_length, request_id=request_id, timeout=timeout)


@pytest.fixture(params=[False, True], ids=["tasks", "eager"])
async def served(sock_dir: Path, request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, StageWireClient]]:
    """An echo server, handlers in tasks or started eagerly (every test below runs with both)."""
    path = str(sock_dir / "s.sock")
    server = await serve_wire(_echo, path, eager=request.param)
    client = StageWireClient(path)
    try:
        yield path, client
    finally:
        await client.close()
        await asyncio.sleep(0.01)  # let the server see the close and cancel its handlers
        server.close()
        await server.wait_closed()


async def test_round_trip_passes_every_field(sock_dir: Path) -> None:
    seen: list[tuple[bytes, int, str, float]] = []

    async def handler(body: bytes, header_length: int, request_id: str, timeout: float) -> tuple[int, bytes, int]:
        seen.append((body, header_length, request_id, timeout))
        return 201, body[::-1], header_length + 1

    path = str(sock_dir / "s.sock")
    server = await serve_wire(handler, path)
    client = StageWireClient(path)
    try:
        assert await _call(client, b"abc\x00def", 3, request_id="r-\u00e9-1", timeout=2.5) == (201, b"fed\x00cba", 4)
        assert seen == [(b"abc\x00def", 3, "r-\u00e9-1", 2.5)]
        assert await _call(client, b"", 0, request_id="", timeout=0.001) == (201, b"", 1)
        assert seen[-1] == (b"", 0, "", 0.001)
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


async def test_concurrent_calls_share_one_connection_and_get_their_own_answers(
        served: tuple[str, StageWireClient], connections: list[stage_wire._ServerConnection]) -> None:
    _, client = served
    n = 200
    # Later calls sleep less, so answers come back in a different order than the calls went out.
    bodies = [b"sleep %.4f %d " % ((n - i) * 0.0002 + random.random() * 0.002, i) + os.urandom(i) for i in range(n)]
    results = await asyncio.gather(*(_call(client, b, i, request_id=f"r{i}", timeout=5) for i, b in enumerate(bodies)))
    assert results == [(200, b, i) for i, b in enumerate(bodies)]
    assert len(connections) == 1 and client.connects == 1
    assert client._conn is not None and client._conn.pending == {}


async def test_calls_started_together_are_coalesced(
        served: tuple[str, StageWireClient], connections: list[stage_wire._ServerConnection],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, client = served
    assert await _call(client, b"warm", 0, request_id="w", timeout=1) == (200, b"warm", 0)
    reads = 0
    received = stage_wire._ServerConnection.data_received

    def count(self: stage_wire._ServerConnection, data: bytes) -> None:
        nonlocal reads
        reads += 1
        received(self, data)

    monkeypatch.setattr(stage_wire._ServerConnection, "data_received", count)
    writes = client.writes
    results = await asyncio.gather(*(_call(client, b"x%d" % i, 0, request_id="r", timeout=1) for i in range(50)))
    assert [body for _, body, _ in results] == [b"x%d" % i for i in range(50)]
    # The first call found nothing in flight and left at once; the other 49 in one writelines.
    assert client.writes - writes == 2
    assert reads <= 5  # and the stage read them in one or a few recvs, not fifty
    assert len(connections) == 1


async def test_concurrent_first_calls_share_one_connect(
        served: tuple[str, StageWireClient], connections: list[stage_wire._ServerConnection]) -> None:
    _, client = served
    results = await asyncio.gather(*(_call(client, b"%d" % i, 0, request_id="r", timeout=1) for i in range(20)))
    assert [body for _, body, _ in results] == [b"%d" % i for i in range(20)]
    assert client.connects == 1 and len(connections) == 1


async def test_large_body_round_trip(served: tuple[str, StageWireClient]) -> None:
    _, client = served
    body = os.urandom(8 << 20)
    small = _call(client, b"small", 1, request_id="s", timeout=5)
    status, echoed, header_length = await _call(client, body, 7, request_id="big", timeout=5)
    assert (status, header_length) == (200, 7) and echoed == body
    assert await small == (200, b"small", 1)


async def test_handler_exception_is_a_500_and_the_connection_survives(
        served: tuple[str, StageWireClient], connections: list[stage_wire._ServerConnection],
        caplog: pytest.LogCaptureFixture) -> None:
    _, client = served
    status, body, header_length = await _call(client, b"boom", 5, request_id="r-boom", timeout=1)
    assert (status, header_length) == (500, 0)
    assert json.loads(body) == {"error": {"code": "stage_error", "message": "internal error"}}
    assert any("r-boom" in r.getMessage() and r.name == "tritium.stage.wire" for r in caplog.records)
    assert await _call(client, b"ok", 2, request_id="r", timeout=1) == (200, b"ok", 2)
    assert len(connections) == 1


async def test_a_cancelled_call_leaves_the_connection_usable(
        served: tuple[str, StageWireClient], connections: list[stage_wire._ServerConnection]) -> None:
    _, client = served
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(_call(client, b"sleep 0.2 late", 0, request_id="slow", timeout=0.05), 0.05)
    assert client._conn is not None and client._conn.pending == {}
    # The next calls get their own answers: one before the late answer arrives, one waiting while it
    # arrives (and is dropped), one after.
    waiting = asyncio.ensure_future(_call(client, b"sleep 0.3 mine", 3, request_id="m", timeout=1))
    assert await _call(client, b"next", 1, request_id="n", timeout=1) == (200, b"next", 1)
    assert await waiting == (200, b"sleep 0.3 mine", 3)
    assert await _call(client, b"after", 2, request_id="a", timeout=1) == (200, b"after", 2)
    assert len(connections) == 1 and client.connects == 1


async def test_server_gone_mid_call_fails_and_a_restart_is_reconnected(
        sock_dir: Path, connections: list[stage_wire._ServerConnection]) -> None:
    path = str(sock_dir / "s.sock")
    server = await serve_wire(_echo, path)
    client = StageWireClient(path)
    try:
        assert await _call(client, b"one", 0, request_id="r", timeout=1) == (200, b"one", 0)
        call = asyncio.ensure_future(_call(client, b"sleep 5", 0, request_id="r", timeout=5))
        await asyncio.sleep(0.05)
        server.close()
        for conn in connections:
            assert conn.transport is not None
            conn.transport.abort()  # the stage process died
        await server.wait_closed()
        with pytest.raises(StageWireError, match="closed"):
            await asyncio.wait_for(call, 2)
        with pytest.raises(StageWireError, match=f"cannot connect to {path}"):
            await _call(client, b"x", 0, request_id="r", timeout=1)
        server = await serve_wire(_echo, path)  # restarted: same path, the old socket file is replaced
        assert await _call(client, b"two", 0, request_id="r", timeout=1) == (200, b"two", 0)
        assert client.connects == 2 and len(connections) == 2
    finally:
        await client.close()
        await asyncio.sleep(0.01)
        server.close()
        await server.wait_closed()


async def test_no_server_names_the_path(sock_dir: Path) -> None:
    path = str(sock_dir / "absent.sock")
    client = StageWireClient(path)
    with pytest.raises(StageWireError, match=f"cannot connect to {path}"):
        await _call(client, b"x", 0, request_id="r", timeout=1)
    # and concurrent callers all see the error of one attempt
    errors = await asyncio.gather(*(_call(client, b"x", 0, request_id="r", timeout=1) for _ in range(3)),
                                  return_exceptions=True)
    assert all(isinstance(e, StageWireError) for e in errors)
    await client.close()


async def test_a_stale_socket_file_is_replaced(sock_dir: Path) -> None:
    path = str(sock_dir / "s.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)  # what a killed stage leaves behind
    stale.close()
    server = await serve_wire(_echo, path)
    client = StageWireClient(path)
    try:
        assert await _call(client, b"hi", 0, request_id="r", timeout=1) == (200, b"hi", 0)
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
    regular = sock_dir / "file"
    regular.write_text("not a socket")
    with pytest.raises(OSError):
        await serve_wire(_echo, str(regular))  # only a socket is removed
    assert regular.read_text() == "not a socket"


async def test_an_oversized_frame_closes_that_connection_only(
        sock_dir: Path, connections: list[stage_wire._ServerConnection]) -> None:
    path = str(sock_dir / "s.sock")
    server = await serve_wire(_echo, path, max_frame=1 << 20)
    client = StageWireClient(path)
    other = StageWireClient(path)
    try:
        assert await _call(other, b"before", 0, request_id="r", timeout=1) == (200, b"before", 0)
        with pytest.raises(StageWireError, match="closed"):
            await asyncio.wait_for(_call(client, b"y" * (2 << 20), 0, request_id="big", timeout=1), 2)
        assert await _call(other, b"still", 0, request_id="r", timeout=1) == (200, b"still", 0)
        assert await _call(client, b"again", 0, request_id="r", timeout=1) == (200, b"again", 0)  # reconnected
        assert client.connects == 2 and len(connections) == 3
    finally:
        await client.close()
        await other.close()
        await asyncio.sleep(0.01)
        server.close()
        await server.wait_closed()


async def test_a_malformed_frame_closes_the_connection(
        sock_dir: Path, connections: list[stage_wire._ServerConnection]) -> None:
    path = str(sock_dir / "s.sock")
    server = await serve_wire(_echo, path)
    try:
        reader, writer = await asyncio.open_unix_connection(path)
        # a request id longer than the frame that carries it
        frame = stage_wire._REQUEST.pack(stage_wire._REQUEST.size - 4 + 2, 1, 0, 1.0, 500) + b"ab"
        writer.write(frame)
        assert await asyncio.wait_for(reader.read(), 2) == b""  # closed without an answer
        writer.close()
        # a frame split across many writes is still answered
        reader, writer = await asyncio.open_unix_connection(path)
        frame = stage_wire._REQUEST.pack(stage_wire._REQUEST.size - 4 + 1 + 3, 9, 4, 1.0, 1) + b"rxyz"
        for i in range(len(frame)):
            writer.write(frame[i:i + 1])
            await writer.drain()
            await asyncio.sleep(0)
        head = await asyncio.wait_for(reader.readexactly(stage_wire._RESPONSE.size), 2)
        assert stage_wire._RESPONSE.unpack(head) == (stage_wire._RESPONSE.size - 4 + 3, 9, 200, 4)
        assert await reader.readexactly(3) == b"xyz"
        writer.close()
        assert len(connections) == 2
    finally:
        await asyncio.sleep(0.01)
        server.close()
        await server.wait_closed()


async def test_close_fails_pending_calls_and_a_later_call_reconnects(served: tuple[str, StageWireClient]) -> None:
    _, client = served
    call = asyncio.ensure_future(_call(client, b"sleep 5", 0, request_id="r", timeout=5))
    await asyncio.sleep(0.05)
    await client.close()
    with pytest.raises(StageWireError):
        await call
    assert await _call(client, b"back", 0, request_id="r", timeout=1) == (200, b"back", 0)
    assert client.connects == 2


@pytest.mark.parametrize("eager", [False, True])
async def test_a_lost_connection_cancels_its_running_handlers(sock_dir: Path, eager: bool) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow(body: bytes, header_length: int, request_id: str, timeout: float) -> tuple[int, bytes, int]:
        started.set()
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 200, body, 0

    path = str(sock_dir / "s.sock")
    server = await serve_wire(slow, path, eager=eager)
    client = StageWireClient(path)
    try:
        call = asyncio.ensure_future(client.call(b"x", 0, request_id="r", timeout=5))
        await asyncio.wait_for(started.wait(), 2)
        await client.close()  # the gateway went away
        await asyncio.wait_for(cancelled.wait(), 2)
        with pytest.raises(StageWireError):
            await call
    finally:
        server.close()
        await server.wait_closed()


async def test_a_call_with_nothing_in_flight_is_written_before_the_loop_turns(
        served: tuple[str, StageWireClient]) -> None:
    _, client = served
    assert await _call(client, b"warm", 0, request_id="w", timeout=1) == (200, b"warm", 0)
    writes = client.writes
    first = asyncio.ensure_future(client.call(b"a", 0, request_id="a", timeout=1))
    await asyncio.sleep(0)  # the call's first step ran; a flush scheduled by it would run after this
    assert client.writes == writes + 1
    second = asyncio.ensure_future(client.call(b"b", 0, request_id="b", timeout=1))
    await asyncio.sleep(0)
    assert client.writes == writes + 1  # one call in flight: this one waits to be coalesced
    assert await asyncio.wait_for(asyncio.gather(first, second), 2) == [(200, b"a", 0), (200, b"b", 0)]
    assert client.writes == writes + 2


@pytest.mark.parametrize("eager", [False, True])
async def test_an_eager_server_answers_a_quick_handler_without_a_task(sock_dir: Path, eager: bool) -> None:
    tasks: list[asyncio.Task[object] | None] = []

    async def quick(body: bytes, header_length: int, request_id: str, timeout: float) -> tuple[int, bytes, int]:
        tasks.append(asyncio.current_task())
        return 200, body, header_length

    path = str(sock_dir / "s.sock")
    server = await serve_wire(quick, path, eager=eager)
    client = StageWireClient(path)
    try:
        results = await asyncio.gather(*(_call(client, b"q%d" % i, i, request_id="r", timeout=1) for i in range(20)))
        assert results == [(200, b"q%d" % i, i) for i in range(20)]
        assert len(tasks) == 20
        assert all(t is None for t in tasks) if eager else all(t is not None for t in tasks)
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


async def test_an_eager_handler_that_waits_goes_on_in_a_task(sock_dir: Path) -> None:
    """The first step runs in the read; every later step (after a future, a bare yield, a thread) in a task."""
    loop = asyncio.get_running_loop()
    steps: list[bool] = []

    async def waits(body: bytes, header_length: int, request_id: str, timeout: float) -> tuple[int, bytes, int]:
        steps.append(asyncio.current_task() is None)
        await asyncio.sleep(0)  # a bare yield
        steps.append(asyncio.current_task() is None)
        doubled = await loop.run_in_executor(None, lambda: body * 2)  # a future resolved from a thread
        await asyncio.sleep(0.01)  # a timer
        try:
            await asyncio.sleep(0.01)
            if body == b"raise":
                raise RuntimeError("planned")
        except RuntimeError:
            return 500, b"caught", 0
        return 200, doubled, header_length

    path = str(sock_dir / "s.sock")
    server = await serve_wire(waits, path, eager=True)
    client = StageWireClient(path)
    try:
        assert await _call(client, b"ab", 1, request_id="r", timeout=1) == (200, b"abab", 1)
        assert steps == [True, False]
        assert await _call(client, b"raise", 0, request_id="r", timeout=1) == (500, b"caught", 0)
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
