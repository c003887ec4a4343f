"""Data-plane benchmark: the same client straight at Triton and through the gateway, in one run.

Client: NVIDIA's perf_analyzer from the tritonclient 2.51 wheel (HTTP, KServe v2), which needs
libb64.so.0d and libcudart.so.12: both are taken from the copies vendored in the nvidia-pytriton
wheel through a directory of symlinks, so nothing is installed system-wide.

Pipeline under test: gateway + built-in JSON pre and post stages (identity on v2 tensors), i.e.
three hops more than direct Triton. Models: tests/data/models/identity (tiny) and the MiniLM
example when examples/minilm exists.

    python benchmarks/dataplane_bench.py [--interval-ms 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.dataplane import base_spec, deploy, start_triton  # noqa: E402

TARGETS = {"added_p50_ms_c1": 1.0, "throughput_ratio_c8": 0.6}


def perf_analyzer() -> tuple[str, dict[str, str]]:
    """The perf_analyzer binary and an environment in which its shared libraries resolve."""
    binary = Path(sys.executable).parent / "perf_analyzer"
    if not binary.is_file():
        sys.exit("perf_analyzer not found: pip install 'tritonclient[all]==2.51.0'")
    import pytriton

    libs = Path(pytriton.__file__).resolve().parents[1] / "nvidia_pytriton.libs"
    shim = Path(tempfile.mkdtemp(prefix="pa-libs-"))
    for pattern, name in (("libb64-*.so.0d", "libb64.so.0d"), ("libcudart-*.so.12*", "libcudart.so.12")):
        found = sorted(libs.glob(pattern))
        if found:
            (shim / name).symlink_to(found[0])
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(shim), env.get("LD_LIBRARY_PATH", "")) if p)
    return str(binary), env


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
                interval_ms: int, workdir: Path) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"models": (model,)}
    triton = start_triton(**kwargs) if repo is None else _triton_for(repo, model)
    dep = deploy(workdir, triton, spec, name=f"bench-{model}")
    results: dict[str, Any] = {}
    try:
        for c in (1, 8):
            direct = measure(pa, triton.http_url, model, shape, c, interval_ms, workdir)
            via = measure(pa, dep.url, model, shape, c, interval_ms, workdir)
            results[f"c{c}"] = {
                "direct": direct, "gateway": via,
                "added_p50_ms": round(via["p50_ms"] - direct["p50_ms"], 3),
                "throughput_ratio": round(via["throughput"] / direct["throughput"], 3),
            }
    finally:
        dep.stop()
        triton.stop()
    return results


def _triton_for(repo: Path, model: str) -> Any:
    from tritium.local.tritonserver import TritonServer

    return TritonServer(repo, models=(model,)).start(timeout=180)


def _minilm(workdir: Path) -> tuple[Path, dict[str, Any]] | None:
    """A model repository for the MiniLM example (its model + the config.pbtxt the operator renders).

    The comparison uses identity (built-in) stages, as for the tiny model: it measures the data
    plane, not tokenization.
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
    spec["preprocess"] = {"builtin": {"format": "json"}}
    spec["postprocess"] = {"builtin": {"format": "json"}}
    spec["gateway"] = {}
    return repo, spec


def table(name: str, results: dict[str, Any]) -> str:
    lines = [f"### {name}", "", "| concurrency | path | throughput (infer/s) | p50 (ms) | p99 (ms) |",
             "|---|---|---|---|---|"]
    for c, r in results.items():
        for path in ("direct", "gateway"):
            m = r[path]
            lines.append(f"| {c[1:]} | {path} | {m['throughput']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} |")
        lines.append(f"| {c[1:]} | **gateway/direct** | **{r['throughput_ratio']:.2f}x** | "
                     f"**+{r['added_p50_ms']:.2f}** | |")
    return "\n".join(lines)


