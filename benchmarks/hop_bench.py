"""The gateway -> stage hop alone: HTTP/1.1 (Http11Pool -> serve_unix) against the framed wire (stage_wire).

Both servers echo the body and run in their own processes under uvloop, as the stages do; the
client (this process, uvloop too) makes the calls the gateway would make, with the same headers
or fields. Configurations alternate block by block so that drift on a shared machine hits them
alike; each figure is the median over the blocks. CPU per call is utime+stime of each process
(the client's from time.process_time, the server's reported by itself the same way), so it is
not bounded by the 10 ms tick of /proc/PID/stat.

    .venv/bin/python benchmarks/hop_bench.py [--blocks 5] [--calls 5000] [--body 1024] [--concurrency 1 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

from tritium.dataplane.http.client import Http11Pool  # noqa: E402
from tritium.dataplane.http.sidecar_server import Reply, Request, serve_unix  # noqa: E402
from tritium.dataplane.http.stage_wire import StageWireClient, serve_wire  # noqa: E402

KINDS = ("http11", "wire")
HEADER_LENGTH = "Inference-Header-Content-Length"
CONTENT_TYPE = "application/x-tritium-tensors"


async def _echo_http(request: Request) -> Reply:
    return Reply(200, request.body, {"Content-Type": CONTENT_TYPE,
                                     HEADER_LENGTH: request.headers[HEADER_LENGTH.lower()]})


async def _echo_wire(body: bytes, header_length: int, request_id: str, timeout: float) -> tuple[int, bytes, int]:
    return 200, body, header_length


def serve(kind: str, path: str) -> None:
    """The server process: answers calls on path; each line on stdin is answered with its CPU seconds."""
    uvloop.install()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await (serve_unix(_echo_http, path) if kind == "http11" else serve_wire(_echo_wire, path))
        done = loop.create_future()

        def report() -> None:
            if not sys.stdin.readline():
                loop.remove_reader(sys.stdin.fileno())
                done.set_result(None)
                return
            print(time.process_time(), flush=True)

        loop.add_reader(sys.stdin.fileno(), report)
        print("ready", flush=True)
        await done
        server.close()

    asyncio.run(main())


class Server:
    def __init__(self, kind: str, path: str) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, path], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def cpu(self) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(5)


def caller(kind: str, path: str, body: bytes) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    """(one call as the gateway makes it, close)."""
    header_length = 64
    if kind == "http11":
        pool = Http11Pool("localhost", 0, path=path)

        async def call_http() -> None:
            headers = {"Content-Type": CONTENT_TYPE, HEADER_LENGTH: str(header_length),
                       "X-Request-Id": "bench-request-0001", "X-Request-Timeout": f"{max(30.0, 0.001):.3f}"}
            resp = await pool.request("POST", "/v1/process", body, headers)
            assert resp.status == 200 and len(resp.body) == len(body)
            int(resp.headers[HEADER_LENGTH.lower()])

        return call_http, pool.close
    client = StageWireClient(path)

    async def call_wire() -> None:
        status, out, _ = await client.call(body, header_length, request_id="bench-request-0001", timeout=30.0)
        assert status == 200 and len(out) == len(body)

    return call_wire, client.close


async def block(call: Callable[[], Awaitable[None]], server: Server, calls: int,
                concurrency: int) -> tuple[float, float, float]:
    """-> (calls/s, client CPU us/call, server CPU us/call) for `calls` calls by `concurrency` tasks."""
    per_task = calls // concurrency

    async def worker() -> None:
        for _ in range(per_task):
            await call()

    server_cpu, cpu, wall = server.cpu(), time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu, server_cpu = time.perf_counter() - wall, time.process_time() - cpu, server.cpu() - server_cpu
    n = per_task * concurrency
    return n / wall, cpu / n * 1e6, server_cpu / n * 1e6


async def bench(args: argparse.Namespace, paths: dict[str, str], servers: dict[str, Server]) -> None:
    body = os.urandom(args.body)
    callers = {kind: caller(kind, paths[kind], body) for kind in KINDS}
    configs = [(kind, c) for c in args.concurrency for kind in KINDS]
    results: dict[tuple[str, int], list[tuple[float, float, float]]] = {config: [] for config in configs}
    for kind, c in configs:  # warm-up: connections, caches, the JIT-less interpreter's own warm-up
        await block(callers[kind][0], servers[kind], max(args.calls // 5, c), c)
    for _ in range(args.blocks):
        for kind, c in configs:
            results[kind, c].append(await block(callers[kind][0], servers[kind], args.calls, c))
    for _, close in callers.values():
        await close()
    print(f"\n{args.blocks} alternating blocks of {args.calls} calls, body {args.body} B, medians\n")
    print("| hop | concurrency | calls/s | client CPU us/call | server CPU us/call | total CPU us/call |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind, c in configs:
        rate, client, server = (statistics.median(r[i] for r in results[kind, c]) for i in range(3))
        total = statistics.median(r[1] + r[2] for r in results[kind, c])
        print(f"| {kind} | {c} | {rate:,.0f} | {client:.1f} | {server:.1f} | {total:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--body", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="hop") as tmp:
        paths = {kind: f"{tmp}/{kind}.sock" for kind in KINDS}
        servers = {kind: Server(kind, paths[kind]) for kind in KINDS}
        try:
            uvloop.install()
            asyncio.run(bench(args, paths, servers))
        finally:
            for server in servers.values():
                server.stop()


if __name__ == "__main__":
    main()
