"""The gateway -> stage hop over a Unix socket: one connection, multiplexed calls, coalesced writes.

Over HTTP/1.1 each concurrent call had its own connection, so each call cost its own write, its
own read and its own event-loop wake-up on both ends; measured, that per-message overhead
dominated the hop. Here every call travels as a small binary frame on ONE connection, tagged
with a call id so answers may come back in any order. Frames queued during one event-loop
iteration leave in one writelines (one writev), on both sides, so at concurrency N several calls
share a syscall and a wake-up of the peer. The stage's TCP port keeps HTTP for probes and metrics.

Latency when the hop is idle (concurrency 1), timed step by step in the pipeline: a loop
iteration between queueing a frame and writing it cost about 10-15 us on each side, and a task
per frame another 25 us in the stage before the handler ran. So a call made while no other is in
flight is written at once, and an `eager` server runs a handler's first step inside the read
that brought its frame: a quick handler answers there, and the answers of one read leave in one
write. A handler that waits goes on in a task, as before.

Frames (little-endian; the length counts the bytes after the 4-byte length field itself):

    request:  <IIIdH  length, call id, header length, timeout seconds, request id length,
              then the request id (utf-8), then the body
    response: <IIHI   length, call id, status, header length, then the body
"""

from __future__ import annotations

import asyncio
import logging
import struct
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

from tritium.dataplane.http.sidecar_server import remove_stale_socket

log = logging.getLogger("tritium.stage.wire")

_LENGTH = struct.Struct("<I")
_REQUEST = struct.Struct("<IIIdH")  # length, call id, header length, timeout, request id length
_RESPONSE = struct.Struct("<IIHI")  # length, call id, status, header length
MAX_FRAME = (1 << 31) - 1
ERROR_BODY = b'{"error":{"code":"stage_error","message":"internal error"}}'

WireHandler = Callable[[bytes, int, str, float], Awaitable[tuple[int, bytes, int]]]
"""handler(body, header_length, request_id, timeout) -> (status, body, header_length)."""


class StageWireError(ConnectionError):
    """The stage cannot be reached or the connection broke."""


class _Framed(asyncio.Protocol):
    """Splits the byte stream into frames; subclasses handle each one in _frame.

    The common case (the buffer is empty and a read holds whole frames) is parsed straight from
    the bytes read; a partial frame waits in a bytearray until `_need` bytes are there, so a large
    frame arriving in many reads is copied a constant number of times, not once per read.
    """

    max_frame = MAX_FRAME
    min_frame = 0  # the fixed prefix, less the length field

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.outgoing: list[bytes] = []
        self._buffer = bytearray()
        self._need = 0
        self._reading = False  # inside data_received: what it queues leaves in one write at its end

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def queue(self, *pieces: bytes) -> None:
        """Queue one frame's pieces (not copied: writelines gathers them); the first frame queued
        in a loop iteration schedules the one write that sends them all."""
        outgoing = self.outgoing
        if not outgoing and not self._reading:
            self.loop.call_soon(self._flush)
        outgoing.extend(piece for piece in pieces if piece)

    def send_now(self, *pieces: bytes) -> None:
        """Write one frame at once when nothing else waits: the loop iteration would only add latency."""
        if self.outgoing or self._reading:
            self.queue(*pieces)
            return
        self.outgoing = [piece for piece in pieces if piece]
        self._flush()

    def _flush(self) -> None:
        outgoing, self.outgoing = self.outgoing, []
        if self.closed or self.transport is None or self.transport.is_closing() or not outgoing:
            return  # on the client, connection_lost fails the pending calls
        self.transport.writelines(outgoing)
        self.flushed()

    def flushed(self) -> None:
        """Called after each write (the client counts them)."""

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.outgoing = []

    def eof_received(self) -> bool:
        return False  # half-closed by the peer: close our side too (connection_lost follows)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self._reading = True
        try:
            self._parse(data)
        finally:
            self._reading = False
            if self.outgoing:
                self._flush()

    def _parse(self, data: bytes) -> None:
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._need:
                return
            data = bytes(buffer)
            buffer.clear()
        end = len(data)
        offset = 0
        while end - offset >= 4:
            length = _LENGTH.unpack_from(data, offset)[0]
            if length > self.max_frame or length < self.min_frame:
                self._malformed(f"frame length {length} outside [{self.min_frame}, {self.max_frame}]")
                return
            stop = offset + 4 + length
            if stop > end:
                self._need = 4 + length
                break
            try:
                self._frame(data, offset, stop)
            except (ValueError, struct.error) as exc:
                self._malformed(str(exc))
                return
            offset = stop
        else:
            self._need = 4
        if offset < end:
            buffer += data[offset:] if offset else data

    def _frame(self, data: bytes, start: int, stop: int) -> None:
        raise NotImplementedError

    def _malformed(self, why: str) -> None:
        log.warning("closing the stage connection: %s", why)
        self.close()

    def close(self) -> None:
        self.closed = True
        self._buffer.clear()
        if self.transport is not None:
            self.transport.close()


