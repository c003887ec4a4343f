"""Real parts for the analysis providers: gateway metrics endpoints on loopback, and a real Prometheus.

A ``MetricsPod`` serves a real GatewayMetrics registry through metrics_route on the data
plane's own HttpServer, the exact code a gateway pod runs on its metrics port; traffic is
simulated with GatewayMetrics.observe(), the call the gateway makes per answer. Each pod gets
its own 127.x address, so several "pods" share one port as pods share GATEWAY_METRICS_PORT.

``running_prometheus`` starts the Debian prometheus binary on a free loopback port with a
temporary config and data directory. A missing binary skips the test on a developer machine
and fails it when CI is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.support.dataplane import missing
from tritium.dataplane.http.server import HttpServer, Request, Response
from tritium.dataplane.metrics import GatewayMetrics, metrics_route
from tritium.local.tritonserver import free_port


def loopback(address: str) -> str:
    """`address`, after checking it is loopback: these tests never dial anything else."""
    if not ipaddress.ip_address(address).is_loopback:
        raise ValueError(f"{address} is not a loopback address")
    return address


class MetricsPod:
    """One simulated gateway pod: its metrics registry served on ADDRESS:PORT/metrics."""

    def __init__(self, address: str, port: int) -> None:
        self.address = loopback(address)
        self.port = port
        self.metrics = GatewayMetrics()
        self.scrapes: list[str] = []  # paths asked for, to prove who was dialed
        self._server: HttpServer | None = None

    async def start(self) -> MetricsPod:
        route = metrics_route(self.metrics.registry)

        async def handler(request: Request) -> Response:
            self.scrapes.append(request.path)
            return await route(request)

        self._server = HttpServer(handler, max_body=0)
        await self._server.listen(self.address, self.port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown(grace=0.5)
            self._server = None

    async def restart(self) -> None:
        """A new process: the same address, a fresh registry (every counter back at zero)."""
        await self.stop()
        self.metrics = GatewayMetrics()
        await self.start()

    def traffic(self, requests: int, *, error_every: int = 0, seconds: float = 0.003,
                error_seconds: float | None = None, model: str = "add", endpoint: str = "infer") -> None:
        """`requests` answers; every `error_every`-th one a 500 (taking `error_seconds`)."""
        for i in range(1, requests + 1):
            failed = error_every > 0 and i % error_every == 0
            took = error_seconds if failed and error_seconds is not None else seconds
            self.metrics.observe(model, endpoint, 500 if failed else 200, took)


def free_shared_port(*addresses: str) -> int:
    """A port free on every one of `addresses` (they are all loopback, so almost any pick is)."""
    for _ in range(20):
        port = free_port(addresses[0])
        if all(_port_free(a, port) for a in addresses[1:]):
            return port
    raise RuntimeError(f"no port free on all of {addresses}")


def _port_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


class Prometheus:
    """A running Prometheus: its base URL and an async instant-query helper."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def query(self, expr: str) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session, \
                session.get(f"{self.url}/api/v1/query", params={"query": expr}) as response:
            body = await response.json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    async def wait_until(self, expr: str, ok: Callable[[list[dict[str, Any]]], bool], timeout: float = 15.0) -> None:
        """Poll `expr` until `ok(result)` (the loop stays free: the scraped servers run in it)."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = await self.query(expr)
            if ok(result):
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"{expr} never satisfied the condition in {timeout}s; last result {result}")


def find_prometheus() -> str:
    binary = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if binary is None:
        missing("prometheus not installed (Debian package prometheus; `make system-deps` installs it as root)")
    assert binary is not None
    return binary


@contextlib.asynccontextmanager
async def running_prometheus(scrape_configs: list[dict[str, Any]], scrape_interval: str = "1s",
                             ) -> AsyncIterator[Prometheus]:
    """A real Prometheus scraping `scrape_configs`, ready to answer queries; stopped on exit."""
    binary = find_prometheus()
    for job in scrape_configs:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                loopback(target.rsplit(":", 1)[0])
    workdir = Path(tempfile.mkdtemp(prefix="tritium-prometheus-"))
    config = {"global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
                         "evaluation_interval": scrape_interval},
              "scrape_configs": scrape_configs}
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"prometheus exited with {proc.returncode}: "
                                       f"{(workdir / 'prometheus.log').read_text()[-2000:]}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(f"{url}/-/ready") as response:
                        if response.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise RuntimeError("prometheus not ready after 30 s")
                await asyncio.sleep(0.1)
        yield Prometheus(url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
