"""Operator benchmark: N InferenceServices created at once (`make bench-operator`).

Runs the API emulator and `tritium operator` as two separate processes (so the operator's RSS is
its own), creates N services concurrently, and reports: seconds until every one has all its
children and its status written, the operator's peak RSS, API write calls per service, and write
calls during a steady-state window. With KUBECONFIG set (and --real), it runs against that cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import kopf
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.operator_scenarios import make_isvc  # noqa: E402
from tritium.controller.kube import KubeClient  # noqa: E402

CHILDREN = ("ServiceAccount", "ConfigMap", "Deployment", "Service", "NetworkPolicy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def emulator_writes(session: aiohttp.ClientSession, url: str) -> int:
    """Every write the API emulator served (the operator's, kopf's and the benchmark's own)."""
    async with session.get(f"{url}/_writes") as resp:
        return int((await resp.json())["writes"])


async def operator_writes(session: aiohttp.ClientSession, metrics_url: str) -> int:
    """The operator's own writes (tritium_operator_api_writes_total); kopf's bookkeeping is not counted."""
    async with session.get(metrics_url) as resp:
        text = await resp.text()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("tritium_operator_api_writes_total{")))


async def count_done(client: KubeClient, namespace: str, n: int) -> int:
    isvcs = await client._request("GET", f"/apis/serving.tritium.dev/v1alpha1/namespaces/{namespace}/inferenceservices")
    with_status = {
        i["metadata"]["name"] for i in isvcs.get("items", [])
        if (i.get("status") or {}).get("observedGeneration") == 1 and (i.get("status") or {}).get("phase")
    }
    have: dict[str, set[str]] = {}
    for kind in CHILDREN:
        for item in await client.list(kind, namespace, "app.kubernetes.io/managed-by=tritium-operator"):
            owner = (item["metadata"].get("labels") or {}).get("serving.tritium.dev/inferenceservice")
            if owner:
                have.setdefault(owner, set()).add(kind)
    return sum(1 for name in with_status if have.get(name, set()) >= set(CHILDREN))


def start_emulator() -> tuple[subprocess.Popen[str], str, str]:
    """The API emulator in its own process, and a kubeconfig pointing at it."""
    python_args = os.environ.get("BENCH_EMULATOR_PY_ARGS", "").split()  # e.g. "-m cProfile -o emu.prof"
    emulator = subprocess.Popen([sys.executable, *python_args, str(ROOT / "benchmarks/emulator_server.py"),
                                 str(free_port())], stdout=subprocess.PIPE, text=True)
    url = emulator.stdout.readline().strip() if emulator.stdout else ""
    with tempfile.NamedTemporaryFile("w", suffix=".kubeconfig", delete=False) as kubeconfig:
        yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "bench",
            "clusters": [{"name": "bench", "cluster": {"server": url}}],
            "users": [{"name": "bench", "user": {"token": "bench"}}],
            "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}],
        }, kubeconfig)
    return emulator, url, kubeconfig.name


async def run(n: int, steady_seconds: float, timeout: float, real: bool, ns: str) -> dict[str, float]:
    emulator, url, kubeconfig = (None, "", os.environ["KUBECONFIG"]) if real else start_emulator()
    metrics_port = free_port()
    log = open(os.environ.get("BENCH_OPERATOR_LOG", os.devnull), "w")  # noqa: SIM115
    operator = subprocess.Popen(
        [sys.executable, *os.environ.get("BENCH_OPERATOR_PY_ARGS", "").split(), "-m", "tritium.cli",
         "operator", "--metrics-port", str(metrics_port), "--liveness-port", str(free_port()),
         *(["--namespace", ns] if real else [])],
        env={**os.environ, "KUBECONFIG": kubeconfig}, stdout=subprocess.DEVNULL, stderr=log,
    )
    os.environ["KUBECONFIG"] = kubeconfig
    client = KubeClient()
    info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    assert info is not None
    client.set_credentials(info)
    results: dict[str, float] = {"n": n}
    names = [f"svc-{i:04d}" for i in range(n)]
    try:
        async with aiohttp.ClientSession() as session:
            async def writes() -> int:
                if real:
                    return await operator_writes(session, f"http://127.0.0.1:{metrics_port}/metrics")
                return await emulator_writes(session, url) - n  # less the benchmark's own creates

            await asyncio.sleep(3)  # operator start-up (login, discovery, watches)
            base = await writes() + (n if not real else 0)
            started = time.perf_counter()
            await asyncio.gather(*(
                client._request("POST", f"/apis/serving.tritium.dev/v1alpha1/namespaces/{ns}/inferenceservices",
                                body=make_isvc(name, ns))
                for name in names
            ))
            done = 0
            while done < n and time.perf_counter() - started < timeout:
                await asyncio.sleep(0.5)
                done = await count_done(client, ns, n)
            results["seconds_to_all_done"] = round(time.perf_counter() - started, 2)
            results["done"] = done
            await asyncio.sleep(5)  # late events (e.g. watch echoes of our own writes)
            after_create = await writes()
            results["writes_per_service"] = round((after_create - base) / n, 2)
            await asyncio.sleep(steady_seconds)
            results["steady_state_seconds"] = steady_seconds
            results["steady_state_writes"] = await writes() - after_create
            results["operator_peak_rss_mb"] = round(peak_rss_mb(operator.pid), 1)
            if real:  # leave the cluster as it was
                await asyncio.gather(*(client.delete("InferenceService", ns, name) for name in names))
    finally:
        await client.close()
        operator.terminate()
        operator.wait(30)
        log.close()
        if emulator is not None:
            emulator.terminate()
            emulator.wait(30)
            os.unlink(kubeconfig)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=200, help="InferenceServices to create at once")
    parser.add_argument("--steady", type=float, default=60, help="seconds of steady state to watch for writes")
    parser.add_argument("--timeout", type=float, default=180)
    parser.add_argument("--real", action="store_true",
                        help="use the cluster KUBECONFIG points at (CRD installed) instead of the emulator; "
                        "writes are then the operator's own, from its metrics")
    parser.add_argument("--namespace", default="bench", help="namespace to create the services in")
    args = parser.parse_args()
    if args.real and not os.environ.get("KUBECONFIG"):
        parser.error("--real needs KUBECONFIG")
    results = asyncio.run(run(args.n, args.steady, args.timeout, args.real, args.namespace))
    width = max(len(k) for k in results)
    print(f"{'metric'.ljust(width)}  value")
    for key, value in results.items():
        print(f"{key.ljust(width)}  {value}")
    print(json.dumps(results))
    ok = (results["done"] == args.n and results["steady_state_writes"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
