"""The canary split between two real gateway processes (a stable and a canary revision) on loopback.

The stable gateway reads a traffic file naming the canary gateway's URL; every answer says which
revision served it (X-Tritium-Revision). Both gateways share the session's real Triton, on the
`add` model: v2 requests pass through to Triton byte for byte, the cheapest real inference here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import httpx
import orjson
import pytest

from tests.support.dataplane import Proc, base_spec, write_config
from tritium.local.tritonserver import TritonServer, free_port

STABLE, CANARY = "stable0001", "canary0001"
REVISION = "X-Tritium-Revision"
ROUTED = "X-Tritium-Routed"
BODY = orjson.dumps({"inputs": [
    {"name": "INPUT0", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]},
    {"name": "INPUT1", "datatype": "FP32", "shape": [1, 2], "data": [3, 4]},
]})
JSON = {"Content-Type": "application/json"}


class TrafficDir:
    """A ConfigMap volume as kubelet keeps it: traffic.json -> ..data/traffic.json, ..data swapped on update."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir()
        self.directory = directory
        self.path = directory / "traffic.json"
        self.generation = 0

    def write(self, content: bytes) -> None:
        self.generation += 1
        data = self.directory / f"..gen{self.generation}"
        data.mkdir()
        (data / "traffic.json").write_bytes(content)
        tmp = self.directory / "..data_tmp"
        tmp.symlink_to(data.name)
        os.replace(tmp, self.directory / "..data")
        if not self.path.is_symlink():
            self.path.symlink_to("..data/traffic.json")

    def split(self, stable: str, canary: str | None, weight: int, url: str | None) -> None:
        self.write(json.dumps({"stable": stable, "canary": canary, "canaryWeight": weight, "canaryUrl": url}).encode())


@dataclass
class Gateway:
    revision: str
    url: str
    metrics_url: str
    proc: Proc
    traffic: TrafficDir


@dataclass
class Pair:
    stable: Gateway
    canary: Gateway


