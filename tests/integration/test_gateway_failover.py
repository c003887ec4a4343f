"""Triton dies under the gateway: clients get 503 with Retry-After, and service resumes when it is back."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.support.dataplane import base_spec, deploy, start_triton

BODY = {"inputs": {"INPUT0": [1, 2], "INPUT1": [3, 4]}}


def test_triton_killed_then_back(tmp_path: Path) -> None:
    triton = start_triton(models=("add",))  # private: this test kills it
    dep = deploy(tmp_path, triton, base_spec("add"), name="failover")
    try:
        url = f"{dep.url}/v1/models/add/invoke"
        assert httpx.post(url, json=BODY).status_code == 200
        triton.kill()
        start = time.monotonic()
        r = httpx.post(url, json=BODY, timeout=10)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "triton_unavailable"
        assert r.headers["Retry-After"] == "1"
        assert time.monotonic() - start < 5, "a dead Triton must not hang the request"
        assert httpx.post(f"{dep.url}/v2/models/add/infer", json={"inputs": [
            {"name": "INPUT0", "datatype": "FP32", "shape": [1, 1], "data": [1]},
            {"name": "INPUT1", "datatype": "FP32", "shape": [1, 1], "data": [1]}]}).status_code == 503
        ready = httpx.get(f"{dep.url}/v2/health/ready")
        assert ready.status_code == 503 and "triton" in ready.text

        triton.start(timeout=90)  # same ports, as a restarted container
        deadline = time.monotonic() + 15
        while (r := httpx.post(url, json=BODY)).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert r.status_code == 200, r.text
        assert r.json()["outputs"]["SUM"] == [[4.0, 6.0]]
        # Readiness follows within a probe period (the gateway re-checks Triton, it does not poll per request).
        deadline = time.monotonic() + 15
        while httpx.get(f"{dep.url}/v2/health/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert httpx.get(f"{dep.url}/v2/health/ready").status_code == 200
    finally:
        dep.stop()
        triton.stop()
