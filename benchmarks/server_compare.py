"""The gateway's own HTTP/1.1 server against granian (Rust: hyper on tokio), same handlers, side by side.

Two handlers, each served by (a) `tritium.dataplane.http.server.HttpServer` on uvloop, as the
gateway runs it, and (b) granian 2.8 through its RSGI interface (1 worker, uvloop, HTTP/1 only,
no websockets, no access log), both routing with the gateway's `Router`:

- trivial: `POST /trivial/{model}/infer` answers a fixed v2 response (the server alone);
- forward: `POST /v2/models/{model}/infer` passes the request to Triton with the gateway's own
  client (`TritonHttp.forward`, keep-alive pool) and answers Triton's body with the headers the
  gateway adds: what the gateway's no-stage path does, less its checks and metrics.

The load: C keep-alive connections from one client process (asyncio on uvloop, raw HTTP/1.1, the
binary v2 request perf_analyzer sends for the tiny identity model), each sending its next request
when the answer is in. Per block: requests/s over `--seconds` after a short warm-up, and the
server's CPU (utime + stime of its process tree, /proc) per request. Each round measures every
server at every concurrency once, the first server moving on by one each round; the table gives
medians and the ratio is the median of the per-round ratios (granian / tritium).

    python benchmarks/server_compare.py [--rounds 5] [--seconds 3] [--concurrency 1 8]
        [--handlers trivial forward] [--task-impl asyncio|rust] [--runtime-mode st|mt|auto]

Triton (tests/data/models/identity) is started for the forward handler; without it the forward
rows are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TRITON_ENV = "SERVER_COMPARE_TRITON"  # the Triton HTTP URL the servers forward to
HEADER = (b'{"id":"","inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,16],'
          b'"parameters":{"binary_data_size":64}}],"outputs":[{"name":"OUTPUT0","parameters":{"binary_data":true}}]}')
TENSOR = bytes(range(64))
ANSWER_HEADER = (b'{"model_name":"identity","model_version":"1","outputs":[{"name":"OUTPUT0","datatype":"FP32",'
                 b'"shape":[1,16],"parameters":{"binary_data_size":64}}]}')
REQUEST_ID = "0123456789abcdef0123456789abcdef"


# -- the handlers, shared by both servers -------------------------------------------------------

class Handlers:
    """Routing and the two handlers, independent of the server: (status, headers, body) out."""

    def __init__(self) -> None:
        from tritium.dataplane.http.server import Router

        self.router = Router()
        self.router.add("POST", "/trivial/{model}/infer", self.trivial)
        self.router.add("POST", "/v2/models/{model}/infer", self.forward)
        self._triton: Any = None
        self._answer = ANSWER_HEADER + TENSOR

    async def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        found, match, _, _ = self.router.resolve(method, path)
        if found is None:
            return 404, {"Content-Type": "text/plain"}, b"not found\n"
        return await found(match, headers, body)

    async def trivial(self, match: dict[str, str], headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        headers.get("content-type")
        return 200, {"Content-Type": "application/octet-stream",
                     "Inference-Header-Content-Length": str(len(ANSWER_HEADER)),
                     "X-Request-Id": REQUEST_ID, "X-Tritium-Revision": "r1"}, self._answer

    async def forward(self, match: dict[str, str], headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if self._triton is None:
            from tritium.dataplane.triton import TritonHttp

            self._triton = TritonHttp(os.environ[TRITON_ENV])
        length = headers.get("inference-header-content-length")
        resp = await self._triton.forward(match["model"], "", body, headers.get("content-type") or "", length)
        out = {"Content-Type": resp.headers.get("content-type", "application/json"),
               "X-Request-Id": REQUEST_ID, "X-Tritium-Revision": "r1"}
        answered = resp.headers.get("inference-header-content-length")
        if answered:
            out["Inference-Header-Content-Length"] = answered
        return 200, out, resp.body


_handlers: Handlers | None = None


async def rsgi_app(scope: Any, proto: Any) -> None:
    """granian's RSGI entry point (loaded as server_compare:rsgi_app)."""
    global _handlers
    if _handlers is None:
        _handlers = Handlers()
    body = await proto()
    status, headers, answer = await _handlers.handle(scope.method, scope.path, scope.headers, body)
    proto.response_bytes(status, list(headers.items()), answer)