class _ClientConnection(_Framed):
    """The gateway's end: pending calls by id, requests queued and flushed once per loop iteration."""

    max_frame = 0xFFFFFFFF
    min_frame = _RESPONSE.size - 4

    def __init__(self, client: StageWireClient) -> None:
        super().__init__()
        self.client = client
        self.pending: dict[int, asyncio.Future[tuple[int, bytes, int]]] = {}

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.client._conn is self:
            self.client._conn = None
        why = f"connection to {self.client.path} closed" + (f": {exc}" if exc else " by the stage")
        self.fail(StageWireError(why))

    def fail(self, exc: Exception) -> None:
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(exc)

    def flushed(self) -> None:
        self.client.writes += 1

    def _frame(self, data: bytes, start: int, stop: int) -> None:
        _, call_id, status, header_length = _RESPONSE.unpack_from(data, start)
        future = self.pending.pop(call_id, None)
        if future is not None and not future.done():  # else cancelled: a late answer, dropped
            future.set_result((status, data[start + _RESPONSE.size:stop], header_length))


class StageWireClient:
    """Calls one stage over its Unix socket; every concurrent call shares one connection.

    No timeout of its own: the caller bounds each call (asyncio.timeout), and a cancelled call
    only forgets its id, so the connection stays usable. A call already sent when the connection
    breaks fails with StageWireError and is not retried (the stage may have acted on it); the
    next call reconnects.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.writes = 0  # writelines calls: fewer than calls when they were coalesced
        self.connects = 0
        self._conn: _ClientConnection | None = None
        self._connecting: asyncio.Task[_ClientConnection] | None = None
        self._next_id = 0
        self._epoch = 0  # bumped by close()

    async def _open(self) -> _ClientConnection:
        loop = asyncio.get_running_loop()
        epoch = self._epoch
        try:
            _, conn = await loop.create_unix_connection(lambda: _ClientConnection(self), self.path)
        except OSError as exc:
            raise StageWireError(f"cannot connect to {self.path}: {exc.strerror or exc}") from None
        finally:
            if self._connecting is asyncio.current_task():
                self._connecting = None
        if epoch != self._epoch:  # close() ran meanwhile: do not leave a connection behind it
            conn.close()
            raise StageWireError(f"connection to {self.path} closed by the client")
        self._conn = conn
        self.connects += 1
        return conn

    async def _connection(self) -> _ClientConnection:
        """The open connection, or one connect attempt shared by every caller that needs it."""
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_task(self._open())
        # Shielded: one caller's deadline must not cancel the connect the others wait for.
        return await asyncio.shield(self._connecting)

    async def call(self, body: bytes, header_length: int, *, request_id: str,
                   timeout: float) -> tuple[int, bytes, int]:
        """Send one message -> (status, body, header_length) of the stage's answer."""
        conn = self._conn
        if conn is None or conn.closed:
            conn = await self._connection()
            if conn.closed:
                raise StageWireError(f"connection to {self.path} closed")
        call_id = self._next_id
        rid = request_id.encode()
        prefix = _REQUEST.pack(_REQUEST.size - 4 + len(rid) + len(body), call_id, header_length, timeout, len(rid))
        self._next_id = (call_id + 1) & 0xFFFFFFFF
        future = conn.loop.create_future()
        idle = not conn.pending  # no other call in flight: nothing to coalesce this one with
        conn.pending[call_id] = future
        if idle:
            conn.send_now(prefix, rid, body)
        else:
            conn.queue(prefix, rid, body)
        try:
            return await future
        except BaseException:
            conn.pending.pop(call_id, None)  # cancelled (the caller's deadline): a late answer is dropped
            raise

    async def close(self) -> None:
        """Close the connection and fail the calls still waiting; a later call connects again."""
        self._epoch += 1
        self._connecting = None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            conn.fail(StageWireError(f"connection to {self.path} closed by the client"))


