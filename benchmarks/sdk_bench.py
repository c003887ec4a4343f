"""SDK benchmark: the SDK against a bare httpx call to the same gateway, in the same run.

Gateway in front of a real Triton serving tests/data/models/identity (16 x FP32 in, the same
out: the cheapest model, so client overhead is as visible as it gets), gateway cache off.

* Concurrency 1: ``InferenceClient.invoke`` (and reading ``.outputs`` as numpy arrays) against
  ``httpx.Client.post(..., json=...)`` + ``.json()`` on one keep-alive connection. The two are
  interleaved in blocks so that background load hits both alike; the figure is the median over
  blocks of the relative difference in mean latency.
* Concurrency 8: ``AsyncInferenceClient.invoke_batch(items, concurrency=8)`` against 8
  hand-written ``httpx.AsyncClient`` workers pulling from one queue of the same requests;
  throughput ratio, median over rounds. ``InferenceClient.invoke_batch`` (threads) is reported too.

    python benchmarks/sdk_bench.py [--requests 400] [--rounds 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workdir import work_dir  # noqa: E402

from tests.support.dataplane import base_spec, deploy, start_triton  # noqa: E402
from tritium import AsyncInferenceClient, InferenceClient  # noqa: E402

TARGETS = {"overhead_c1": 0.10, "batch_ratio_c8": 0.90}
INPUTS = {"INPUT0": [float(i) for i in range(16)]}
BODY = {"inputs": INPUTS}


def bare_sync(http: httpx.Client, n: int) -> tuple[float, float]:
    """(wall seconds, client CPU seconds) per call: the gateway and Triton are other processes."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        r = http.post("/v1/models/identity/invoke", json=BODY)
        r.raise_for_status()
        r.json()
    return (time.perf_counter() - start) / n, (time.process_time() - cpu) / n


def sdk_sync(client: InferenceClient, n: int) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        client.invoke(model_id="identity", inputs=INPUTS).outputs  # noqa: B018 - decoding is part of the cost
    return (time.perf_counter() - start) / n, (time.process_time() - cpu) / n


async def bare_workers(url: str, n: int, workers: int) -> float:
    async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=workers)) as http:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n):
            queue.put_nowait(i)

        async def worker() -> None:
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                r = await http.post("/v1/models/identity/invoke", json=BODY)
                r.raise_for_status()
                r.json()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        return n / (time.perf_counter() - start)


async def sdk_batch(url: str, n: int, workers: int) -> float:
    async with AsyncInferenceClient(endpoint=url, max_connections=workers) as client:
        items = [{"inputs": INPUTS}] * n
        start = time.perf_counter()
        results = await client.invoke_batch(items, model_id="identity", concurrency=workers)
        for r in results:
            r.unwrap().outputs  # noqa: B018 - the bare workers decode their answers too
        elapsed = time.perf_counter() - start
    assert all(r.ok for r in results), next(r.error for r in results if not r.ok)
    return n / elapsed


def sdk_batch_threads(client: InferenceClient, n: int, workers: int) -> float:
    start = time.perf_counter()
    results = client.invoke_batch([{"inputs": INPUTS}] * n, model_id="identity", concurrency=workers)
    for r in results:
        r.unwrap().outputs  # noqa: B018 - decoded like the others
    elapsed = time.perf_counter() - start
    return n / elapsed


def run(url: str, requests: int, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with httpx.Client(base_url=url) as http, InferenceClient(endpoint=url) as client:
        bare_sync(http, 50), sdk_sync(client, 50)  # warm-up: connections, model instance, caches
        bare_ms, sdk_ms, overheads, bare_cpu, sdk_cpu = [], [], [], [], []
        for i in range(rounds * 2):
            # Alternate which goes first so that drifting background load does not favour one side.
            if i % 2:
                (s, sc), (b, bc) = sdk_sync(client, requests), bare_sync(http, requests)
            else:
                (b, bc), (s, sc) = bare_sync(http, requests), sdk_sync(client, requests)
            bare_ms.append(b * 1000)
            sdk_ms.append(s * 1000)
            bare_cpu.append(bc * 1e6)
            sdk_cpu.append(sc * 1e6)
            overheads.append(s / b - 1)
        out["c1"] = {"bare_ms": statistics.median(bare_ms), "sdk_ms": statistics.median(sdk_ms),
                     "overhead": statistics.median(overheads), "overheads": overheads,
                     "bare_client_cpu_us": statistics.median(bare_cpu), "sdk_client_cpu_us": statistics.median(sdk_cpu)}

        bare_rps, sdk_rps, thread_rps, ratios = [], [], [], []
        n = requests * 3
        asyncio.run(sdk_batch(url, 100, 8))  # warm-up
        for i in range(rounds):
            if i % 2:
                s = asyncio.run(sdk_batch(url, n, 8))
                b = asyncio.run(bare_workers(url, n, 8))
            else:
                b = asyncio.run(bare_workers(url, n, 8))
                s = asyncio.run(sdk_batch(url, n, 8))
            bare_rps.append(b)
            sdk_rps.append(s)
            ratios.append(s / b)
            thread_rps.append(sdk_batch_threads(client, n, 8))
        out["c8"] = {"bare_rps": statistics.median(bare_rps), "sdk_rps": statistics.median(sdk_rps),
                     "ratio": statistics.median(ratios), "ratios": ratios,
                     "sync_threads_rps": statistics.median(thread_rps),
                     "sync_threads_ratio": statistics.median(thread_rps) / statistics.median(bare_rps)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="requests per block at concurrency 1")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (c=1: twice as many blocks)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()

    triton = start_triton(models=("identity",))
    dep = deploy(work_dir("sdk-bench-"), triton, base_spec("identity"), name="sdkbench")
    try:
        results = run(dep.url, args.requests, args.rounds)
    finally:
        dep.stop()
        triton.stop()

    c1, c8 = results["c1"], results["c8"]
    print("concurrency 1 (mean latency per call, median of blocks)")
    print(f"  bare httpx   {c1['bare_ms']:.3f} ms")
    print(f"  SDK invoke   {c1['sdk_ms']:.3f} ms")
    print(f"  overhead     {c1['overhead'] * 100:+.1f} %   (blocks: "
          + ", ".join(f"{o * 100:+.1f}" for o in c1["overheads"]) + ")")
    print(f"  client CPU per call: bare {c1['bare_client_cpu_us']:.0f} us, SDK {c1['sdk_client_cpu_us']:.0f} us")
    print("concurrency 8 (throughput, median of rounds)")
    print(f"  8 bare async httpx workers        {c8['bare_rps']:.0f} req/s")
    print(f"  AsyncInferenceClient.invoke_batch {c8['sdk_rps']:.0f} req/s   ratio {c8['ratio']:.2f}x "
          "(rounds: " + ", ".join(f"{r:.2f}" for r in c8["ratios"]) + ")")
    print(f"  InferenceClient.invoke_batch      {c8['sync_threads_rps']:.0f} req/s   ratio "
          f"{c8['sync_threads_ratio']:.2f}x (threads)")
    met = {"overhead_c1": c1["overhead"] <= TARGETS["overhead_c1"],
           "batch_ratio_c8": c8["ratio"] >= TARGETS["batch_ratio_c8"]}
    verdict = {k: "met" if v else "NOT met" for k, v in met.items()}
    print(f"targets: overhead <= {TARGETS['overhead_c1'] * 100:.0f} % at c=1: {verdict['overhead_c1']}; "
          f"invoke_batch >= {TARGETS['batch_ratio_c8']:.2f}x at c=8: {verdict['batch_ratio_c8']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "targets": TARGETS, "met": met}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
