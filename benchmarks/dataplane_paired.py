"""Direct vs through the gateway under one steady load, switched between the paths every few seconds.

On a shared 2-core machine a model that keeps both cores busy (MiniLM) moves by +-15 % from one
perf_analyzer run to the next, more than the 5 % the target is about. Here one load generator
keeps C requests in flight the whole time and switches which path it sends them to every
--block seconds (direct, gateway, gateway+hops, rotating); each block's completions are counted
after a settling time, and each gateway block is compared with the direct blocks around it.
Slow drift then cancels out of the ratios, and many short blocks average the fast noise.

Load generator: this script (asyncio on uvloop, raw HTTP/1.1 keep-alive connections, the same
binary v2 request for every path: perf_analyzer's zero-filled inputs), not perf_analyzer,
which cannot switch targets mid-run. Paths as in dataplane_bench.py.

    python benchmarks/dataplane_paired.py [--model minilm|tiny] [--concurrency 8] [--blocks 60]
        [--block 4.0] [--settle 1.0] [--json FILE]
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
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dataplane_bench import PATHS, _minilm, _triton_for, with_stages  # noqa: E402
from workdir import work_dir  # noqa: E402

from tests.support.dataplane import base_spec, deploy, start_triton  # noqa: E402


def v2_request(model: str, inputs: dict[str, np.ndarray], host: str) -> bytes:
    """One binary-extension v2 infer request, headers included (outputs asked for in binary)."""
    header = {"inputs": [{"name": n, "shape": list(a.shape), "datatype": "INT64" if a.dtype == np.int64 else "FP32",
                          "parameters": {"binary_data_size": a.nbytes}} for n, a in inputs.items()],
              "parameters": {"binary_data_output": True}}
    head = json.dumps(header, separators=(",", ":")).encode()
    body = head + b"".join(a.tobytes() for a in inputs.values())
    return (f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\n"
            f"Inference-Header-Content-Length: {len(head)}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


class Load:
    """C workers; each sends to whichever path is current, one connection per worker and path."""

    def __init__(self, urls: dict[str, str], requests: dict[str, bytes], concurrency: int) -> None:
        self.urls, self.requests, self.concurrency = urls, requests, concurrency
        self.path = next(iter(urls))
        self.done: list[tuple[float, float, str]] = []  # (start, end, path) of each 200 answer
        self.failed = 0
        self.stop = False

    async def worker(self) -> None:
        conns: dict[str, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        clock = time.perf_counter  # the loop's clock may count whole milliseconds (libuv)
        while not self.stop:
            path = self.path
            if path not in conns:
                url = urlsplit(self.urls[path])
                conns[path] = await asyncio.open_connection(url.hostname, url.port)
            reader, writer = conns[path]
            start = clock()
            writer.write(self.requests[path])
            status = await read_response(reader)
            if status == 200:
                self.done.append((start, clock(), path))
            else:
                self.failed += 1
        for _, writer in conns.values():
            writer.close()

    async def run(self, order: list[str], block: float) -> list[tuple[str, float, float]]:
        """-> (path, block start, block end) for each block, in order."""
        workers = [asyncio.create_task(self.worker()) for _ in range(self.concurrency)]
        blocks = []
        for path in order:
            self.path = path
            began = time.perf_counter()
            await asyncio.sleep(block)
            blocks.append((path, began, time.perf_counter()))
        self.stop = True
        await asyncio.gather(*workers)
        return blocks


def rates(load: Load, blocks: list[tuple[str, float, float]], settle: float) -> list[tuple[str, float, float]]:
    """Each block's throughput and median latency, counting requests that started after `settle` s."""
    out = []
    for path, began, ended in blocks:
        window = [(s, e) for s, e, p in load.done if p == path and s >= began + settle and e <= ended]
        seconds = ended - began - settle
        latency = statistics.median(e - s for s, e in window) * 1000 if window else float("nan")
        out.append((path, len(window) / seconds, latency))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["minilm", "tiny"], default="minilm")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--blocks", type=int, default=60, help="blocks in all (a multiple of 3)")
    parser.add_argument("--block", type=float, default=4.0, help="seconds per block")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds not counted at the start of a block")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    workdir = work_dir("tritium-paired-")
    if args.model == "minilm":
        found = _minilm(workdir)
        if found is None:
            sys.exit("examples/minilm not found")
        repo, spec = found
        model = spec["model"]["name"]
        triton = _triton_for(repo, model)
        inputs = {n: np.zeros((1, 32), np.int64) for n in ("input_ids", "attention_mask", "token_type_ids")}
    else:
        model, spec = "identity", base_spec("identity")
        triton = start_triton(models=("identity",))
        inputs = {"INPUT0": np.zeros((1, 16), np.float32)}
    deps = {}
    try:
        for path, scripts in (("gateway", False), ("gateway+hops", True)):
            where = workdir / path.replace("+", "-")
            where.mkdir()
            deps[path] = deploy(where, triton, with_stages(spec, where, scripts), name=f"paired-{model}")
        urls = {"direct": triton.http_url, **{p: d.url for p, d in deps.items()}}
        requests = {p: v2_request(model, inputs, urlsplit(u).netloc) for p, u in urls.items()}
        order = [PATHS[i % len(PATHS)] for i in range(args.blocks)]
        load = Load(urls, requests, args.concurrency)
        import uvloop

        uvloop.install()
        blocks = asyncio.run(load.run(order, args.block))
    finally:
        for dep in deps.values():
            dep.stop()
        triton.stop()
    measured = rates(load, blocks, args.settle)
    # Each gateway block against the mean of the direct blocks just before and just after it.
    ratios: dict[str, list[float]] = {p: [] for p in PATHS[1:]}
    for i, (path, rate, _) in enumerate(measured):
        if path == "direct":
            continue
        around = [measured[j][1] for j in (i - 1, i + 1, i - 2, i + 2)
                  if 0 <= j < len(measured) and measured[j][0] == "direct"]
        if around:
            ratios[path].append(rate / statistics.mean(around))
    print(f"model {model}, concurrency {args.concurrency}, {args.blocks} blocks of {args.block:g} s "
          f"(first {args.settle:g} s of each not counted), failed requests: {load.failed}\n")
    print("| path | blocks | infer/s, median (min-max) | median latency (ms) | vs direct, median of block ratios |")
    print("|---|---|---|---|---|")
    result: dict[str, Any] = {"model": model, "concurrency": args.concurrency, "failed": load.failed,
                              "blocks": measured, "paths": {}}
    for path in PATHS:
        values = [r for p, r, _ in measured if p == path]
        lat = statistics.median(x for p, _, x in measured if p == path)
        ratio = f"{statistics.median(ratios[path]):.3f}x" if ratios.get(path) else ""
        print(f"| {path} | {len(values)} | {statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f}) "
              f"| {lat:.2f} | {ratio} |")
        result["paths"][path] = {"median_rate": statistics.median(values), "median_latency_ms": lat,
                                 "ratio": statistics.median(ratios[path]) if path in ratios else None}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