def svg_plot(results: dict[str, Any]) -> str:
    """Grouped bars, direct vs gateway: throughput relative to direct, and p50 latency (ms). No plotting deps."""
    groups = [(model, c, r) for model, by_c in results.items() for c, r in by_c.items()]
    width, height, top, bottom, left = 140 * len(groups) + 80, 520, 40, 60, 60
    panel = (height - top - bottom - 40) // 2
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="12">',
             f'<text x="{left}" y="20" font-size="14">Direct Triton vs through the gateway (pre + post stages)</text>']
    colors = {"direct": "#4c72b0", "gateway": "#dd8452"}
    for p_i, (metric, label) in enumerate((("throughput", "throughput, relative to direct"),
                                           ("p50_ms", "p50 latency (ms)"))):
        y0 = top + p_i * (panel + 40) + panel
        peak = max(max(r["direct"][metric], r["gateway"][metric]) /
                   (r["direct"]["throughput"] if metric == "throughput" else 1) for _, _, r in groups) or 1
        parts.append(f'<text x="{left}" y="{y0 - panel - 6}">{label}</text>')
        parts.append(f'<line x1="{left}" y1="{y0}" x2="{width - 20}" y2="{y0}" stroke="#333"/>')
        for g, (model, c, r) in enumerate(groups):
            x = left + 20 + g * 140
            for k, path in enumerate(("direct", "gateway")):
                value = r[path][metric] / (r["direct"]["throughput"] if metric == "throughput" else 1)
                h = panel * value / peak
                parts.append(f'<rect x="{x + k * 45}" y="{y0 - h:.1f}" width="40" height="{h:.1f}" '
                             f'fill="{colors[path]}"/>')
                text = f"{value:.2f}x" if metric == "throughput" else f"{value:.2f}"
                parts.append(f'<text x="{x + k * 45 + 2}" y="{y0 - h - 3:.1f}" font-size="10">{text}</text>')
            if p_i == 1:
                parts.append(f'<text x="{x}" y="{y0 + 16}">{model} c={c[1:]}</text>')
    for k, path in enumerate(("direct", "gateway")):
        parts.append(f'<rect x="{width - 200 + k * 90}" y="8" width="12" height="12" fill="{colors[path]}"/>')
        parts.append(f'<text x="{width - 184 + k * 90}" y="19">{path}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval-ms", type=int, default=3000, help="perf_analyzer measurement window")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--plot", default=None, help="also write an SVG bar chart to this file")
    args = parser.parse_args()
    pa = perf_analyzer()
    workdir = Path(tempfile.mkdtemp(prefix="tritium-bench-"))
    spec = base_spec("identity", preprocess={"builtin": {"format": "json"}},
                     postprocess={"builtin": {"format": "json"}})
    all_results = {"identity": bench_model(pa, "identity", None, spec, "INPUT0:16", args.interval_ms, workdir)}
    print(table("tiny model (identity, 16 x FP32)", all_results["identity"]))
    minilm = _minilm(workdir)
    if minilm is None:
        print("\n(MiniLM: examples/minilm not found, skipped)")
    else:
        repo, mspec = minilm
        name = mspec["model"]["name"]
        shape = " ".join(f"--shape={t}:1,32" for t in ("input_ids", "attention_mask", "token_type_ids"))
        all_results["minilm"] = bench_model(pa, name, repo, mspec, shape, args.interval_ms, workdir)
        print("\n" + table("MiniLM (1 sentence, 32 tokens)", all_results["minilm"]))
    tiny = all_results["identity"]
    verdict = {
        "added_p50_ms_c1": (tiny["c1"]["added_p50_ms"], tiny["c1"]["added_p50_ms"] <= TARGETS["added_p50_ms_c1"]),
        "throughput_ratio_c8": (tiny["c8"]["throughput_ratio"],
                                tiny["c8"]["throughput_ratio"] >= TARGETS["throughput_ratio_c8"]),
    }
    print("\ntargets (tiny model):")
    for key, (value, ok) in verdict.items():
        print(f"  {key}: {value} (target {TARGETS[key]}) -> {'met' if ok else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(all_results, indent=1))
    if args.plot:
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        Path(args.plot).write_text(svg_plot(all_results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
