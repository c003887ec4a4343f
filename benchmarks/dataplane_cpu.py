"""CPU per request of each data-plane process (gateway, pre, post, Triton) under perf_analyzer load.

Throughput on a shared 2-core machine moves with whatever else runs; CPU time per request
(utime + stime from /proc/PID/stat, Triton including its python backend stubs) moves much less,
so this is the figure to compare two versions of the data plane by. Pipeline as in
dataplane_bench.py: tiny identity model, identity pre and post stages, each its own process:
pass-through scripts, which the gateway calls (default), or built-in JSON stages (--builtin),
which it skips for v2 requests.

    python benchmarks/dataplane_cpu.py [--concurrency 1 8] [--interval-ms 2500] [--builtin] [--minilm]
        [--tree DIR --tcp]    # another copy of the operator package (DIR/operator), stages over TCP
        [--perf SECONDS]      # also sample every CPU with `perf record -a` during the gateway runs

Each concurrency is measured straight at Triton ("direct") and through the gateway, in that order;
perf_analyzer's own CPU is given too. --minilm runs the MiniLM example's model instead.

--perf: /proc's utime + stime say how much CPU each process takes, not what it spends it on.
`perf record -a` samples what is on each CPU (a process preempted inside a write is not counted,
as it is by a wall-clock sampler such as py-spy), and the split printed per process is the share
of the machine's samples in the Python interpreter (libpython), in the kernel, and in other
native code (uvloop, orjson, numpy, Triton itself). Needs perf and perf_event_paranoid <= 2.

--tcp wires the stages as http://127.0.0.1:PORT (what versions without --socket understand);
by default they are wired as in a pod, over Unix sockets.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dataplane_bench import _minilm, _triton_for, perf_analyzer, with_stages  # noqa: E402
from workdir import work_dir  # noqa: E402

from tests.support.dataplane import base_spec, start_triton, write_config  # noqa: E402
from tritium.local.tritonserver import free_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def tree_cpu_seconds(pid: int) -> float:
    """The process and its direct children (Triton's python backend stubs)."""
    total = cpu_seconds(pid)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    total += cpu_seconds(int(entry.name))
            except (OSError, ValueError, IndexError):
                pass
    return total


def oncpu_split(samples: Path, pids: dict[str, int]) -> dict[str, dict[str, float]]:
    """Share of all CPU samples by process role and by where the code is (interpreter, kernel, native)."""
    report = subprocess.run(["perf", "report", "-i", str(samples), "--sort", "pid,dso", "--stdio"],
                            capture_output=True, text=True, check=True).stdout
    by_pid = {pid: name for name, pid in pids.items()}
    split: dict[str, dict[str, float]] = {}
    for line in report.splitlines():
        fields = line.split()
        if len(fields) < 3 or not fields[0].endswith("%") or ":" not in fields[1]:
            continue
        pid_text, _, comm = fields[1].partition(":")
        dso = " ".join(fields[2:])
        role = by_pid.get(int(pid_text)) if pid_text.isdigit() else None
        if role is None:
            role = {"swapper": "idle", "perf_analyzer": "perf_analyzer", "tritonserver": "triton",
                    "triton_python_b": "triton"}.get(comm, "other")
        where = "interpreter" if dso.startswith("libpython") else "kernel" if dso == "[kernel.kallsyms]" else "native"
        shares = split.setdefault(role, {"interpreter": 0.0, "kernel": 0.0, "native": 0.0})
        shares[where] += float(fields[0].rstrip("%"))
    return split


def print_oncpu_split(samples: Path, pids: dict[str, int], concurrency: int) -> None:
    split = oncpu_split(samples, pids)
    print(f"\nOn-CPU samples at c={concurrency}, gateway path (perf record -a), % of all samples:\n")
    print("| process | all | interpreter | kernel | other native |")
    print("|---|---:|---:|---:|---:|")
    for role, shares in sorted(split.items(), key=lambda item: -sum(item[1].values())):
        total = sum(shares.values())
        print(f"| {role} | {total:.1f} | {shares['interpreter']:.1f} | {shares['kernel']:.1f} "
              f"| {shares['native']:.1f} |")
    print(flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--interval-ms", type=int, default=2500)
    parser.add_argument("--tree", default=None, help="run the data plane from DIR/operator instead")
    parser.add_argument("--tcp", action="store_true", help="stages over loopback TCP instead of Unix sockets")
    parser.add_argument("--builtin", action="store_true", help="built-in JSON stages instead of scripts")
    parser.add_argument("--minilm", action="store_true", help="the MiniLM example's model instead of the tiny one")
    parser.add_argument("--perf", type=float, default=0.0, metavar="SECONDS",
                        help="sample every CPU this long with perf record -a during each gateway run "
                             "(keep it under 3 x --interval-ms, the shortest perf_analyzer run)")
    args = parser.parse_args()
    pa = perf_analyzer()
    env = dict(os.environ)
    if args.tree:
        env["PYTHONPATH"] = str(Path(args.tree) / "operator")
    work = work_dir("tritium-cpu-")
    if args.minilm:
        found = _minilm(work)
        if found is None:
            sys.exit("examples/minilm not found")
        repo, base = found
        model = base["model"]["name"]
        inputs = [f"{t}:1,32" for t in ("input_ids", "attention_mask", "token_type_ids")]
        triton = _triton_for(repo, model)
    else:
        model, base, inputs = "identity", base_spec("identity"), ["INPUT0:16"]
        triton = start_triton(models=("identity",))
    load = ["-m", model, *[x for shape in inputs for x in ("--shape", shape)]]
    if args.minilm:
        load += ["--input-data", "zero"]
    spec = with_stages(base, work, scripts=not args.builtin)
    config = write_config(work, spec, name="cpu")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    gateway_port, metrics_port = free_port(), free_port()
    stage_urls = []
    for stage in ("pre", "post"):
        port = free_port()
        cmd = ["stage", stage, "--spec", str(config), "--host", "127.0.0.1", "--port", str(port)]
        if args.tcp:
            url = f"http://127.0.0.1:{port}"
        else:
            cmd += ["--socket", str(work / f"{stage}.sock")]
            url = f"unix:{work / f'{stage}.sock'}"
        stage_urls += [f"--{stage}", url]
        procs[stage] = subprocess.Popen([sys.executable, "-m", "tritium.cli", *cmd], env=env)
    procs["gateway"] = subprocess.Popen(
        [sys.executable, "-m", "tritium.cli", "gateway", "--spec", str(config), "--host", "127.0.0.1",
         "--port", str(gateway_port), "--metrics-port", str(metrics_port), "--triton-grpc", triton.grpc_address,
         "--triton-http", triton.http_url, *stage_urls], env=env)
    target = f"127.0.0.1:{gateway_port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"http://{target}/v2/health/ready", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        pids = {name: p.pid for name, p in procs.items()}
        assert triton.process is not None
        pids["triton"] = triton.process.pid
        print("| concurrency | path | infer/s | p50 (ms) | " + " | ".join(f"{n} CPU us/request" for n in pids)
              + " | perf_analyzer CPU us/request |")
        print("|---" * (5 + len(pids)) + "|")
        for c in args.concurrency:
            for path, url in (("direct", triton.http_url.removeprefix("http://")), ("gateway", target)):
                out = work / f"c{c}-{path}.csv"
                before = {n: tree_cpu_seconds(p) for n, p in pids.items()}
                children = resource.getrusage(resource.RUSAGE_CHILDREN)
                began = time.monotonic()
                load_run = subprocess.Popen(
                    [pa[0], *load, "-u", url, "-i", "http", "--concurrency-range", str(c),
                     "--measurement-interval", str(args.interval_ms), "--stability-percentage", "50",
                     "--max-trials", "5", "-f", str(out)],
                    env=pa[1], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                samples = work / f"c{c}-{path}.perf"
                if args.perf and path == "gateway":
                    time.sleep(2.0)  # past perf_analyzer's warm-up
                    subprocess.run(["perf", "record", "-a", "-F", "499", "-o", str(samples), "--", "sleep",
                                    str(args.perf)], capture_output=True, check=True)
                _, errors = load_run.communicate()
                if load_run.returncode:
                    sys.exit(f"perf_analyzer failed: {errors.decode(errors='replace')[-2000:]}")
                elapsed = time.monotonic() - began
                after = {n: tree_cpu_seconds(p) for n, p in pids.items()}
                done = resource.getrusage(resource.RUSAGE_CHILDREN)
                row = next(csv.DictReader(out.open()))
                rate = float(row["Inferences/Second"])
                # CPU over the whole perf_analyzer run (warm-up included) / requests at the measured rate.
                requests = rate * elapsed
                per = " | ".join(f"{(after[n] - before[n]) / requests * 1e6:.0f}" for n in pids)
                client = (done.ru_utime + done.ru_stime - children.ru_utime - children.ru_stime) / requests * 1e6
                print(f"| {c} | {path} | {rate:.0f} | {float(row['p50 latency']) / 1000:.2f} | {per} | {client:.0f} |",
                      flush=True)
                if samples.exists():
                    print_oncpu_split(samples, pids, c)
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.wait(20)
        triton.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
