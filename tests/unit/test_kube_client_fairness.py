"""KubeClient serves its requests first come first served (controller/kube.py).

Against a real HTTP server on loopback (aiohttp's), standing in for the API server: what is
checked is the order in which the client's own pool lets requests go, which no API server shows.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from tritium.controller import kube
from tritium.controller.kube import KubeClient, _Auth


async def test_a_request_made_later_waits_behind_those_already_waiting(unused_tcp_port: int) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.01)
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/x", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    client = KubeClient()
    client._auth = _Auth(server=f"http://127.0.0.1:{unused_tcp_port}", headers={}, ssl=False)
    firsts: list[float] = []
    thirds: list[float] = []

    async def worker() -> None:
        """Like a reconcile: one request after the other, the next as soon as the last answered."""
        for i in range(3):
            await client._request("GET", "/x")
            (firsts if i == 0 else thirds if i == 2 else []).append(time.monotonic())

    try:
        await asyncio.gather(*(worker() for _ in range(kube.CONNECTIONS * 5)))
    finally:
        await client.close()
        await runner.cleanup()
    assert max(firsts) < min(thirds), "every first request went before anyone's third"
