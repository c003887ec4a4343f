"""The data-plane benchmark's plot shows the ratios its table gives (medians of the per-round ratios).

The two once disagreed (the plot divided median throughputs): with rounds whose ratios spread,
the median of the ratios and the ratio of the medians differ, which the data below makes sure of.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import dataplane_bench


def row(direct: list[float], gateway: list[float], hops: list[float]) -> dict[str, object]:
    def medians(values: list[float]) -> dict[str, float]:
        return {"throughput": sorted(values)[1], "p50_ms": 1.0, "p99_ms": 2.0}

    def ratio(path: list[float]) -> float:
        return round(sorted(g / d for g, d in zip(path, direct, strict=True))[1], 3)

    return {"direct": medians(direct), "gateway": medians(gateway), "gateway+hops": medians(hops),
            "throughput_ratio": ratio(gateway), "throughput_ratio_hops": ratio(hops),
            "added_p50_ms": 0.1, "added_p50_ms_hops": 0.5}


def test_plot_and_table_give_the_same_ratios() -> None:
    results = {"tiny": {"c1": row([100, 200, 400], [90, 100, 300], [20, 150, 100]),
                        "c8": row([1000, 900, 800], [300, 800, 700], [200, 300, 700])}}
    c1 = results["tiny"]["c1"]
    assert c1["throughput_ratio"] != round(c1["gateway"]["throughput"] / c1["direct"]["throughput"], 3)  # type: ignore[index]
    table = dataplane_bench.table("tiny", results["tiny"])
    in_table = re.findall(r"\*\*(\d+\.\d\d)x\*\*", table)
    plotted = [v for v in re.findall(r">(\d+\.\d\d)x<", dataplane_bench.svg_plot(results)) if v != "1.00"]
    assert plotted == in_table and len(in_table) == 4