def _gateway(directory: Path, triton: TritonServer, revision: str) -> Gateway:
    config = write_config(directory, base_spec("add", gateway={"requestTimeoutSeconds": 10}), revision=revision)
    traffic = TrafficDir(directory / f"traffic-{revision}")
    port, metrics_port = free_port(), free_port()
    proc = Proc(["gateway", "--spec", str(config), "--host", "127.0.0.1", "--port", str(port),
                 "--metrics-port", str(metrics_port), "--triton-grpc", triton.grpc_address,
                 "--triton-http", triton.http_url, "--traffic-file", str(traffic.path)],
                f"http://127.0.0.1:{port}/v2/health/live")
    return Gateway(revision, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics", proc, traffic)


@pytest.fixture(scope="module")
def pair(triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    directory = tmp_path_factory.mktemp("canary")
    stable, canary = _gateway(directory, triton, STABLE), _gateway(directory, triton, CANARY)
    for gw in (stable, canary):
        for url in (gw.url, gw.metrics_url, triton.http_url):
            assert ipaddress.ip_address(urlsplit(url).hostname or "").is_loopback, url
    stable.traffic.split(STABLE, CANARY, 5, canary.url)
    canary.traffic.split(STABLE, CANARY, 5, canary.url)  # the same ConfigMap: the canary must ignore it
    try:
        for gw in (stable, canary):
            gw.proc.launch()
        for gw in (stable, canary):
            gw.proc.wait_ready()
        yield Pair(stable, canary)
    finally:
        stable.proc.stop()
        canary.proc.stop()


def _load(url: str, n: int, concurrency: int = 8, path: str = "/v2/models/add/infer",
          headers: dict[str, str] | None = None,
          on_answer: Callable[[int], None] | None = None) -> Counter[tuple[int, str]]:
    """n inference requests, `concurrency` at a time: how many answers came with each (status, revision)."""

    async def run() -> Counter[tuple[int, str]]:
        seen: Counter[tuple[int, str]] = Counter()
        left = iter(range(n))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

            async def worker() -> None:
                for _ in left:
                    try:
                        async with session.post(url + path, data=BODY, headers={**JSON, **(headers or {})}) as r:
                            await r.read()
                            seen[(r.status, r.headers.get(REVISION, ""))] += 1
                    except aiohttp.ClientError as exc:
                        seen[(0, type(exc).__name__)] += 1
                    if on_answer is not None:
                        on_answer(sum(seen.values()))

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return seen

    return asyncio.run(run())


def _metric(url: str, name: str, **labels: str) -> float:
    """The sum of a counter's samples whose labels include `labels`."""
    total = 0.0
    for line in httpx.get(url).text.splitlines():
        match = re.match(rf"{name}(?:_total)?\{{(.*)\}} (\S+)$", line)
        if match is None:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def _revision_of(url: str, headers: dict[str, str] | None = None) -> str:
    r = httpx.post(f"{url}/v2/models/add/infer", content=BODY, headers={**JSON, **(headers or {})})
    assert r.status_code == 200, r.text
    return r.headers[REVISION]


def _wait_for(predicate: Callable[[], bool], timeout: float) -> float:
    """Seconds until `predicate` holds (polled every 20 ms), failing after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"not applied within {timeout} s")


def test_exactly_the_weight_goes_to_the_canary_over_10000_requests(pair: Pair) -> None:
    stable, canary = pair.stable, pair.canary
    before = {
        "stable": _metric(stable.metrics_url, "tritium_gateway_requests", endpoint="infer"),
        "forwarded": _metric(stable.metrics_url, "tritium_gateway_forwarded_requests", revision=CANARY, code="200"),
        "canary": _metric(canary.metrics_url, "tritium_gateway_requests", endpoint="infer"),
    }
    seen = _load(stable.url, 10_000)
    assert sum(seen.values()) == 10_000
    assert set(seen) == {(200, STABLE), (200, CANARY)}, seen
    share = seen[(200, CANARY)] / 10_000 * 100
    assert abs(share - 5) <= 1, seen
    assert seen[(200, CANARY)] == 500  # deterministic, not sampled: exact to the request
    # The stable gateway counts what it served; the forwarded requests are the canary's to count.
    assert _metric(stable.metrics_url, "tritium_gateway_requests", endpoint="infer") - before["stable"] == 9_500
    assert _metric(stable.metrics_url, "tritium_gateway_forwarded_requests", revision=CANARY,
                   code="200") - before["forwarded"] == 500
    assert _metric(canary.metrics_url, "tritium_gateway_requests", endpoint="infer") - before["canary"] == 500
    assert _metric(canary.metrics_url, "tritium_gateway_forwarded_requests") == 0  # the canary never forwards


def _all_forwarded(url: str) -> bool:
    """Three answers in a row from the canary: a weight of 100 is applied. One canary answer would
    not tell: under the old weight every 1/w-th request goes there too (each 20th at 5 %)."""
    return all(_revision_of(url) == CANARY for _ in range(3))


def test_the_canary_answer_comes_back_unchanged_and_only_inference_is_split(pair: Pair) -> None:
    stable, canary = pair.stable, pair.canary
    stable.traffic.split(STABLE, CANARY, 100, canary.url)
    _wait_for(lambda: _all_forwarded(stable.url), 3)

    via = httpx.post(f"{stable.url}/v2/models/add/infer?x=1", content=BODY, headers={**JSON, "X-Request-Id": "rq-1"})
    direct = httpx.post(f"{canary.url}/v2/models/add/infer?x=1", content=BODY, headers={**JSON, "X-Request-Id": "rq-1"})
    assert via.status_code == direct.status_code == 200
    assert via.content == direct.content
    assert {k: v for k, v in via.headers.items() if k != "date"} == {
        k: v for k, v in direct.headers.items() if k != "date"}
    assert via.headers[REVISION] == CANARY and via.headers["X-Request-Id"] == "rq-1"

    invoke = httpx.post(f"{stable.url}/v1/models/add/invoke", json={"inputs": {"INPUT0": [1], "INPUT1": [2]}})
    assert invoke.status_code == 200 and invoke.headers[REVISION] == CANARY
    assert invoke.json()["revision"] == CANARY and invoke.json()["outputs"]["SUM"] == [[3.0]]

    # The canary's errors are the canary's answers: not retried here, not served by the stable revision.
    # (Error answers carry no revision header: the canary's metrics tell whose 400 it was.)
    errors = _metric(canary.metrics_url, "tritium_gateway_requests", endpoint="invoke", code="400")
    bad = httpx.post(f"{stable.url}/v1/models/add/invoke", json={"inputs": {"INPUT0": [1]}})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "inputs"
    assert _metric(canary.metrics_url, "tritium_gateway_requests", endpoint="invoke", code="400") == errors + 1
    assert _metric(stable.metrics_url, "tritium_gateway_forwarded_requests", revision=CANARY, code="400") >= 1

    # The deadline travels along: the canary is given what is left of it and answers its own 504.
    timeouts = _metric(canary.metrics_url, "tritium_gateway_requests", endpoint="invoke", code="504")
    start = time.monotonic()
    slow = httpx.post(f"{stable.url}/v1/models/slow/invoke", json={"inputs": {"SECONDS": [1.5]}},
                      headers={"X-Request-Timeout": "0.4"})
    assert slow.status_code == 504 and time.monotonic() - start < 1.2, slow.text
    assert _metric(canary.metrics_url, "tritium_gateway_requests", endpoint="invoke", code="504") == timeouts + 1

    chunks: list[bytes] = []
    with httpx.stream("POST", f"{stable.url}/v1/models/stream/stream",
                      json={"inputs": {"PROMPT": "tokens arrive one by one"}}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert r.headers[REVISION] == CANARY
        chunks.extend(r.iter_raw())
    events = [e for e in b"".join(chunks).decode().split("\n\n") if e.strip()]
    assert events[-1].startswith("event: done")
    assert "".join(orjson.loads(e.removeprefix("data: "))["text"] for e in events[:-1]) == "tokens arrive one by one"
    assert len(chunks) > 1  # relayed as the canary sent them, not gathered first

    # Health, metadata and the repository are always this gateway's own.
    for method, path in (("GET", "/v2/health/live"), ("GET", "/v2/health/ready"), ("GET", "/v2/models/add"),
                         ("GET", "/v2/models/add/ready"), ("GET", "/v2/models/add/config"), ("POST",
                         "/v2/repository/index")):
        r = httpx.request(method, stable.url + path)
        assert r.status_code == 200 and r.headers[REVISION] == STABLE, (path, r.text)
    # So is a request that was forwarded once already.
    assert _revision_of(stable.url, {ROUTED: "someone"}) == STABLE


def test_a_new_weight_applies_within_two_seconds(pair: Pair) -> None:
    stable, canary = pair.stable, pair.canary
    stable.traffic.split(STABLE, CANARY, 100, canary.url)
    _wait_for(lambda: _all_forwarded(stable.url), 3)
    stable.traffic.split(STABLE, CANARY, 20, canary.url)
    took = _wait_for(lambda: _revision_of(stable.url) == STABLE, 5)
    assert took < 2.2, f"the new weight took {took:.2f} s"
    seen = _load(stable.url, 1_000)
    assert seen[(200, CANARY)] == 200 and seen[(200, STABLE)] == 800, seen

    stable.traffic.write(b"{ this is not json")
    _wait_for(lambda: all(_revision_of(stable.url) == STABLE for _ in range(10)), 3)
    assert _load(stable.url, 200) == Counter({(200, STABLE): 200})
    assert "is invalid: not valid JSON" in stable.proc.output()


def test_a_forwarded_request_is_not_forwarded_again(pair: Pair) -> None:
    """Two files that disagree (each gateway thinks it is stable and the other the canary) would
    bounce every request between them; the routed header stops it at the second hop."""
    stable, canary = pair.stable, pair.canary
    stable.traffic.split(STABLE, CANARY, 100, canary.url)
    canary.traffic.split(CANARY, STABLE, 100, stable.url)
    try:
        _wait_for(lambda: _revision_of(canary.url) == STABLE, 3)
        _wait_for(lambda: _revision_of(stable.url) == CANARY, 3)
        assert _load(stable.url, 300) == Counter({(200, CANARY): 300})
        assert _load(canary.url, 300) == Counter({(200, STABLE): 300})
    finally:
        canary.traffic.split(STABLE, CANARY, 100, canary.url)
    _wait_for(lambda: _revision_of(canary.url) == CANARY, 3)


def test_a_killed_canary_fails_no_request(pair: Pair) -> None:
    """A rollback deletes the canary's pods while the file still names it: its share is served here."""
    stable, canary = pair.stable, pair.canary
    stable.traffic.split(STABLE, CANARY, 50, canary.url)
    _wait_for(lambda: _revision_of(stable.url) == CANARY, 3)
    fallback_before = _metric(stable.metrics_url, "tritium_gateway_forwarded_requests", code="fallback")
    killed = threading.Event()

    def kill_midway(answered: int) -> None:
        if answered >= 500 and not killed.is_set():
            killed.set()
            canary.proc.kill()  # SIGKILL, with forwarded requests in flight

    seen = _load(stable.url, 3_000, on_answer=kill_midway)
    assert killed.is_set()
    assert sum(seen.values()) == 3_000
    assert {status for status, _ in seen} == {200}, seen  # not one failure
    assert seen[(200, CANARY)] < 1_000 and seen[(200, STABLE)] > 2_000, seen
    assert _metric(stable.metrics_url, "tritium_gateway_forwarded_requests", code="fallback") - fallback_before > 500
    # Afterwards every request is this revision's, and a refused connect costs no noticeable time.
    start = time.monotonic()
    assert _load(stable.url, 200, concurrency=1) == Counter({(200, STABLE): 200})
    assert time.monotonic() - start < 10
    assert "unreachable" in stable.proc.output()