def serve_tritium(port: int) -> None:
    import uvloop

    from tritium.dataplane.http.server import HttpServer, Request, Response

    async def main() -> None:
        handlers = Handlers()

        async def handler(request: Request) -> Response:
            status, headers, body = await handlers.handle(request.method, request.path, request.headers, request.body)
            return Response(status, body, headers)

        server = HttpServer(handler)
        await server.listen("127.0.0.1", port)
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.install()
    asyncio.run(main())


def start_server(kind: str, port: int, env: dict[str, str], task_impl: str,
                 runtime_mode: str) -> subprocess.Popen[bytes]:
    if kind == "tritium":
        proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], env=env, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        proc.stdout.readline()
    else:
        granian = Path(sys.executable).parent / "granian"
        proc = subprocess.Popen(
            [str(granian), "--interface", "rsgi", "--workers", "1", "--runtime-threads", "1", "--loop", "uvloop",
             "--task-impl", task_impl, "--runtime-mode", runtime_mode, "--http", "1", "--no-ws", "--backlog", "1024",
             "--log-level", "warning", "--no-access-log", "--host", "127.0.0.1", "--port", str(port),
             "--working-dir", str(ROOT / "benchmarks"), "server_compare:rsgi_app"], env=env)
    return proc


# -- the load -----------------------------------------------------------------------------------

