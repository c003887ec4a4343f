"""MiniLM sentence embeddings: Tritium's pipeline against the Triton ensemble a Triton user would build.

Two targets, each text in and embeddings out, on this machine at the same time:
- **ensemble**: one tritonserver with benchmarks/ensemble's repository, `minilm_ensemble` =
  tokenizer (python backend) -> examples/minilm's model -> pooling (python backend), called at
  `POST /v2/models/minilm_ensemble/infer`;
- **tritium**: `tritium up -f examples/minilm/isvc.yaml` (gateway -> pre stage -> Triton -> post
  stage), called through its gateway at `POST /v2/models/minilm/infer` (``--tritium-api invoke``:
  `POST /v1/models/minilm/invoke {"inputs": {"text": [...]}}` instead).

Client: tritonclient.http (KServe v2, BYTES input `text` of shape [n], output `embeddings`), one
client per worker thread and target, the same for both targets. C workers keep C requests in
flight the whole time; which target they go to switches every --block seconds, both targets once
per round, the first one alternating from round to round, so drift on a shared machine lands on
both alike. Each round's ratio compares its two adjacent blocks. A block's figures are the
requests to its target answered after its first --settle seconds (the previous target's requests
have drained by then): requests/s = those answers / the rest of the block, and their latencies.

Each request is --sentences sentences of examples/minilm's reference set, the first one numbered
across the whole run (warm-ups and every concurrency), so no two requests are equal and the
gateway's response cache (enabled in isvc.yaml) never answers one; its hit counter, read from the
gateway's /metrics before and after each concurrency, is printed to show it. Before the load,
the reference sentences go through both targets and every embedding must match
reference_embeddings.json (cosine >= 0.9999).

    python benchmarks/ensemble_bench.py [--concurrency 1 8] [--rounds 16] [--block 3] [--settle 1]
        [--sentences 4] [--tritium-api v2|invoke] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dataplane_cpu import cpu_seconds  # noqa: E402
from ensemble.build_repo import ENSEMBLE, build  # noqa: E402

from tests.support.local_up import MINILM, require_minilm_parts, start_up  # noqa: E402

TARGETS = ("ensemble", "tritium")
MIN_COSINE = 0.9999
GOAL = 1.0  # tritium / ensemble throughput, at every concurrency
REFERENCE = json.loads((MINILM / "reference_embeddings.json").read_text())

Sender = Callable[[list[str]], np.ndarray]
# Numbers every request of this process (warm-ups and every concurrency alike), with a tag of the
# run: no request is ever sent twice, so the gateway's response cache cannot answer one.
_REQUEST_NUMBERS = itertools.count(1)
_RUN_TAG = uuid.uuid4().hex[:8]


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (tritium up's gateway, stages, Triton and its stubs)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def role_of(pid: int) -> str:
    """What a process below a target does, from its command line: where the CPU per request goes."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    name = Path(argv[0]).name if argv and argv[0] else "?"
    if "tritonserver" in name:
        return "tritonserver"
    if "triton_python_backend_stub" in name:  # its first argument is the model's model.py
        model = Path(argv[1]).parent.parent.name if len(argv) > 1 and argv[1].endswith(".py") else "?"
        return f"python backend stub ({model})"
    if "stage" in argv:
        which = argv[argv.index("stage") + 1:][:1]
        return f"{which[0]} stage" if which and which[0] in ("pre", "post") else "stage"
    if "gateway" in argv:
        return "gateway"
    if "up" in argv:
        return "tritium up"
    return name


def tree_cpu_by_role(root: int) -> dict[str, float]:
    """CPU seconds (utime + stime) of ``root`` and its descendants as they are now, by role_of each."""
    out: dict[str, float] = {}
    for pid in descendants(root):
        with contextlib.suppress(OSError, ValueError, IndexError):  # ended meanwhile
            seconds = cpu_seconds(pid)
            role = role_of(pid)
            out[role] = out.get(role, 0.0) + seconds
    return out


