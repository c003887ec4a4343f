"""Resident memory of one pod's Tritium processes (gateway, pre and post stage), tree against tree.

Every pod runs these three processes beside Triton, so what each one holds is paid once per
replica. The pipeline is dataplane_bench.py's: the tiny identity model, pass-through script stages
on their Unix sockets. Each tree's processes are started, sent `--requests` v2 inferences (so what
a request touches is loaded), then measured (VmRSS from /proc) and stopped; trees alternate, one
at a time, for `--rounds` rounds, against the same Triton.

    python benchmarks/process_rss.py [--rounds 3] [--requests 500] [--tree NAME=DIR ...]

Without --tree it measures this checkout only; `--tree before=/tmp/base` adds DIR/operator's
data plane (a git worktree of another commit).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dataplane_bench import with_stages  # noqa: E402
from workdir import work_dir  # noqa: E402

from tests.support.dataplane import base_spec, deploy, start_triton  # noqa: E402

PROCESSES = ("gateway", "pre", "post")
BODY = {"inputs": [{"name": "INPUT0", "shape": [1, 16], "datatype": "FP32", "data": [1.0] * 16}]}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def one_round(tree: Path, triton: object, spec: dict, work: Path, requests: int) -> dict[str, float]:
    env = {"PYTHONPATH": str(tree / "operator")}
    dep = deploy(work, triton, spec, env=env, name="rss")  # type: ignore[arg-type]
    try:
        with httpx.Client(base_url=dep.url, timeout=10) as client:
            for _ in range(requests):
                client.post("/v2/models/identity/infer", json=BODY).raise_for_status()
        procs = {"gateway": dep.gateway, **dep.stages}
        return {name: rss_mb(procs[name].popen.pid) for name in PROCESSES}  # type: ignore[union-attr]
    finally:
        dep.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=DIR",
                        help="another checkout whose operator/ package is measured too")
    args = parser.parse_args()
    trees = {"this": ROOT}
    for item in args.tree:
        name, _, directory = item.partition("=")
        if not directory or not (Path(directory) / "operator" / "tritium").is_dir():
            parser.error(f"--tree wants NAME=DIR with DIR/operator/tritium, got {item!r}")
        trees[name] = Path(directory)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    work = work_dir("tritium-process-rss-")
    spec = with_stages(base_spec("identity"), work, scripts=True)
    triton = start_triton(models=("identity",))
    try:
        for r in range(args.rounds):
            for name, tree in trees.items():
                results[name].append(one_round(tree, triton, spec, work, args.requests))
                print(f"round {r + 1} {name}: " + ", ".join(
                    f"{p} {results[name][-1][p]:.1f} MB" for p in PROCESSES), flush=True)
    finally:
        triton.stop()
    print(f"\nVmRSS after {args.requests} requests, median of {args.rounds} rounds (min-max), MB, "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print("| tree | " + " | ".join(PROCESSES) + " | pod's three |")
    print("|---" * (len(PROCESSES) + 2) + "|")
    for name, rounds in results.items():
        cells = []
        for p in PROCESSES:
            values = [r[p] for r in rounds]
            cells.append(f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})")
        total = statistics.median(sum(r[p] for p in PROCESSES) for r in rounds)
        print(f"| {name} | " + " | ".join(cells) + f" | {total:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