@types.coroutine
def _relay(coro: Coroutine[Any, Any, None], yielded: Any) -> Generator[Any, Any, None]:
    """Go on with a coroutine that ran its first step outside a task.

    It yielded what it waits for (a future, or None for a bare yield); the task running this relay
    waits for that in its place, and passes each resumption on (the value sent, or an exception
    thrown in, such as a cancellation), as `yield from` would have from the coroutine's start.
    """
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration:
                return
            continue
        try:
            yielded = coro.send(sent)
        except StopIteration:
            return


async def _finish(coro: Coroutine[Any, Any, None], yielded: Any) -> None:
    await _relay(coro, yielded)


class _ServerConnection(_Framed):
    """The stage's end: each frame runs the handler (eagerly, or in a task); answers leave coalesced."""

    min_frame = _REQUEST.size - 4

    def __init__(self, handler: WireHandler, max_frame: int, eager: bool = False) -> None:
        super().__init__()
        self.handler = handler
        self.max_frame = max_frame
        self.eager = eager
        self.tasks: set[asyncio.Task[None]] = set()  # strong references: the loop holds tasks weakly

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        for task in self.tasks:
            task.cancel()

    def _frame(self, data: bytes, start: int, stop: int) -> None:
        _, call_id, header_length, timeout, rid_length = _REQUEST.unpack_from(data, start)
        body_start = start + _REQUEST.size + rid_length
        if body_start > stop:
            raise ValueError(f"request id length {rid_length} exceeds the frame")
        request_id = data[start + _REQUEST.size:body_start].decode()
        coro = self._run(call_id, data[body_start:stop], header_length, request_id, timeout)
        if self.eager:
            try:
                yielded = coro.send(None)
            except StopIteration:
                return  # answered: queued, it leaves with this read's other answers
            task = self.loop.create_task(_finish(coro, yielded))
        else:
            task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, call_id: int, body: bytes, header_length: int, request_id: str, timeout: float) -> None:
        try:
            status, out, out_length = await self.handler(body, header_length, request_id, timeout)
            prefix = _RESPONSE.pack(_RESPONSE.size - 4 + len(out), call_id, status, out_length)
        except Exception:
            log.exception("stage handler failed for request %s", request_id)
            out = ERROR_BODY
            prefix = _RESPONSE.pack(_RESPONSE.size - 4 + len(out), call_id, 500, 0)
        if not self.closed:
            self.queue(prefix, out)


async def serve_wire(handler: WireHandler, path: str, max_frame: int = MAX_FRAME, *,
                     eager: bool = False) -> asyncio.Server:
    """Serve handler on a Unix socket; a socket left behind by a previous run is replaced.

    A frame longer than max_frame (or malformed) closes that connection: the stream is out of step.
    `eager`: the handler's first step runs inside data_received, outside any task, so a handler
    that completes without waiting needs no task at all. Only for a handler whose code up to its
    first wait needs no current task (asyncio.timeout does, for one): a stage sets it unless a
    user's async script runs inside it.
    """
    remove_stale_socket(path)
    loop = asyncio.get_running_loop()
    return await loop.create_unix_server(lambda: _ServerConnection(handler, max_frame, eager), path, backlog=1024)
