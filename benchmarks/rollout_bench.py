"""How fast the operator acts on a canary's analysis (`make bench-rollout`).

Targets (product issue): a canary crossing its threshold is rolled back within 2 analysis
intervals; a canary whose analysis passed starts its promotion within 1 interval.

Runs on a control plane of its own (tests/support/cluster.py: etcd, kube-apiserver,
kube-controller-manager, simulated nodes whose pods get 127.1.x.x addresses and are Ready within a
second), with the operator in this process (tests/support/operator_runner.running_operator), as
tests/e2e/test_rollouts.py does. The builtin analysis provider scrapes each canary pod's gateway
metrics at POD_IP:GATEWAY_METRICS_PORT; the benchmark serves real metrics endpoints there
(tests/support/prometheus.MetricsPod), fed with 20 answers per pod every 0.5 s, healthy or failing.
Nothing but loopback is dialed.

Two InferenceServices, 2 replicas each, autoscaling off, `rollout: {analysis: {intervalSeconds: 5,
minRequests: 20, failureLimit: 0}, progressDeadlineSeconds: 30, scaleDownDelaySeconds: 0}`; each
round changes a spec (model.maxBatchSize), which makes a canary:

- promotion (durationSeconds 10): the canary stays healthy. Latency: from the moment analysis
  passed and the step's time is up -- status.rollout.canarySince + durationSeconds, or the last
  Passed result's time if later (both whole seconds in status) -- to the first status poll that
  shows phase Promoting.
- rollback (durationSeconds 300, so that no promotion interferes): healthy until one measurement
  passed, then, after a random wait of 0..intervalSeconds (so the failure starts at any point of
  the analysis timer's period), every answer is a 500. Latency: from that switch to the first
  poll that shows phase RollingBack/RolledBack and the canary Deployment deleted.

Status is polled every 50 ms. Rounds alternate: promotion, rollback, promotion, ...

    python benchmarks/rollout_bench.py [--rounds 5] [--interval 5] [--duration 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.operator_scenarios import create, get_isvc, make_isvc, patch_spec  # noqa: E402
from tests.support.prometheus import MetricsPod  # noqa: E402
from tritium import pod_layout  # noqa: E402
from tritium.controller.kube import KubeClient  # noqa: E402
from tritium.render.metadata import LABEL_ISVC, LABEL_REVISION  # noqa: E402
from tritium.rollout.state import from_time  # noqa: E402

NAMESPACE = "bench-rollout"
POLL = 0.05
FEED_EVERY = 0.5
ANSWERS_PER_FEED = 20
TIMEOUT = 120.0
ROLLBACK_DURATION = 300  # the rollback service's durationSeconds: its step never ends in a round
ROLLBACK_TARGET, PROMOTION_TARGET = 2.0, 1.0  # analysis intervals


def phase(obj: dict[str, Any] | None) -> str | None:
    return (((obj or {}).get("status") or {}).get("rollout") or {}).get("phase")


def rollout_spec(interval: int, duration: int) -> dict[str, Any]:
    return {"canaryPercent": 5,
            "analysis": {"intervalSeconds": interval, "durationSeconds": duration, "minRequests": 20,
                         "failureLimit": 0},
            "progressDeadlineSeconds": 30, "scaleDownDelaySeconds": 0}


def service_spec(interval: int, duration: int) -> dict[str, Any]:
    return {"autoscaling": {"enabled": False, "minReplicas": 1, "maxReplicas": 1}, "replicas": 2,
            "rollout": rollout_spec(interval, duration)}


class Feed:
    """Real metrics endpoints on the pods of one revision, each counting ANSWERS_PER_FEED answers
    every FEED_EVERY seconds: all 200 until ``fail()``, all 500 after."""

    def __init__(self, api: KubeClient, name: str, revision: str) -> None:
        self.api, self.name, self.revision = api, name, revision
        self.pods: dict[str, MetricsPod] = {}
        self.failing = False
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _answer(self) -> None:
        for metrics in self.pods.values():
            metrics.traffic(ANSWERS_PER_FEED, error_every=1 if self.failing else 0)

    async def _run(self) -> None:
        selector = f"{LABEL_ISVC}={self.name},{LABEL_REVISION}={self.revision}"
        while not self._stop.is_set():
            for pod in await self.api.list("Pod", NAMESPACE, selector):
                ip = (pod.get("status") or {}).get("podIP")
                if ip and ip not in self.pods:
                    self.pods[ip] = await MetricsPod(ip, pod_layout.GATEWAY_METRICS_PORT).start()
            self._answer()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), FEED_EVERY)

    def fail(self) -> float:
        """From now on every answer is a 500 (a first batch at once); returns the moment."""
        self.failing = True
        at = time.time()
        self._answer()
        return at

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Feed]:
        self._task = asyncio.create_task(self._run())
        try:
            yield self
        finally:
            self._stop.set()
            await self._task
            for metrics in self.pods.values():
                await metrics.stop()


async def poll_until(api: KubeClient, name: str, check: Any, what: str, timeout: float = TIMEOUT) -> Any:
    """Poll the service every POLL seconds until ``check(obj)`` is truthy; return (its value, when seen)."""
    deadline = time.monotonic() + timeout
    obj: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        obj = await get_isvc(api, NAMESPACE, name)
        found = check(obj) if obj else None
        if found:
            return found, time.time()
        await asyncio.sleep(POLL)
    raise RuntimeError(f"{name}: not {what} within {timeout:.0f} s; status: {json.dumps((obj or {}).get('status'))}")


async def new_revision(api: KubeClient, name: str, stable: str) -> str:
    def started(obj: dict[str, Any]) -> str | None:
        revision = ((obj.get("status") or {}).get("rollout") or {}).get("revision")
        return revision if revision and revision != stable and phase(obj) in ("Pending", "Starting", "Canary") \
            else None

    revision, _ = await poll_until(api, name, started, "rolling out a new revision")
    return str(revision)


async def stable_settled(api: KubeClient, name: str) -> str:
    """The stable revision, once promoted with its 2 pods Ready and nothing else left running."""
    def settled(obj: dict[str, Any]) -> str | None:
        status = obj.get("status") or {}
        ok = phase(obj) in ("Promoted", "RolledBack") and status.get("readyReplicas") == 2 and (
            "canaryRevision" not in status)
        return status.get("stableRevision") if ok else None

    stable, _ = await poll_until(api, name, settled, "settled")
    deadline = time.monotonic() + TIMEOUT
    while True:  # the old revision goes after scaleDownDelaySeconds (0)
        deps = await api.list("Deployment", NAMESPACE, f"{LABEL_ISVC}={name}")
        if [d["metadata"]["name"] for d in deps] == [f"{name}-{stable}"]:
            return str(stable)
        if time.monotonic() > deadline:
            names = [d["metadata"]["name"] for d in deps]
            raise RuntimeError(f"{name}: revisions other than {stable} still there: {names}")
        await asyncio.sleep(0.2)


async def promotion_round(api: KubeClient, name: str, batch: int, interval: int, duration: int) -> dict[str, Any]:
    stable = await stable_settled(api, name)
    await patch_spec(api, NAMESPACE, name, {"model": {"maxBatchSize": batch}})
    revision = await new_revision(api, name, stable)
    async with Feed(api, name, revision).running():
        def promoting(obj: dict[str, Any]) -> dict[str, Any] | None:
            if phase(obj) in ("Promoting", "Promoted") and obj["status"].get("rollout", {}).get("revision") == revision:
                return obj
            if phase(obj) in ("Paused", "RollingBack", "RolledBack"):
                raise RuntimeError(f"{name}: {phase(obj)} instead of Promoting: {obj['status']['rollout']}")
            return None

        obj, seen = await poll_until(api, name, promoting, "Promoting")
        await stable_settled(api, name)
    rollout = obj["status"]["rollout"]
    passed = [from_time(a["time"]) for a in obj["status"].get("analysis") or []
              if a.get("revision") == revision and a.get("result") == "Passed"]
    step_end = from_time(rollout["canarySince"]) + duration  # type: ignore[operator]
    reference = max([step_end, *[p for p in passed if p is not None]])
    results = [f"{a['time'][11:19]} {a['result']}" for a in obj["status"].get("analysis") or []
               if a.get("revision") == revision]
    return {"revision": revision, "first_phase_seen": phase(obj), "canary_since": rollout["canarySince"],
            "analysis": results, "phase_since": rollout.get("phaseSince"),
            "latency_s": round(seen - reference, 3), "latency_intervals": round((seen - reference) / interval, 3)}


async def rollback_round(api: KubeClient, name: str, batch: int, interval: int, rng: random.Random) -> dict[str, Any]:
    stable = await stable_settled(api, name)
    await patch_spec(api, NAMESPACE, name, {"model": {"maxBatchSize": batch}})
    revision = await new_revision(api, name, stable)
    deployment = f"{name}-{revision}"
    async with Feed(api, name, revision).running() as feed:
        def one_pass(obj: dict[str, Any]) -> bool:
            if phase(obj) != "Canary":
                return False
            return any(a.get("revision") == revision and a.get("result") == "Passed"
                       for a in obj["status"].get("analysis") or [])

        await poll_until(api, name, one_pass, "past one Passed measurement")
        wait = rng.uniform(0, interval)
        await asyncio.sleep(wait)
        onset = feed.fail()
        seen_phase: float | None = None
        seen_deleted: float | None = None
        last: dict[str, Any] | None = None
        deadline = time.monotonic() + TIMEOUT
        while seen_phase is None or seen_deleted is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: not rolled back within {TIMEOUT:.0f} s; status {last}")
            obj, dep = await asyncio.gather(get_isvc(api, NAMESPACE, name),
                                            api.get("Deployment", NAMESPACE, deployment))
            now = time.time()
            if seen_phase is None and phase(obj) in ("RollingBack", "RolledBack"):
                seen_phase, last = now, obj
            if seen_deleted is None and (dep is None or dep["metadata"].get("deletionTimestamp")):
                seen_deleted = now
            await asyncio.sleep(POLL)
    assert last is not None
    failed = [a for a in last["status"].get("analysis") or [] if a.get("revision") == revision
              and a.get("result") == "Failed"]
    passed = [a for a in last["status"].get("analysis") or [] if a.get("revision") == revision
              and a.get("result") == "Passed"]
    gap = (from_time(failed[-1]["time"]) - from_time(passed[-1]["time"])  # type: ignore[operator]
           if failed and passed else None)
    done = max(seen_phase, seen_deleted)
    return {"revision": revision, "reason": last["status"]["rollout"].get("reason"), "onset_wait_s": round(wait, 3),
            "failed_result_time": failed[-1]["time"] if failed else None,
            "failed_error_ratio": failed[-1].get("errorRatio") if failed else None,
            "passed_to_failed_result_s": gap,
            "phase_latency_s": round(seen_phase - onset, 3), "deleted_latency_s": round(seen_deleted - onset, 3),
            "latency_s": round(done - onset, 3), "latency_intervals": round((done - onset) / interval, 3)}


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "max": round(max(values), 3), "min": round(min(values), 3)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.support.cluster import ControlPlane
    from tests.support.operator_runner import api_client, running_operator

    workdir = Path(tempfile.mkdtemp(prefix="tritium-rolloutbench-"))
    results: dict[str, Any] = {"cores": os.cpu_count(), "load_average_at_start": round(os.getloadavg()[0], 2),
                               "interval_s": args.interval, "promotion_duration_s": args.duration,
                               "rounds": args.rounds}
    started = time.perf_counter()
    plane = ControlPlane(workdir / "plane")
    plane.start()
    try:
        env = plane.env
        subprocess.run(["kubectl", "apply", "--server-side", "-f", str(ROOT / "crds")], env=env, check=True,
                       capture_output=True, timeout=120)
        plane.wait_crd_established("inferenceservices.serving.tritium.dev")
        subprocess.run(["kubectl", "create", "namespace", NAMESPACE], env=env, check=True, capture_output=True,
                       timeout=120)
        os.environ["KUBECONFIG"], os.environ["PATH"] = env["KUBECONFIG"], env["PATH"]
        print(f"control plane ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        api = api_client()
        rng = random.Random(args.seed)
        promotions: list[dict[str, Any]] = []
        rollbacks: list[dict[str, Any]] = []
        try:
            async with running_operator(namespaces=[NAMESPACE]):
                await create(api, make_isvc("promote", NAMESPACE, **service_spec(args.interval, args.duration)))
                await create(api, make_isvc("rollback", NAMESPACE, **service_spec(args.interval, ROLLBACK_DURATION)))
                for i in range(args.rounds):
                    batch = 16 + i  # a new spec, a new revision, every round
                    p = await promotion_round(api, "promote", batch, args.interval, args.duration)
                    promotions.append(p)
                    print(f"promotion {i + 1}: {json.dumps(p)}", file=sys.stderr)
                    r = await rollback_round(api, "rollback", batch, args.interval, rng)
                    rollbacks.append(r)
                    print(f"rollback {i + 1}: {json.dumps(r)}", file=sys.stderr)
        finally:
            await api.close()
    finally:
        plane.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    results["load_average_at_end"] = round(os.getloadavg()[0], 2)
    results["promotions"], results["rollbacks"] = promotions, rollbacks
    results["promotion_latency_s"] = summary([p["latency_s"] for p in promotions])
    results["promotion_latency_intervals"] = summary([p["latency_intervals"] for p in promotions])
    results["rollback_latency_s"] = summary([r["latency_s"] for r in rollbacks])
    results["rollback_latency_intervals"] = summary([r["latency_intervals"] for r in rollbacks])
    results["rollback_phase_latency_s"] = summary([r["phase_latency_s"] for r in rollbacks])
    return results


def table(results: dict[str, Any]) -> str:
    interval = results["interval_s"]
    lines = [f"{'round':<8} {'rollback s':>11} {'intervals':>10} {'(phase s)':>10}   "
             f"{'promotion s':>12} {'intervals':>10}"]
    for i, (r, p) in enumerate(zip(results["rollbacks"], results["promotions"], strict=True), 1):
        lines.append(f"{i:<8} {r['latency_s']:>11.2f} {r['latency_intervals']:>10.2f} {r['phase_latency_s']:>10.2f}   "
                     f"{p['latency_s']:>12.2f} {p['latency_intervals']:>10.2f}")
    for key in ("median", "max"):
        lines.append(f"{key:<8} {results['rollback_latency_s'][key]:>11.2f} "
                     f"{results['rollback_latency_intervals'][key]:>10.2f} "
                     f"{results['rollback_phase_latency_s'][key]:>10.2f}   "
                     f"{results['promotion_latency_s'][key]:>12.2f} "
                     f"{results['promotion_latency_intervals'][key]:>10.2f}")
    lines.append(f"targets: rollback <= {ROLLBACK_TARGET:g} intervals ({ROLLBACK_TARGET * interval:g} s), "
                 f"promotion <= {PROMOTION_TARGET:g} interval ({PROMOTION_TARGET * interval:g} s), every round")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each (promotion, rollback)")
    parser.add_argument("--interval", type=int, default=5, help="analysis.intervalSeconds")
    parser.add_argument("--duration", type=int, default=10, help="analysis.durationSeconds of the promotion rounds")
    parser.add_argument("--seed", type=int, default=1, help="seed of the failure onsets' random waits")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    print(table(results))
    print(json.dumps(results))
    ok = (results["rollback_latency_intervals"]["max"] <= ROLLBACK_TARGET
          and results["promotion_latency_intervals"]["max"] <= PROMOTION_TARGET)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