def v2_sender(url: str, model: str) -> Sender:
    """A tritonclient.http client (one keep-alive connection) sending `text` as BYTES [n]."""
    import tritonclient.http as tc

    client = tc.InferenceServerClient(urlsplit(url).netloc, connection_timeout=60, network_timeout=120)
    wanted = [tc.InferRequestedOutput("embeddings")]

    def send(texts: list[str]) -> np.ndarray:
        tensor = tc.InferInput("text", [len(texts)], "BYTES")
        tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
        out = client.infer(model, [tensor], outputs=wanted).as_numpy("embeddings")
        if out is None or out.shape != (len(texts), 384):
            raise RuntimeError(f"{model}: embeddings of shape {None if out is None else out.shape}")
        return out

    return send


def invoke_sender(url: str, model: str) -> Sender:
    """Tritium's JSON invoke API over one keep-alive connection (http.client)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    path = f"/v1/models/{model}/invoke"

    def send(texts: list[str]) -> np.ndarray:
        conn.request("POST", path, json.dumps({"inputs": {"text": texts}}), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"invoke: HTTP {resp.status}: {body[:300]!r}")
        if resp.getheader("Connection", "").lower() == "close":
            conn.close()
        out = np.asarray(json.loads(body)["outputs"]["embeddings"], dtype=np.float32)
        if out.shape != (len(texts), 384):
            raise RuntimeError(f"invoke: embeddings of shape {out.shape}")
        return out

    return send


def gateway_metrics_url(root: int) -> str | None:
    """The /metrics URL of the gateway below ``root`` (tritium up), from its command line."""
    for pid in descendants(root):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if "gateway" in argv and "--metrics-port" in argv:
            host = argv[argv.index("--host") + 1] if "--host" in argv else "127.0.0.1"
            return f"http://{host}:{argv[argv.index('--metrics-port') + 1]}/metrics"
    return None


def cache_hits(url: str | None) -> float | None:
    """The gateway's response cache hits so far (None when its metrics cannot be read)."""
    if url is None:
        return None
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("tritium_gateway_cache_total{") and 'result="hit"' in line)


def check_reference(name: str, send: Sender) -> dict[str, Any]:
    """The lowest cosine between the target's embeddings of the reference sentences and the reference."""
    got = send(list(REFERENCE["sentences"]))
    dtype = str(got.dtype)
    want = np.asarray(REFERENCE["embeddings"], dtype=np.float64)
    got = got.astype(np.float64)
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    worst = float(cos.min())
    print(f"{name}: {len(cos)} reference embeddings ({dtype}), lowest cosine {worst:.7f}")
    if worst < MIN_COSINE:
        raise SystemExit(f"{name}: embeddings differ from the reference (cosine {worst:.7f} < {MIN_COSINE})")
    return {"lowest_cosine": worst, "dtype": dtype}


class Load:
    """C worker threads; each sends to whichever target is current, with its own client per target."""

    def __init__(self, factories: dict[str, Callable[[], Sender]], concurrency: int, sentences: int,
                 roots: dict[str, int] | None = None) -> None:
        self.factories, self.concurrency = factories, concurrency
        self.roots = roots or {}  # target -> the pid whose process tree serves it
        self.cpu: dict[str, float] = {}  # target -> CPU seconds of its processes during run()
        self.cpu_by_role: dict[str, dict[str, float]] = {}  # target -> role_of a process -> its CPU seconds
        self.base = list(REFERENCE["sentences"][1:1 + sentences])
        self.target = next(iter(factories))
        self.done: list[tuple[float, float, str]] = []  # (start, end, target) of each answered request
        self.failed: dict[str, int] = dict.fromkeys(factories, 0)
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.loadavg: list[float] = []  # the 1-minute load average at the end of each block

    def texts(self) -> list[str]:
        return [f"Request {_RUN_TAG}-{next(_REQUEST_NUMBERS)}: {self.base[0]}", *self.base[1:]]

    def worker(self) -> None:
        senders: dict[str, Sender] = {}
        clock = time.perf_counter
        while not self.stop.is_set():
            target = self.target
            if target not in senders:
                senders[target] = self.factories[target]()
            texts = self.texts()
            start = clock()
            try:
                senders[target](texts)
            except Exception as exc:  # counted and reported; the load goes on
                self.failed[target] += 1
                if len(self.errors) < 5:
                    self.errors.append(f"{target}: {exc}")
                senders.pop(target, None)  # a fresh connection next time
                continue
            self.done.append((start, clock(), target))

    def run(self, order: list[str], block: float) -> list[tuple[str, float, float]]:
        """-> (target, block start, block end) for each block, in order."""
        threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(self.concurrency)]
        self.target = order[0]
        cpu_before = {t: tree_cpu_by_role(pid) for t, pid in self.roots.items()}
        for t in threads:
            t.start()
        blocks = []
        for target in order:
            self.target = target
            began = time.perf_counter()
            time.sleep(block)
            blocks.append((target, began, time.perf_counter()))
            self.loadavg.append(os.getloadavg()[0])
        self.stop.set()
        for t in threads:
            t.join(150)
        for t, pid in self.roots.items():
            after = tree_cpu_by_role(pid)
            self.cpu_by_role[t] = {role: seconds - cpu_before[t].get(role, 0.0) for role, seconds in after.items()}
            self.cpu[t] = sum(self.cpu_by_role[t].values())
        return blocks


