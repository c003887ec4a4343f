"""Soak test: steady load through the gateway; zero failures and flat memory.

`--model minilm` (default): the MiniLM example exactly as `tritium up -f examples/minilm/isvc.yaml`
runs it (tokenizer pre script, transformer in Triton, pooling post script), with the gateway's
response cache turned off so that every request goes through the whole pipeline.
`--model tiny`: tests/data/models/identity with built-in pre and post stages.

Warms up, records the RSS of every process, drives `--concurrency` invoke clients for
`--duration` seconds, then checks that no request failed and that each process' RSS at the end
is within `--rss-tolerance` of its value after warm-up.

    python benchmarks/soak.py [--duration 300] [--concurrency 4] [--model minilm|tiny]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workdir import work_dir  # noqa: E402

from tests.support.dataplane import base_spec, deploy, start_triton  # noqa: E402


def with_stubs(pids: dict[str, int]) -> dict[str, int]:
    """Add Triton's python-backend stubs (its children: they hold the models) to the watched processes."""
    out = dict(pids)
    triton = pids.get("triton")
    if triton:
        for task in Path(f"/proc/{triton}/task").iterdir():
            for n, child in enumerate((task / "children").read_text().split()):
                out[f"triton stub {n}"] = int(child)
    return out


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven", "tired",
         "engineers", "watch", "memory", "graphs"]


def tiny_body(i: int) -> dict:
    return {"inputs": {"INPUT0": [float(i % 97)] * 16}}


def minilm_body(i: int) -> dict:
    words = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(4 + i % 9)]
    return {"inputs": {"text": [" ".join(words), f"request number {i}"]}}


def drive(url: str, stop_at: float, counts: dict[str, int], lock: threading.Lock, seed: int, make: Any) -> None:
    with httpx.Client(timeout=30) as client:
        i = seed
        while time.monotonic() < stop_at:
            i += 1
            body = make(i)
            try:
                ok = client.post(url, json=body).status_code == 200
            except httpx.HTTPError:
                ok = False
            with lock:
                counts["ok" if ok else "failed"] += 1


def load(url: str, seconds: float, concurrency: int, make: Any) -> dict[str, int]:
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    threads = [threading.Thread(target=drive, args=(url, stop_at, counts, lock, n * 100_000, make))
               for n in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


@contextlib.contextmanager
def tiny_pipeline() -> Iterator[tuple[str, dict[str, int]]]:
    triton = start_triton(models=("identity",))
    spec = base_spec("identity", preprocess={"builtin": {"format": "json"}},
                     postprocess={"builtin": {"format": "json"}})
    try:
        dep = deploy(work_dir("tritium-soak-"), triton, spec, name="soak")
    except BaseException:
        triton.stop()
        raise
    pids = {"triton": triton.pid, "gateway": dep.gateway.popen.pid}  # type: ignore[union-attr]
    pids.update({name: proc.popen.pid for name, proc in dep.stages.items()})  # type: ignore[union-attr]
    try:
        yield f"{dep.url}/v1/models/identity/invoke", {k: v for k, v in pids.items() if v}
    finally:
        dep.stop()
        triton.stop()


@contextlib.contextmanager
def minilm_pipeline() -> Iterator[tuple[str, dict[str, int]]]:
    from tritium.local.manifest import load_manifest
    from tritium.local.runner import LocalRun

    isvc = load_manifest(str(ROOT / "examples" / "minilm" / "isvc.yaml"))
    spec = isvc.spec.model_copy(update={"gateway": isvc.spec.gateway.model_copy(
        update={"cache": isvc.spec.gateway.cache.model_copy(update={"enabled": False})})})
    run = LocalRun(isvc.model_copy(update={"spec": spec}), open(os.devnull, "w"))  # noqa: SIM115
    try:
        url = run.start()
        pids = {name: child.process.pid for name, child in run.children.items()}
        if run.triton is not None and run.triton.pid:
            pids["triton"] = run.triton.pid
        yield f"{url}/v1/models/{isvc.spec.model.name}/invoke", pids
    finally:
        run.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=300, help="seconds of steady load (default 300)")
    parser.add_argument("--warmup", type=float, default=30, help="seconds of load before the RSS baseline")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--model", choices=["minilm", "tiny"], default="minilm")
    parser.add_argument("--rss-tolerance", type=float, default=0.10)
    args = parser.parse_args()
    pipeline, make = (minilm_pipeline, minilm_body) if args.model == "minilm" else (tiny_pipeline, tiny_body)
    with pipeline() as (url, pids):
        warm = load(url, args.warmup, args.concurrency, make)
        pids = with_stubs(pids)
        base = {name: rss_kib(pid) for name, pid in pids.items()}
        start = time.monotonic()
        counts = load(url, args.duration, args.concurrency, make)
        elapsed = time.monotonic() - start
        end = {name: rss_kib(pid) for name, pid in pids.items()}
    failed = counts["failed"] + warm["failed"]
    print(f"model {args.model}: {counts['ok']} ok, {counts['failed']} failed in {elapsed:.0f}s "
          f"({counts['ok'] / elapsed:.1f} req/s, concurrency {args.concurrency}); warm-up failures {warm['failed']}")
    ok = failed == 0
    print("| process | RSS after warm-up (MiB) | RSS at end (MiB) | change |")
    print("|---|---|---|---|")
    for name in base:
        change = (end[name] - base[name]) / base[name] if base[name] else 0.0
        ok = ok and abs(change) <= args.rss_tolerance
        print(f"| {name} | {base[name] / 1024:.1f} | {end[name] / 1024:.1f} | {change:+.1%} |")
    print("soak:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
