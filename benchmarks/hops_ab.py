"""Called stages, tree against tree in one run: direct Triton and each checkout's gateway+hops pod.

On the shared 2-core machine, direct Triton moves by 10-15 % between runs minutes apart, more
than a change to the stage hop is worth; two separate `dataplane_bench.py` runs cannot tell such
a change from the drift. Here one Triton serves every path, each tree's pod (gateway and
pass-through script stages on their Unix sockets, as `gateway+hops` in dataplane_bench.py) runs
beside the others, and perf_analyzer measures the paths in turn, each round in another order.
Ratios and added latency are against the direct run of the same round; figures are medians.

    python benchmarks/hops_ab.py --ref main~1 [--tree NAME=DIR] [--rounds 5] [--concurrency 1 8]
        [--interval-ms 3000] [--json FILE]

`--ref REF` adds the data plane of a commit of this repository (checked out for the run in a
temporary git worktree, removed after), `--tree NAME=DIR` that of DIR/operator; "this" is this
checkout's. `make bench-hops-ab REF=...` runs the first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dataplane_bench import against_direct, measure, perf_analyzer, with_stages  # noqa: E402
from workdir import work_dir  # noqa: E402

from tests.support.dataplane import base_spec, deploy, start_triton  # noqa: E402

SHAPE = "--shape=INPUT0:16"


def run(trees: dict[str, Path], rounds: int, concurrencies: list[int], interval_ms: int) -> dict[str, Any]:
    pa = perf_analyzer()
    work = work_dir("hops-ab-")
    triton = start_triton(models=("identity",))
    deps = {}
    try:
        for name, tree in trees.items():
            where = work / name
            where.mkdir()
            deps[name] = deploy(where, triton, with_stages(base_spec("identity"), where, True),
                                env={"PYTHONPATH": str(tree / "operator")}, name=f"ab-{name}")
        urls = {"direct": triton.http_url, **{name: dep.url for name, dep in deps.items()}}
        paths = list(urls)
        results: dict[str, Any] = {}
        for c in concurrencies:
            runs: dict[str, list[dict[str, float]]] = {p: [] for p in paths}
            for r in range(rounds):
                for p in paths[r % len(paths):] + paths[:r % len(paths)]:
                    runs[p].append(measure(pa, urls[p], "identity", SHAPE, c, interval_ms, work))
            row: dict[str, Any] = {"rounds": runs}
            for p in paths:
                row[p] = {k: statistics.median(m[k] for m in runs[p]) for k in runs[p][0]}
            for name in deps:
                row[name]["ratio"], row[name]["added_p50_ms"] = against_direct(runs[name], runs["direct"])
            results[f"c{c}"] = row
    finally:
        for dep in [*deps.values(), triton]:
            dep.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", help="a commit to compare with (a temporary worktree of it)")
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--interval-ms", type=int, default=3000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    trees = {"this": ROOT}
    for item in args.tree:
        name, _, directory = item.partition("=")
        if not name or name in trees or not (Path(directory) / "operator" / "tritium").is_dir():
            parser.error(f"--tree wants NAME=DIR with DIR/operator/tritium, got {item!r}")
        trees[name] = Path(directory)
    worktree = None
    if args.ref:
        worktree = Path(tempfile.mkdtemp(prefix="hops-ab-ref-"))
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--quiet", "--detach", str(worktree), args.ref],
                       check=True)
        trees[args.ref] = worktree
    try:
        results = run(trees, args.rounds, args.concurrency, args.interval_ms)
    finally:
        if worktree is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False)
    print(f"{args.rounds} rounds per concurrency, paths alternating; medians (ratios and added p50 per round)\n")
    print("| concurrency | path | infer/s | p50 / p99 (ms) | vs direct | added p50 (ms) |")
    print("|---:|---|---:|---|---:|---:|")
    for c, row in results.items():
        for p in ["direct", *trees]:
            m = row[p]
            vs = f"{m['ratio']:.2f}x" if "ratio" in m else ""
            added = f"{m['added_p50_ms']:+.2f}" if "added_p50_ms" in m else ""
            latency = f"{m['p50_ms']:.2f} / {m['p99_ms']:.2f}"
            print(f"| {c[1:]} | {p} | {m['throughput']:,.0f} | {latency} | {vs} | {added} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
