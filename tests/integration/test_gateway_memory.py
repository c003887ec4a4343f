"""The gateway's memory stays flat under clients that stop reading or vanish mid-answer.

A real gateway process in front of the real Triton, abused over raw sockets, its resident memory
(VmRSS in /proc/PID/status) sampled throughout. Every answer is 512 KiB: the identity model echoes
a 512 KiB input, sent and answered in the binary extension (the gateway passes both through byte
for byte). The load, all at once:

- NEVER_READ = 16 clients each pipeline PIPELINE = 64 requests and read nothing (with a receive
  buffer of a few KiB, so the kernel holds next to nothing for them) for HOLD seconds, then leave,
  half with a reset, half with a FIN. A gateway that answered them all would buffer
  16 x 64 x 512 KiB = 512 MiB of answers (and as much again of requests, had it read them all).
- CUT = 8 clients, ROUNDS = 4 times each, send two requests, read a few bytes of the first answer
  and reset the connection (SO_LINGER 0) in the middle of it.
- HALF = 8 clients, ROUNDS = 4 times each, send half a request (half the head, the head and half
  the body, or the head alone) and vanish, by reset or FIN.

With back-pressure (dataplane/http/server.py) a connection whose client reads nothing holds one
answer, the one request waiting behind it and a read's worth of the next (about 1.3 MiB here, some
1.6 measured with the allocator's slack): about 26 MiB for the 16, and about 12 for the cut
connections in flight. The bound, GROWTH_BOUND = 64 MiB over the warmed-up baseline, holds for the
peak while they are connected and for what stays once they are gone (the allocator keeps much of
a peak), and is an eighth of what buffering the non-readers' answers alone would add. Measured on
a 2-core machine: baseline 100 MiB, peak and after about +35 MiB; without back-pressure peak
+480 MiB, after +290 MiB.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support.dataplane import Deployment, base_spec, deploy, missing
from tritium.local.tritonserver import TritonServer

MIB = 1 << 20
SIZE = MIB // 2  # bytes of each answer's tensor
NEVER_READ, PIPELINE = 16, 64
CUT, HALF, ROUNDS = 8, 8, 4
GROWTH_BOUND = 64 * MIB
HOLD = 6.0  # seconds the non-readers stay connected: long enough for an unbounded gateway to fill up
DROPPED_WITHIN = 20.0  # seconds for the gateway to let go of every abusive connection once they left
_ESTABLISHED, _CLOSE_WAIT = "01", "08"  # /proc/net/tcp states of a connection the process still holds


def _v2_body(data: bytes) -> tuple[bytes, int]:
    """A v2 infer request for the identity model in the binary extension: (body, JSON header length)."""
    header = json.dumps({
        "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, len(data) // 4],
                    "parameters": {"binary_data_size": len(data)}}],
        "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}],
    }).encode()
    return header + data, len(header)


_BODY, _HEADER_LENGTH = _v2_body(np.ones(SIZE // 4, np.float32).tobytes())
_HEAD = (b"POST /v2/models/identity/infer HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/octet-stream\r\n"
         b"Inference-Header-Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (_HEADER_LENGTH, len(_BODY)))
REQUEST = _HEAD + _BODY


def _rss(pid: int) -> int:
    """The process' resident memory in bytes (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def _held_connections(port: int) -> int:
    """Connections to `port` that a process still holds open (established, or closed by the peer only)."""
    held = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] in (_ESTABLISHED, _CLOSE_WAIT):
            held += 1
    return held


def _infer(client: httpx.Client, url: str, data: bytes) -> bytes:
    """One normal request; the answer's tensor bytes."""
    body, header_length = _v2_body(data)
    resp = client.post(f"{url}/v2/models/identity/infer", content=body,
                       headers={"Content-Type": "application/octet-stream",
                                "Inference-Header-Content-Length": str(header_length)}, timeout=30)
    assert resp.status_code == 200, resp.text[:500]
    return resp.content[int(resp.headers["Inference-Header-Content-Length"]):]