def request_bytes(path: str) -> bytes:
    body = HEADER + TENSOR
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nAccept: */*\r\n"
            f"Inference-Header-Content-Length: {len(HEADER)}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class _Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.done: asyncio.Future[bytes] | None = None
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        length = 0
        if at >= 0:
            eol = head.find(b"\r\n", at + 2)
            length = int(head[at + 17:eol if eol >= 0 else None])
        if len(self.buffer) >= end + 4 + length and self.done is not None and not self.done.done():
            status = bytes(self.buffer[9:12])
            del self.buffer[:end + 4 + length]
            self.done.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("closed"))


async def _load(port: int, path: str, concurrency: int, warmup: float, seconds: float) -> tuple[int, float]:
    loop = asyncio.get_running_loop()
    payload = request_bytes(path)
    conns = [(await loop.create_connection(_Client, "127.0.0.1", port))[1] for _ in range(concurrency)]
    counting = False
    count = 0
    stop = False

    async def worker(conn: _Client) -> None:
        nonlocal count
        while not stop:
            conn.done = loop.create_future()
            conn.transport.write(payload)
            status = await conn.done
            if status != b"200":
                raise RuntimeError(f"answered {status!r}")
            if counting:
                count += 1

    tasks = [loop.create_task(worker(c)) for c in conns]
    await asyncio.sleep(warmup)
    counting, began = True, time.monotonic()
    await asyncio.sleep(seconds)
    counting, elapsed = False, time.monotonic() - began
    stop = True
    await asyncio.gather(*tasks)
    for c in conns:
        c.transport.close()
    return count, elapsed


def load(port: int, path: str, concurrency: int, warmup: float, seconds: float) -> tuple[int, float]:
    import uvloop

    return uvloop.run(_load(port, path, concurrency, warmup, seconds))


def tree_cpu(pid: int) -> float:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from dataplane_cpu import tree_cpu_seconds

    return tree_cpu_seconds(pid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per block")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--handlers", nargs="+", default=["trivial", "forward"], choices=["trivial", "forward"])
    parser.add_argument("--task-impl", default="asyncio", choices=["asyncio", "rust"], help="granian's task type")
    parser.add_argument("--runtime-mode", default="st", choices=["auto", "st", "mt"],
                        help="granian's Rust runtime: single- or multi-threaded")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_tritium(args.serve)
        return 0
    sys.path.insert(0, str(ROOT))
    from tests.support.dataplane import start_triton
    from tritium.local.tritonserver import free_port

    triton = start_triton(models=("identity",)) if "forward" in args.handlers else None
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    if triton is not None:
        env[TRITON_ENV] = triton.http_url
    kinds = ("tritium", "granian")
    ports = {k: free_port() for k in kinds}
    servers = {k: start_server(k, ports[k], env, args.task_impl, args.runtime_mode) for k in kinds}
    paths = {"trivial": "/trivial/identity/infer", "forward": "/v2/models/identity/infer"}
    figures: dict[tuple[str, int, str], list[tuple[float, float]]] = {}
    try:
        for kind in kinds:  # ready, and every path answering
            for _ in range(100):
                try:
                    for handler in args.handlers:
                        load(ports[kind], paths[handler], 1, 0.0, 0.05)
                    break
                except OSError:
                    time.sleep(0.1)
        print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
        idle = {}
        for kind in kinds:  # what a server costs with nothing to do (counted in its blocks too)
            before = tree_cpu(servers[kind].pid)
            time.sleep(2.0)
            idle[kind] = (tree_cpu(servers[kind].pid) - before) / 2.0 * 1e3
        print("idle CPU, ms per second: " + ", ".join(f"{k} {v:.1f}" for k, v in idle.items()), flush=True)
        for r in range(args.rounds):
            for handler in args.handlers:
                for c in args.concurrency:
                    for kind in kinds[r % 2:] + kinds[:r % 2]:
                        before = tree_cpu(servers[kind].pid)
                        count, elapsed = load(ports[kind], paths[handler], c, args.warmup, args.seconds)
                        cpu = tree_cpu(servers[kind].pid) - before
                        # CPU over the warm-up too: per request at the measured rate over the whole block.
                        rate = count / elapsed
                        per = cpu / (rate * (elapsed + args.warmup)) * 1e6
                        figures.setdefault((handler, c, kind), []).append((rate, per))
                        print(f"  round {r + 1} {handler} c={c} {kind}: {rate:.0f} req/s, {per:.0f} us CPU/request",
                              flush=True)
        print(f"load average at end: {os.getloadavg()[0]:.2f}\n")
        print(f"{args.rounds} alternating rounds of {args.seconds:g} s blocks; medians (min-max); ratio = median of "
              "the per-round granian / tritium ratios\n")
        print("| handler | c | server | req/s | server CPU us/request | granian / tritium: req/s | CPU |")
        print("|---|---|---|---:|---:|---:|---:|")
        for handler in args.handlers:
            for c in args.concurrency:
                own, other = figures[(handler, c, "tritium")], figures[(handler, c, "granian")]
                for kind, rows in (("tritium", own), ("granian", other)):
                    rates, cpus = [x[0] for x in rows], [x[1] for x in rows]
                    ratio = ""
                    if kind == "granian":
                        rr = statistics.median(g[0] / t[0] for g, t in zip(other, own, strict=True))
                        cr = statistics.median(g[1] / t[1] for g, t in zip(other, own, strict=True))
                        ratio = f"| **{rr:.2f}x** | **{cr:.2f}x** |"
                    else:
                        ratio = "| | |"
                    print(f"| {handler} | {c} | {kind} | {statistics.median(rates):,.0f} ({min(rates):,.0f}-"
                          f"{max(rates):,.0f}) | {statistics.median(cpus):.0f} ({min(cpus):.0f}-{max(cpus):.0f}) "
                          f"{ratio}")
    finally:
        for proc in servers.values():
            proc.terminate()
        for proc in servers.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if triton is not None:
            triton.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
