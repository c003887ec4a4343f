"""The gateway path with no stage called, against direct Triton: throughput and CPU per request, one run.

The "gateway" path of dataplane_bench.py (tiny identity model, built-in JSON stages that the
gateway skips for v2 requests, so each request goes perf_analyzer -> gateway -> Triton byte for
byte) measured on its own, with the CPU time of each process, and optionally with other copies
of the data plane side by side behind the same Triton (`--tree NAME=DIR`, DIR/operator on the
gateway's PYTHONPATH): before/after figures of one change from one run.

    python benchmarks/gateway_path_bench.py [--rounds 5] [--concurrency 8] [--interval-ms 3000]
        [--tree before=/tmp/base] [--security] [--json out.json]

`--security` adds a path through a second gateway of this checkout with every request-side
layer of spec.security on: an API key (perf_analyzer sends it, 10 keys in the file), an IP
allowlist, a rate limit high enough never to refuse, and the audit log (a JSON line per request
on the gateway's stdout, a file here as a pod's is a pipe).

Each round measures every path once, the first path moving on by one each round; the table gives
medians, and each ratio is the median of the per-round ratios (path round i / direct round i).
CPU per request: utime + stime from /proc/PID/stat over the whole perf_analyzer run, divided by
the requests at the measured rate (Triton's figure includes its python backend stubs).
perf_analyzer runs that fail to stabilise (a busy shared machine) are retried up to 3 times.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dataplane_bench import perf_analyzer, with_stages  # noqa: E402
from dataplane_cpu import tree_cpu_seconds  # noqa: E402
from security_bench import ALL_LAYERS  # noqa: E402
from workdir import work_dir  # noqa: E402

from tests.support.dataplane import base_spec, deploy, start_triton  # noqa: E402
from tritium.dataplane.security.apikeys import entry, new_key  # noqa: E402
from tritium.dataplane.security.layers import API_KEYS_FILE_ENV  # noqa: E402

SECURED = "gateway+security"
SECURITY = ALL_LAYERS  # security_bench.py's: the same layers, measured in process there


def run_pa(pa: tuple[str, dict[str, str]], target: str, concurrency: int, interval_ms: int, out: Path,
           pids: dict[str, int], headers: tuple[str, ...] = ()) -> tuple[dict[str, float], float, dict[str, float]]:
    """One perf_analyzer run -> (figures, wall seconds, CPU seconds of each pid before it); retried when
    it does not stabilise (the CPU and the time of the run that counts only)."""
    cmd = [pa[0], "-m", "identity", "--shape", "INPUT0:16", "-u", target, "-i", "http", "--concurrency-range",
           str(concurrency), "--measurement-interval", str(interval_ms), "--stability-percentage", "50",
           "--max-trials", "5", "-f", str(out), *(a for h in headers for a in ("-H", h))]
    for attempt in range(3):
        before = {n: tree_cpu_seconds(p) for n, p in pids.items()}
        began = time.monotonic()
        proc = subprocess.run(cmd, env=pa[1], capture_output=True, text=True)
        elapsed = time.monotonic() - began
        if proc.returncode == 0:
            row = next(csv.DictReader(out.open()))
            return {"throughput": float(row["Inferences/Second"]), "p50_ms": float(row["p50 latency"]) / 1000,
                    "p99_ms": float(row["p99 latency"]) / 1000}, elapsed, before
        print(f"  (perf_analyzer did not stabilise on {target}, attempt {attempt + 1})", file=sys.stderr)
    raise RuntimeError(f"perf_analyzer failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-1000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8])
    parser.add_argument("--interval-ms", type=int, default=3000)
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=DIR",
                        help="also a gateway from DIR/operator, labelled NAME (repeatable)")
    parser.add_argument("--trees-only", action="store_true",
                        help="only the --tree gateways, not this checkout's (e.g. while it is mid-edit)")
    parser.add_argument("--security", action="store_true",
                        help="also the gateway with API key, allowlist, rate limit and audit on")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    pa = perf_analyzer()
    work = work_dir("tritium-gwpath-")
    triton = start_triton(models=("identity",))
    assert triton.process is not None
    spec = with_stages(base_spec("identity"), work, scripts=False)
    trees = [] if args.trees_only else [("gateway", None)]
    trees += [tuple(t.split("=", 1)) for t in args.tree]
    deps: dict[str, Any] = {}
    results: dict[str, Any] = {}
    headers: dict[str, tuple[str, ...]] = {}
    try:
        for name, tree in trees:
            where = work / name
            where.mkdir()
            env = {"PYTHONPATH": str(Path(tree) / "operator")} if tree else None
            deps[name] = deploy(where, triton, spec, env=env, name=f"bench-{name}")
        if args.security:
            key = new_key()
            keys = work / "keys"
            keys.write_text("".join(f"{entry(f'key{i}', new_key())}\n" for i in range(9)) + entry("bench", key) + "\n")
            secured = {**spec, "security": SECURITY}
            (work / "secured").mkdir()
            deps[SECURED] = deploy(work / "secured", triton, secured, env={API_KEYS_FILE_ENV: str(keys)},
                                   name="bench-secured")
            headers[SECURED] = (f"Authorization: Bearer {key}",)
        targets = {"direct": triton.http_url.removeprefix("http://"),
                   **{n: d.url.removeprefix("http://") for n, d in deps.items()}}
        pids = {"triton": triton.process.pid,
                **{n: d.gateway.popen.pid for n, d in deps.items() if d.gateway.popen is not None}}
        paths = list(targets)
        print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
        for c in args.concurrency:
            runs: dict[str, list[dict[str, float]]] = {p: [] for p in paths}
            for r in range(args.rounds):
                for path in paths[r % len(paths):] + paths[:r % len(paths)]:
                    figures, elapsed, before = run_pa(pa, targets[path], c, args.interval_ms,
                                                      work / f"{path}-{c}.csv", pids, headers.get(path, ()))
                    requests = figures["throughput"] * elapsed
                    figures["triton_cpu_us"] = (tree_cpu_seconds(pids["triton"]) - before["triton"]) / requests * 1e6
                    if path != "direct":
                        figures["gateway_cpu_us"] = (tree_cpu_seconds(pids[path]) - before[path]) / requests * 1e6
                    runs[path].append(figures)
                    print(f"  c={c} round {r + 1} {path}: {figures['throughput']:.0f}/s, p50 "
                          f"{figures['p50_ms']:.2f} ms, triton {figures['triton_cpu_us']:.0f} us"
                          + (f", gateway {figures['gateway_cpu_us']:.0f} us" if path != "direct" else ""),
                          flush=True)
            row: dict[str, Any] = {"rounds": runs}
            for path in paths:
                row[path] = {k: statistics.median(m[k] for m in runs[path]) for k in runs[path][0]}
                if path != "direct":
                    ratios = [g["throughput"] / d["throughput"] for g, d in zip(runs[path], runs["direct"],
                                                                                 strict=True)]
                    row[path]["ratio"] = statistics.median(ratios)
                    row[path]["ratio_min"], row[path]["ratio_max"] = min(ratios), max(ratios)
            results[f"c{c}"] = row
        print(f"load average at end: {os.getloadavg()[0]:.2f}\n")
        print("| c | path | infer/s | p50 (ms) | p99 (ms) | vs direct (per-round min-max) | gateway CPU us/req "
              "| Triton CPU us/req |")
        print("|---|---|---:|---:|---:|---|---:|---:|")
        for key, row in results.items():
            for path in paths:
                m = row[path]
                ratio = (f"**{m['ratio']:.2f}x** ({m['ratio_min']:.2f}-{m['ratio_max']:.2f})"
                         if path != "direct" else "")
                gw = f"{m['gateway_cpu_us']:.0f}" if path != "direct" else "-"
                print(f"| {key[1:]} | {path} | {m['throughput']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | "
                      f"{ratio} | {gw} | {m['triton_cpu_us']:.0f} |")
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    finally:
        for dep in deps.values():
            dep.stop()
        triton.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