def _connect(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: the window it offers
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock


def _vanish(sock: socket.socket, reset: bool) -> None:
    if reset:  # SO_LINGER 0: close() sends RST, as a crashed client or a dropped proxy does
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _never_read(port: int, index: int, leave: threading.Event) -> None:
    sock = _connect(port)
    deadline = time.monotonic() + HOLD
    with contextlib.suppress(OSError):  # TimeoutError: the gateway stopped reading, as it should
        for _ in range(PIPELINE):
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            sock.sendall(REQUEST)
    leave.wait()
    _vanish(sock, reset=index % 2 == 0)


def _cut(port: int, index: int, leave: threading.Event) -> None:
    for _ in range(ROUNDS):
        sock = _connect(port)
        with contextlib.suppress(OSError):
            sock.sendall(REQUEST * 2)
            sock.recv(64)  # a few bytes of the first answer's head
        _vanish(sock, reset=True)


def _half(port: int, index: int, leave: threading.Event) -> None:
    for attempt in range(ROUNDS):
        sock = _connect(port)
        part = (_HEAD[: len(_HEAD) // 2], _HEAD + _BODY[: len(_BODY) // 2], _HEAD)[(index + attempt) % 3]
        with contextlib.suppress(OSError):
            sock.sendall(part)
        _vanish(sock, reset=attempt % 2 == 0)


@pytest.fixture(scope="module")
def gw(triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if not Path("/proc/self/status").is_file() or not Path("/proc/net/tcp").is_file():
        missing("no /proc: the process' resident memory cannot be read here")
    dep = deploy(tmp_path_factory.mktemp("gwmem"), triton, base_spec("identity"))
    yield dep
    dep.stop()


def test_clients_that_stop_reading_or_vanish_leave_the_gateways_memory_flat(gw: Deployment) -> None:
    assert gw.gateway.popen is not None
    pid, port = gw.gateway.popen.pid, int(gw.url.rsplit(":", 1)[1])
    rng = np.random.default_rng(7)

    # Warm-up: the pools, caches and the allocator's arenas at what normal traffic makes of them.
    with httpx.Client() as client:
        for _ in range(20):
            data = rng.random(SIZE // 4, dtype=np.float32).tobytes()
            assert _infer(client, gw.url, data) == data
    baseline = _rss(pid)

    peak = baseline
    sampling = True

    def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, _rss(pid))
            time.sleep(0.01)

    leave = threading.Event()
    kinds: list[tuple[Callable[[int, int, threading.Event], None], int]] = [
        (_never_read, NEVER_READ), (_cut, CUT), (_half, HALF)]
    clients = [threading.Thread(target=kind, args=(port, i, leave), daemon=True)
               for kind, count in kinds for i in range(count)]
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        for thread in clients:
            thread.start()
        time.sleep(HOLD)  # the non-readers hold on, the others come and go
        leave.set()
        for thread in clients:
            thread.join(30)
        assert not any(thread.is_alive() for thread in clients), "an abusive client never finished"
        # The gateway let go of them all (a reset or a FIN reaches it at once; nothing waits for a timer).
        deadline = time.monotonic() + DROPPED_WITHIN
        while _held_connections(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _held_connections(port) == 0, "the gateway still holds abusive connections"
        time.sleep(0.5)
    finally:
        sampling = False
        sampler.join()
    after = _rss(pid)

    report = (f"baseline {baseline / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB, after {after / MIB:.0f} MiB "
              f"(bound: baseline + {GROWTH_BOUND / MIB:.0f} MiB)")
    print(report)
    assert peak - baseline < GROWTH_BOUND, f"the gateway buffered for clients that read nothing: {report}"
    assert after - baseline < GROWTH_BOUND, f"the gateway kept memory after the clients left: {report}"

    # And it still answers, correctly.
    with httpx.Client() as client:
        for _ in range(3):
            data = rng.random(SIZE // 4, dtype=np.float32).tobytes()
            assert _infer(client, gw.url, data) == data
    assert gw.gateway.popen.poll() is None
