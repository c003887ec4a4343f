"""Failover and drain figures of one pod's processes on loopback (docs/benchmarks.md).

Repeats the measurements of tests/integration/test_local_failover_drain.py --runs times and
prints the medians (and the range):

- kill: steady load on the `add` model (--kill-clients closed-loop clients on keep-alive
  connections), Triton SIGKILLed: seconds until the gateway's /v2/health/ready answers non-200,
  and what the requests of the next 1.5 s got.
- drain: --clients closed-loop clients on requests that take --seconds in a post stage; the
  gateway is SIGTERMed halfway through one round: requests in flight then and how many were
  answered, requests the gateway took after the signal, connections refused, requests that got no
  answer, seconds until a new connection is refused and until the process has exited. Once with
  a new connection per request (Connection: close), once with clients that keep their connections.

Usage: .venv/bin/python benchmarks/failover_bench.py [--runs 5] [--clients 6] [--seconds 1.5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.test_local_failover_drain import (  # noqa: E402
    Drain,
    TritonKill,
    measure_drain,
    measure_triton_kill,
    slow_deployment,
)
from tests.support.dataplane import base_spec, deploy, start_triton  # noqa: E402


def _row(name: str, values: Sequence[float], unit: str = "", digits: int = 3) -> str:
    if not values:
        return f"  {name:<44} (none)"
    med = statistics.median(values)
    return (f"  {name:<44} median {med:.{digits}f}{unit}   "
            f"min {min(values):.{digits}f}{unit}   max {max(values):.{digits}f}{unit}")


def kill_runs(runs: int, clients: int) -> list[TritonKill]:
    results = []
    for i in range(runs):
        with tempfile.TemporaryDirectory(prefix="tritium-failover-") as tmp:
            triton = start_triton(models=("add",))
            try:
                dep = deploy(Path(tmp), triton, base_spec("add"), name="failover")
                try:
                    result = measure_triton_kill(dep, triton, clients=clients)
                finally:
                    dep.stop()
            finally:
                triton.stop()
        statuses = sorted(str(s) for s in result.outage_statuses)
        print(f"kill run {i + 1}: readiness failed after {result.ready_failed_after * 1000:.1f} ms "
              f"({result.ready_answer.status}); outage requests {len(result.outage)}, statuses {statuses}, "
              f"slowest {result.outage_slowest * 1000:.1f} ms", flush=True)
        results.append(result)
    return results


def drain_runs(runs: int, clients: int, seconds: float, keep_alive: bool) -> list[Drain]:
    results = []
    triton = start_triton(models=("add",))
    try:
        for i in range(runs):
            with tempfile.TemporaryDirectory(prefix="tritium-drain-") as tmp:
                dep, log = slow_deployment(Path(tmp), triton, "drain")
                try:
                    result = measure_drain(dep, log, clients=clients, seconds=seconds, keep_alive=keep_alive)
                finally:
                    dep.stop()
            refused = "never" if result.refused_after is None else f"{result.refused_after * 1000:.1f} ms"
            print(f"drain run {i + 1} ({'keep-alive' if keep_alive else 'new connection per request'}): "
                  f"in flight {len(result.in_flight)}, answered {result.in_flight_answered}, "
                  f"taken after SIGTERM {len(result.accepted_after)}, refused {result.refused}, "
                  f"no answer {len(result.lost)}, refused after {refused}, exited after {result.exited_after:.2f} s "
                  f"(code {result.exit_code})", flush=True)
            results.append(result)
    finally:
        triton.stop()
    return results


def _drain_summary(title: str, results: list[Drain]) -> None:
    def col(f: Callable[[Drain], float]) -> list[float]:
        return [f(r) for r in results]

    print(title)
    print(_row("requests in flight at SIGTERM", col(lambda r: len(r.in_flight)), digits=0))
    print(_row("  of which answered 200", col(lambda r: r.in_flight_answered), digits=0))
    print(_row("requests taken after SIGTERM (any answer)", col(lambda r: len(r.accepted_after)), digits=0))
    print(_row("connections refused after SIGTERM", col(lambda r: r.refused), digits=0))
    print(_row("requests with no answer (reset, cut)", col(lambda r: len(r.lost)), digits=0))
    print(_row("SIGTERM -> a new connection refused", [r.refused_after * 1000 for r in results
                                                        if r.refused_after is not None], " ms", 1))
    print(_row("SIGTERM -> process exited", col(lambda r: r.exited_after), " s", 2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--kill-clients", type=int, default=4, help="closed-loop clients during the Triton kill")
    parser.add_argument("--clients", type=int, default=6, help="closed-loop clients during the drain")
    parser.add_argument("--seconds", type=float, default=1.5, help="how long each request of the drain takes")
    args = parser.parse_args()

    kills = kill_runs(args.runs, args.kill_clients)
    closing = drain_runs(args.runs, args.clients, args.seconds, keep_alive=False)
    kept = drain_runs(args.runs, args.clients, args.seconds, keep_alive=True)

    print(f"\n{args.runs} runs each")
    print(f"Triton SIGKILLed under load ({args.kill_clients} closed-loop clients on `add`):")
    print(_row("SIGKILL -> readiness non-200", [k.ready_failed_after * 1000 for k in kills], " ms", 1))
    print(_row("outage requests (1.5 s after the kill)", [len(k.outage) for k in kills], digits=0))
    print(_row("  of which answered 503", [sum(a.status == 503 for a in k.outage) for k in kills], digits=0))
    print(_row("  slowest answer", [k.outage_slowest * 1000 for k in kills], " ms", 1))
    _drain_summary(f"Gateway SIGTERMed, {args.clients} clients, {args.seconds} s requests, "
                   "a new connection per request:", closing)
    _drain_summary(f"Gateway SIGTERMed, {args.clients} clients, {args.seconds} s requests, "
                   "connections kept alive:", kept)
    return 0


if __name__ == "__main__":
    sys.exit(main())