def block_figures(done: list[tuple[float, float, str]], blocks: list[tuple[str, float, float]],
                  settle: float) -> list[tuple[str, float, list[float]]]:
    """Each block's requests/s and latencies (s): the requests to its target that completed in the
    block after its first `settle` seconds (by then the previous target's requests have drained, so
    completions over the window is the throughput, whatever the latency)."""
    out = []
    for target, began, ended in blocks:
        window = [e - s for s, e, t in done if t == target and began + settle <= e <= ended]
        out.append((target, len(window) / (ended - began - settle), window))
    return out


def measure(factories: dict[str, Callable[[], Sender]], roots: dict[str, int], concurrency: int, rounds: int,
            block: float, settle: float, sentences: int, metrics_url: str | None = None) -> dict[str, Any]:
    order = [t for r in range(rounds) for t in (TARGETS if r % 2 == 0 else TARGETS[::-1])]
    load = Load(factories, concurrency, sentences, roots)
    load_before = os.getloadavg()
    # Warm-up, not counted: both targets' connections and python stubs.
    Load(factories, concurrency, sentences).run(list(TARGETS), 2.0)
    hits_before = cache_hits(metrics_url)
    blocks = load.run(order, block)
    load_after = os.getloadavg()
    hits_after = cache_hits(metrics_url)
    hits = None if hits_before is None or hits_after is None else hits_after - hits_before
    figures = block_figures(load.done, blocks, settle)
    measured = [(t, rate, statistics.median(lat) * 1000 if lat else float("nan")) for t, rate, lat in figures]
    ratios = []
    for i in range(0, len(measured), 2):
        pair = {t: r for t, r, _ in measured[i:i + 2]}
        # A block with no request counted (a stall longer than the block) gives no ratio; it stays
        # in the blocks' rates (their minimum shows it).
        ratios.append(pair["tritium"] / pair["ensemble"] if pair["ensemble"] > 0 else float("nan"))
    ratios = [r for r in ratios if r == r] or [float("nan")]
    result: dict[str, Any] = {"concurrency": concurrency, "rounds": rounds, "block_s": block, "settle_s": settle,
                              "sentences": sentences, "failed": load.failed, "errors": load.errors,
                              "loadavg_before": load_before, "loadavg_after": load_after,
                              "loadavg_blocks": load.loadavg, "gateway_cache_hits": hits,
                              "blocks": measured, "round_ratios": ratios,
                              "ratio": statistics.median(ratios), "targets": {}}
    for target in TARGETS:
        values = [r for t, r, _ in measured if t == target]
        latencies = sorted(x for t, _, lat in figures if t == target for x in lat)
        answered = max(1, sum(t == target for _, _, t in load.done))
        result["targets"][target] = {
            "rate_median": statistics.median(values), "rate_min": min(values), "rate_max": max(values),
            "p50_ms": statistics.median(latencies) * 1000, "p99_ms": float(np.percentile(latencies, 99)) * 1000,
            "requests": len(latencies),
            # Every process serving the target, over the whole run, per request it answered: what
            # the machine's contention moves far less than throughput.
            "cpu_ms_per_request": load.cpu[target] * 1000 / answered,
            "cpu_ms_per_request_by_role": {role: seconds * 1000 / answered
                                           for role, seconds in sorted(load.cpu_by_role[target].items())},
        }
    return result


