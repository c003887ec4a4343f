"""Soak test: steady load through the gateway; zero failures and flat memory.

Runs Triton + pre/post stages + gateway (tests/data/models/identity, built-in stages), warms up,
records the RSS of every process, drives `--concurrency` invoke clients for `--duration`
seconds, then checks that no request failed and that each process' RSS at the end is within
`--rss-tolerance` of its value after warm-up.

    python benchmarks/soak.py [--duration 300] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.dataplane import base_spec, deploy, start_triton  # noqa: E402


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def drive(url: str, stop_at: float, counts: dict[str, int], lock: threading.Lock, seed: int) -> None:
    with httpx.Client(timeout=10) as client:
        i = seed
        while time.monotonic() < stop_at:
            i += 1
            body = {"inputs": {"INPUT0": [float(i % 97)] * 16}}
            try:
                ok = client.post(url, json=body).status_code == 200
            except httpx.HTTPError:
                ok = False
            with lock:
                counts["ok" if ok else "failed"] += 1


def load(url: str, seconds: float, concurrency: int) -> dict[str, int]:
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    threads = [threading.Thread(target=drive, args=(url, stop_at, counts, lock, n * 1000)) for n in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=300, help="seconds of steady load (default 300)")
    parser.add_argument("--warmup", type=float, default=20, help="seconds of load before the RSS baseline")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rss-tolerance", type=float, default=0.10)
    args = parser.parse_args()
    triton = start_triton(models=("identity",))
    spec = base_spec("identity", preprocess={"builtin": {"format": "json"}},
                     postprocess={"builtin": {"format": "json"}})
    dep = deploy(Path(tempfile.mkdtemp(prefix="tritium-soak-")), triton, spec, name="soak")
    url = f"{dep.url}/v1/models/identity/invoke"
    pids = {"triton": triton.pid, "gateway": dep.gateway.popen.pid}  # type: ignore[union-attr]
    pids.update({name: proc.popen.pid for name, proc in dep.stages.items()})  # type: ignore[union-attr]
    try:
        warm = load(url, args.warmup, args.concurrency)
        base = {name: rss_kib(pid) for name, pid in pids.items() if pid}
        start = time.monotonic()
        counts = load(url, args.duration, args.concurrency)
        elapsed = time.monotonic() - start
        end = {name: rss_kib(pid) for name, pid in pids.items() if pid}
    finally:
        dep.stop()
        triton.stop()
    failed = counts["failed"] + warm["failed"]
    print(f"requests: {counts['ok']} ok, {counts['failed']} failed in {elapsed:.0f}s "
          f"({counts['ok'] / elapsed:.0f} req/s, concurrency {args.concurrency}); warm-up failures {warm['failed']}")
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
