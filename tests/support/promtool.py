"""A real promtool, and the synthetic series of one revision's pods that the adapter and KEDA tests share.

tests/unit/test_prometheus_adapter.py evaluates the chart's prometheus-adapter queries on these
series per pod; tests/unit/test_render_scaledobject.py evaluates the ScaledObject's queries on the
same series per revision, so the two can be held to agree (KEDA's value is the sum of the pods').
"""

from __future__ import annotations

import shutil
import subprocess

from tests.support.tools import missing_tool


def promtool() -> str:
    """The promtool binary: skipped on a developer machine without one, a failure in CI."""
    found = shutil.which("promtool")
    if found is None:
        missing_tool("promtool not installed (Debian package prometheus; `make system-deps` installs it as root)",
                     "the Prometheus rules and queries must be checked in CI")
    return found


def run_promtool(*args: str) -> None:
    """promtool with these arguments; it must succeed (`check rules`, `test rules`)."""
    result = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# Synthetic series, one sample per 15 s (the PodMonitor's interval). Pod demo-...-a serves two
# models: m1 90 requests/s waiting 10 ms each, m2 10 requests/s waiting 100 ms each. Its
# request-weighted queue time is (90*10 + 10*100) / 100 = 19 ms; the average of the two models'
# averages would be 55 ms. Pod demo-...-b is idle. Pod other-... is another service's, outside
# the matchers, and must not count. Pod demo-...-c has only just started.
NAMESPACE = "ml"
A, B, OTHER = "demo-0123456789-a", "demo-0123456789-b", "other-0123456789-a"
C = "demo-0123456789-c"  # just started: its gateway has answered probes only


def series(name: str, values: str, pod: str, **labels: str) -> dict[str, str]:
    """One promtool input series of a pod in NAMESPACE, labelled with its InferenceService."""
    all_labels = {"namespace": NAMESPACE, "pod": pod, "inferenceservice": pod.split("-")[0], **labels}
    body = ",".join(f'{k}="{v}"' for k, v in sorted(all_labels.items()))
    return {"series": f"{name}{{{body}}}", "values": values}


INPUT = [
    # Gateway: per 15 s, a: 150 infer + 75 invoke (5xx count too) + 15 ready probes; b: 30 stream.
    series("tritium_gateway_requests_total", "0+150x40", A, model="m1", endpoint="infer", code="200"),
    series("tritium_gateway_requests_total", "0+75x40", A, model="m1", endpoint="invoke", code="503"),
    series("tritium_gateway_requests_total", "0+15x40", A, model="", endpoint="ready", code="200"),
    series("tritium_gateway_requests_total", "0+30x40", B, model="m1", endpoint="stream", code="200"),
    series("tritium_gateway_requests_total", "0+15x40", C, model="", endpoint="live", code="200"),
    series("tritium_gateway_requests_total", "0+1500x40", OTHER, model="m1", endpoint="infer", code="200"),
    # Triton queue time (µs) and successful requests, per 15 s.
    series("nv_inference_request_success", "0+1350x40", A, model="m1", version="1"),
    series("nv_inference_queue_duration_us", "0+13500000x40", A, model="m1", version="1"),
    series("nv_inference_request_success", "0+150x40", A, model="m2", version="1"),
    series("nv_inference_queue_duration_us", "0+15000000x40", A, model="m2", version="1"),
    series("nv_inference_request_success", "0+0x40", B, model="m1", version="1"),
    series("nv_inference_queue_duration_us", "0+0x40", B, model="m1", version="1"),
    series("nv_inference_request_success", "0+15x40", OTHER, model="m1", version="1"),
    series("nv_inference_queue_duration_us", "0+15000000000x40", OTHER, model="m1", version="1"),
    # Gauges.
    series("nv_inference_pending_request_count", "2+0x40", A, model="m1", version="1"),
    series("nv_inference_pending_request_count", "3+0x40", A, model="m2", version="1"),
    series("nv_inference_pending_request_count", "0+0x40", B, model="m1", version="1"),
    series("nv_gpu_utilization", "0.5+0x40", A, gpu_uuid="GPU-0"),
    series("nv_gpu_utilization", "0.9+0x40", A, gpu_uuid="GPU-1"),
    series("nv_gpu_utilization", "0.2+0x40", B, gpu_uuid="GPU-2"),
]

# What the adapter gives each pod on INPUT, per custom metric.
EXPECTED: dict[str, dict[str, float]] = {
    # (150 + 75) / 15 s: the probes are not load; a pod with probes only is at 0, not absent.
    "tritium_requests_per_second": {A: 15, B: 2, C: 0},
    "tritium_queue_time_per_request_ms": {A: 19, B: 0},  # request-weighted; idle is 0, not absent
    "tritium_pending_requests": {A: 5, B: 0},
    "tritium_gpu_utilization": {A: 0.7, B: 0.2},
}