def report(results: list[dict[str, Any]], api: str) -> None:
    tritium_label = "tritium (v2)" if api == "v2" else "tritium (invoke API)"
    for res in results:
        print(f"\nconcurrency {res['concurrency']}: {res['rounds']} rounds of one {res['block_s']:g} s block per "
              f"target (first {res['settle_s']:g} s not counted), {res['sentences']} sentences per request; "
              f"failed {res['failed']}; 1-min load average {res['loadavg_before'][0]:.2f} before, median "
              f"{statistics.median(res['loadavg_blocks']):.2f} (max {max(res['loadavg_blocks']):.2f}) during")
        print("| target | requests/s, median of blocks (min-max) | p50 / p99 (ms) | requests "
              "counted | CPU ms/request |")
        print("|---|---|---|---|---|")
        for target in TARGETS:
            m = res["targets"][target]
            label = tritium_label if target == "tritium" else "Triton ensemble"
            print(f"| {label} | {m['rate_median']:.1f} ({m['rate_min']:.1f}-{m['rate_max']:.1f}) | "
                  f"{m['p50_ms']:.1f} / {m['p99_ms']:.1f} | {m['requests']} | {m['cpu_ms_per_request']:.1f} |")
        for target in TARGETS:
            split = ", ".join(f"{role} {ms:.1f}" for role, ms in res["targets"][target]["cpu_ms_per_request_by_role"]
                              .items() if ms >= 0.05)
            print(f"  CPU ms/request by process, {target}: {split}")
        rr = res["round_ratios"]
        verdict = "met" if res["ratio"] >= GOAL else "NOT met"
        print(f"tritium / ensemble: median of round ratios {res['ratio']:.4f}x (rounds {min(rr):.2f}-{max(rr):.2f}x); "
              f">= {GOAL:.1f}x {verdict}")
        hits = res["gateway_cache_hits"]
        print(f"gateway response cache hits during the run: {'unknown' if hits is None else int(hits)}")
        for target in TARGETS:
            values = " ".join(f"{r:.1f}" for t, r, _ in res["blocks"] if t == target)
            print(f"  {target} blocks (requests/s): {values}")
        for err in res["errors"]:
            print(f"  error: {err}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=16, help="rounds per concurrency, one block per target each")
    parser.add_argument("--block", type=float, default=3.0, help="seconds per block")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds not counted at the start of a block")
    parser.add_argument("--sentences", type=int, default=4, help="sentences per request (1-8)")
    parser.add_argument("--tritium-api", choices=["v2", "invoke"], default="v2")
    parser.add_argument("--json", default=None, help="write every figure to this file")
    args = parser.parse_args()
    require_minilm_parts()
    from tritium.local.tritonserver import TritonServer

    workdir = Path(tempfile.mkdtemp(prefix="tritium-ensemble-"))
    triton = TritonServer(build(workdir / "repo"), models=(ENSEMBLE,))
    up = None
    try:
        triton.start(timeout=180)
        up = start_up(MINILM / "isvc.yaml")
        gateway = up.wait_ready()
        tritium: Callable[[], Sender] = (
            (lambda: v2_sender(gateway, "minilm")) if args.tritium_api == "v2"
            else (lambda: invoke_sender(gateway, "minilm")))
        factories = {"ensemble": lambda: v2_sender(triton.http_url, ENSEMBLE), "tritium": tritium}
        checks = {name: check_reference(name, make()) for name, make in factories.items()}
        roots = {"ensemble": triton.pid, "tritium": up.process.pid}
        metrics_url = gateway_metrics_url(up.process.pid)
        results = [measure(factories, roots, c, args.rounds, args.block, args.settle, args.sentences, metrics_url)
                   for c in args.concurrency]
    finally:
        if up is not None:
            up.stop()
        triton.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    report(results, args.tritium_api)
    if args.json:
        Path(args.json).write_text(json.dumps({"tritium_api": args.tritium_api, "reference_check": checks,
                                               "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
