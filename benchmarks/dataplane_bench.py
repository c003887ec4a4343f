"""Data-plane benchmark: the same client straight at Triton and through the gateway, in one run.

Client: NVIDIA's perf_analyzer from the tritonclient 2.51 wheel (HTTP, KServe v2), which needs
libb64.so.0d and libcudart.so.12: both are taken from the copies vendored in the nvidia-pytriton
wheel through a directory of symlinks, so nothing is installed system-wide.

Two pipelines under test, each a gateway with identity pre and post stages, side by side:
- "gateway": built-in JSON pre and post stages, which have nothing to do for v2 tensors, so the
  gateway answers without calling them (pipeline.py): gateway -> Triton;
- "gateway+hops": pass-through script stages (`return inputs` / `return outputs`), which the
  gateway must call: gateway -> pre -> gateway -> Triton -> gateway -> post -> gateway.
Models: tests/data/models/identity (tiny) and the MiniLM example when examples/minilm exists.

    python benchmarks/dataplane_bench.py [--rounds 3] [--interval-ms 3000] [--tiny-only]
        [--json out.json] [--plot docs/benchmarks/dataplane.svg]

Each path is measured --rounds times per concurrency, alternating; the tables give medians, and
the ratios are medians of the per-round ratios.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workdir import work_dir  # noqa: E402

from tests.support.dataplane import base_spec, deploy, start_triton  # noqa: E402
from tests.support.perf_analyzer import find_perf_analyzer  # noqa: E402

TARGETS = {"added_p50_ms_c1": 1.0, "throughput_ratio_c8": 0.6}
PATHS = ("direct", "gateway", "gateway+hops")
# Pass-through scripts, called on the event loop as a script that is always quick should be
# (BLOCKING = False, docs/stages.md); a plain sync script runs in the stage's thread pool instead.
IDENTITY_PRE = "BLOCKING = False\n\ndef preprocess(inputs, parameters):\n    return inputs\n"
IDENTITY_POST = "BLOCKING = False\n\ndef postprocess(outputs, parameters):\n    return outputs\n"


def with_stages(spec: dict[str, Any], workdir: Path, scripts: bool) -> dict[str, Any]:
    """The spec with identity stages: built-in JSON ones, or pass-through scripts."""
    spec = dict(spec)
    if scripts:
        (workdir / "identity_pre.py").write_text(IDENTITY_PRE)
        (workdir / "identity_post.py").write_text(IDENTITY_POST)
        spec["preprocess"] = {"script": {"path": str(workdir / "identity_pre.py")}}
        spec["postprocess"] = {"script": {"path": str(workdir / "identity_post.py")}}
    else:
        spec["preprocess"] = {"builtin": {"format": "json"}}
        spec["postprocess"] = {"builtin": {"format": "json"}}
    return spec


def perf_analyzer() -> tuple[str, dict[str, str]]:
    """The perf_analyzer binary and an environment in which its shared libraries resolve."""
    found = find_perf_analyzer()
    if found is None:
        sys.exit("perf_analyzer not found: pip install 'tritonclient[all]==2.51.0'")
    return found


def measure(pa: tuple[str, dict[str, str]], url: str, model: str, shape: str, concurrency: int,
            interval_ms: int, workdir: Path) -> dict[str, float]:
    out = workdir / f"{model}-{concurrency}-{abs(hash(url))}.csv"
    cmd = [pa[0], "-m", model, "-u", url.removeprefix("http://"), "-i", "http", "--concurrency-range",
           str(concurrency), "--measurement-interval", str(interval_ms), "--stability-percentage", "50",
           "--max-trials", "5", "-f", str(out)]
    for item in shape.split():
        cmd += ["--shape", item.removeprefix("--shape=")]
    if model != "identity":
        cmd += ["--input-data", "zero"]  # valid token ids ([PAD]) for a language model
    proc = subprocess.run(cmd, env=pa[1], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"perf_analyzer failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    row = next(csv.DictReader(out.open()))
    return {
        "throughput": float(row["Inferences/Second"]),
        "p50_ms": float(row["p50 latency"]) / 1000,
        "p99_ms": float(row["p99 latency"]) / 1000,
    }


def bench_model(pa: tuple[str, dict[str, str]], model: str, repo: Path | None, spec: dict[str, Any], shape: str,
                interval_ms: int, workdir: Path, rounds: int = 3) -> dict[str, Any]:
    """Each path measured `rounds` times per concurrency, alternating; medians of the figures and
    of the per-round ratios (gateway round i against direct round i)."""
    kwargs: dict[str, Any] = {"models": (model,)}
    triton = start_triton(**kwargs) if repo is None else _triton_for(repo, model)
    deps = {}
    try:
        for path, scripts in (("gateway", False), ("gateway+hops", True)):
            where = workdir / f"{model}-{'scripts' if scripts else 'builtin'}"
            where.mkdir(exist_ok=True)
            deps[path] = deploy(where, triton, with_stages(spec, where, scripts), name=f"bench-{model}")
        urls = {"direct": triton.http_url, **{path: dep.url for path, dep in deps.items()}}
        results: dict[str, Any] = {}
        for c in (1, 8):
            runs: dict[str, list[dict[str, float]]] = {path: [] for path in PATHS}
            for r in range(rounds):
                # Alternating, each round starting with another path: drift on a shared machine
                # then lands on every path alike.
                order = PATHS[r % len(PATHS):] + PATHS[:r % len(PATHS)]
                for path in order:
                    runs[path].append(measure(pa, urls[path], model, shape, c, interval_ms, workdir))
            row: dict[str, Any] = {path: {k: statistics.median(m[k] for m in runs[path]) for k in runs[path][0]}
                                   for path in PATHS}
            row["rounds"] = runs
            for path in deps:
                suffix = "" if path == "gateway" else "_hops"
                ratio, added = against_direct(runs[path], runs["direct"])
                row["added_p50_ms" + suffix] = round(added, 3)
                row["throughput_ratio" + suffix] = round(ratio, 3)
            results[f"c{c}"] = row
    finally:
        for dep in deps.values():
            dep.stop()
        triton.stop()
    return results


def against_direct(path: list[dict[str, float]], direct: list[dict[str, float]]) -> tuple[float, float]:
    """Medians over rounds of (throughput ratio, added p50 ms), each round against its own direct run."""
    pairs = list(zip(path, direct, strict=True))
    return (statistics.median(g["throughput"] / d["throughput"] for g, d in pairs),
            statistics.median(g["p50_ms"] - d["p50_ms"] for g, d in pairs))


def _triton_for(repo: Path, model: str) -> Any:
    from tritium.local.tritonserver import TritonServer

    return TritonServer(repo, models=(model,)).start(timeout=180)


def _minilm(workdir: Path) -> tuple[Path, dict[str, Any]] | None:
    """A model repository for the MiniLM example (its model + the config.pbtxt the operator renders).

    The comparison uses identity stages, as for the tiny model: it measures the data plane, not
    tokenization.
    """
    example = ROOT / "examples" / "minilm"
    if not (example / "isvc.yaml").is_file() or not (example / "model" / "1").is_dir():
        return None
    from tritium.api.resource import load_inference_services
    from tritium.render.triton_config import render_config

    isvc = load_inference_services((example / "isvc.yaml").read_text())[0]
    repo = workdir / "minilm-repo"
    model_dir = repo / isvc.spec.model.name
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(render_config(isvc.spec.model))
    if not (model_dir / "1").exists():
        (model_dir / "1").symlink_to(example / "model" / "1")
    spec = isvc.spec.to_wire()
    spec.pop("preprocess", None)
    spec.pop("postprocess", None)
    spec["gateway"] = {}
    return repo, spec


def table(name: str, results: dict[str, Any]) -> str:
    lines = [f"### {name}", "", "| concurrency | path | throughput (infer/s) | p50 (ms) | p99 (ms) |",
             "|---|---|---|---|---|"]
    for c, r in results.items():
        for path in PATHS:
            m = r[path]
            lines.append(f"| {c[1:]} | {path} | {m['throughput']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} |")
        for path, suffix in (("gateway", ""), ("gateway+hops", "_hops")):
            lines.append(f"| {c[1:]} | **{path} / direct** | **{r['throughput_ratio' + suffix]:.2f}x** | "
                         f"**{r['added_p50_ms' + suffix]:+.2f}** | |")
    return "\n".join(lines)


def svg_plot(results: dict[str, Any]) -> str:
    """Grouped bars, direct vs gateway: throughput relative to direct, and p50 latency (ms). No plotting deps."""
    groups = [(model, c, r) for model, by_c in results.items() for c, r in by_c.items()]
    width, height, top, bottom, left = 160 * len(groups) + 80, 520, 40, 60, 60
    panel = (height - top - bottom - 40) // 2
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="12">',
             f'<text x="{left}" y="20" font-size="14">Direct Triton vs through the gateway (identity pre + post '
             'stages: skipped / called)</text>']
    colors = {"direct": "#4c72b0", "gateway": "#dd8452", "gateway+hops": "#55a868"}

    def shown(r: dict[str, Any], path: str, metric: str) -> float:
        """The figure the tables give: throughput as the median of the per-round ratios."""
        if metric != "throughput":
            return float(r[path][metric])
        return 1.0 if path == "direct" else float(r["throughput_ratio" + ("" if path == "gateway" else "_hops")])

    for p_i, (metric, label) in enumerate((("throughput", "throughput, relative to direct"),
                                           ("p50_ms", "p50 latency (ms)"))):
        y0 = top + p_i * (panel + 40) + panel
        peak = max(shown(r, p, metric) for p in PATHS for _, _, r in groups) or 1
        parts.append(f'<text x="{left}" y="{y0 - panel - 6}">{label}</text>')
        parts.append(f'<line x1="{left}" y1="{y0}" x2="{width - 20}" y2="{y0}" stroke="#333"/>')
        for g, (model, c, r) in enumerate(groups):
            x = left + 20 + g * 160
            for k, path in enumerate(PATHS):
                value = shown(r, path, metric)
                h = panel * value / peak
                parts.append(f'<rect x="{x + k * 45}" y="{y0 - h:.1f}" width="40" height="{h:.1f}" '
                             f'fill="{colors[path]}"/>')
                text = f"{value:.2f}x" if metric == "throughput" else f"{value:.2f}"
                parts.append(f'<text x="{x + k * 45 + 2}" y="{y0 - h - 3:.1f}" font-size="10">{text}</text>')
            if p_i == 1:
                parts.append(f'<text x="{x}" y="{y0 + 16}">{model} c={c[1:]}</text>')
    for k, path in enumerate(PATHS):
        parts.append(f'<rect x="{left + k * 110}" y="{height - 20}" width="12" height="12" fill="{colors[path]}"/>')
        parts.append(f'<text x="{left + 16 + k * 110}" y="{height - 9}">{path}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval-ms", type=int, default=3000, help="perf_analyzer measurement window")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--plot", default=None, help="also write an SVG bar chart to this file")
    parser.add_argument("--tiny-only", action="store_true", help="skip the MiniLM model")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per concurrency (medians)")
    args = parser.parse_args()
    pa = perf_analyzer()
    workdir = work_dir("tritium-bench-")
    spec = base_spec("identity")
    all_results = {"identity": bench_model(pa, "identity", None, spec, "INPUT0:16", args.interval_ms, workdir,
                                          args.rounds)}
    print(table("tiny model (identity, 16 x FP32)", all_results["identity"]))
    minilm = None if args.tiny_only else _minilm(workdir)
    if minilm is None:
        print("\n(MiniLM: skipped)")
    else:
        repo, mspec = minilm
        name = mspec["model"]["name"]
        shape = " ".join(f"--shape={t}:1,32" for t in ("input_ids", "attention_mask", "token_type_ids"))
        all_results["minilm"] = bench_model(pa, name, repo, mspec, shape, args.interval_ms, workdir, args.rounds)
        print("\n" + table("MiniLM (1 sentence, 32 tokens)", all_results["minilm"]))
    tiny = all_results["identity"]
    print("\ntargets (tiny model):")
    for path, suffix in (("gateway", ""), ("gateway+hops", "_hops")):
        added, ratio = tiny["c1"]["added_p50_ms" + suffix], tiny["c8"]["throughput_ratio" + suffix]
        print(f"  {path}: added p50 at c=1 {added:+.2f} ms (target <= {TARGETS['added_p50_ms_c1']}) -> "
              f"{'met' if added <= TARGETS['added_p50_ms_c1'] else 'NOT met'}; "
              f"throughput at c=8 {ratio:.2f}x (target >= {TARGETS['throughput_ratio_c8']}) -> "
              f"{'met' if ratio >= TARGETS['throughput_ratio_c8'] else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(all_results, indent=1))
    if args.plot:
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        Path(args.plot).write_text(svg_plot(all_results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
