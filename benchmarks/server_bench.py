"""The gateway's HTTP server against aiohttp's, same trivial handler, server CPU per request.

Each server runs in its own process on uvloop (as the gateway does); one client process sends
keep-alive POSTs over one connection and reads each answer. Alternating blocks; the figure is
the server process's utime + stime per request, which moves less on a shared machine than
wall time.

    python benchmarks/server_bench.py [--blocks 5] [--requests 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BODY = b'{"model_name":"m","outputs":[{"name":"OUT","datatype":"FP32","shape":[1,16],"data":[0]}]}'
TICK = os.sysconf("SC_CLK_TCK")


def serve(kind: str, port: int) -> None:
    import uvloop

    async def main() -> None:
        if kind == "tritium":
            from tritium.dataplane.http.server import HttpServer, Request, Response, Router

            router = Router()

            async def infer(request: Request) -> Response:
                return Response(200, BODY, {"Content-Type": "application/json", "X-Request-Id": "r"})

            router.add("POST", "/v2/models/{model}/infer", infer)

            async def handler(request: Request) -> Response:
                found, request.match_info, _, _ = router.resolve(request.method, request.path)
                assert found is not None
                return await found(request)

            server = HttpServer(handler)
            await server.listen("127.0.0.1", port)
        else:
            from aiohttp import web

            async def infer_aio(request: web.Request) -> web.Response:
                await request.read()
                return web.Response(body=BODY, content_type=None,
                                    headers={"Content-Type": "application/json", "X-Request-Id": "r"})

            app = web.Application()
            app.router.add_post("/v2/models/{model}/infer", infer_aio)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.install()
    asyncio.run(main())


def cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def block(sock: socket.socket, n: int) -> None:
    payload = b"x" * 200
    request = (b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(payload)) + payload
    for _ in range(n):
        sock.sendall(request)
        answer = b""
        while not answer.endswith(BODY):
            answer += sock.recv(65536)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    servers, sockets = {}, {}
    for i, kind in enumerate(("tritium", "aiohttp")):
        port = 18700 + i + os.getpid() % 500
        servers[kind] = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port)],
                                         stdout=subprocess.PIPE, env=env)
        assert servers[kind].stdout is not None
        servers[kind].stdout.readline()
        sockets[kind] = socket.create_connection(("127.0.0.1", port))
        sockets[kind].setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    figures: dict[str, list[float]] = {k: [] for k in servers}
    try:
        for b in range(args.blocks):
            for kind in (("tritium", "aiohttp") if b % 2 == 0 else ("aiohttp", "tritium")):
                before = cpu(servers[kind].pid)
                block(sockets[kind], args.requests)
                figures[kind].append((cpu(servers[kind].pid) - before) / args.requests * 1e6)
                time.sleep(0.1)
    finally:
        for proc in servers.values():
            proc.kill()
    print(f"{args.blocks} alternating blocks of {args.requests} keep-alive POSTs; server CPU us/request\n")
    print("| server | median | min | max |\n|---|---:|---:|---:|")
    for kind, values in figures.items():
        print(f"| {kind} | {statistics.median(values):.0f} | {min(values):.0f} | {max(values):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
