"""The gateway's response cache: misses then hits, in memory and in a real Redis, visible in metrics."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from tests.support.dataplane import Deployment, base_spec, deploy
from tritium.local.tritonserver import TritonServer


def _spec(ttl: int = 60, max_entries: int = 100) -> dict:
    return base_spec("add", gateway={"cache": {"enabled": True, "ttlSeconds": ttl, "maxEntries": max_entries}})


def _invoke(dep: Deployment, body: dict) -> httpx.Response:
    r = httpx.post(f"{dep.url}/v1/models/add/invoke", json=body)
    assert r.status_code == 200, r.text
    return r


def _check_hits(dep: Deployment) -> None:
    body = {"inputs": {"INPUT0": [1, 2], "INPUT1": [3, 4]}, "parameters": {"a": 1, "b": 2}}
    first = _invoke(dep, body)
    assert first.headers["X-Tritium-Cache"] == "miss"
    # the same request with keys in another order is the same canonical request
    second = _invoke(dep, {"parameters": {"b": 2, "a": 1}, "inputs": {"INPUT1": [3, 4], "INPUT0": [1, 2]}})
    assert second.headers["X-Tritium-Cache"] == "hit"
    assert second.json() == first.json()
    assert second.headers["X-Request-Id"] != first.headers["X-Request-Id"]
    other = _invoke(dep, {"inputs": {"INPUT0": [1, 2], "INPUT1": [3, 5]}})
    assert other.headers["X-Tritium-Cache"] == "miss"
    v2 = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 1], "data": [7]},
                     {"name": "INPUT1", "datatype": "FP32", "shape": [1, 1], "data": [8]}]}
    states = [httpx.post(f"{dep.url}/v2/models/add/infer", json=v2).headers["X-Tritium-Cache"] for _ in range(2)]
    assert states == ["miss", "hit"]
    metrics = httpx.get(dep.metrics_url).text
    assert 'tritium_gateway_cache_total{model="add",result="hit"} 2.0' in metrics
    assert 'tritium_gateway_cache_total{model="add",result="miss"} 3.0' in metrics


def test_memory_cache_hit_miss_ttl_and_bound(triton: TritonServer, tmp_path: Path) -> None:
    dep = deploy(tmp_path, triton, _spec(ttl=1, max_entries=2), name="memcache")
    try:
        _check_hits(dep)
        body = {"inputs": {"INPUT0": [9], "INPUT1": [9]}}
        assert _invoke(dep, body).headers["X-Tritium-Cache"] == "miss"
        time.sleep(1.2)
        assert _invoke(dep, body).headers["X-Tritium-Cache"] == "miss", "expired after ttlSeconds"
        for i in range(3):  # maxEntries 2: the oldest is evicted
            _invoke(dep, {"inputs": {"INPUT0": [i], "INPUT1": [0]}})
        assert _invoke(dep, {"inputs": {"INPUT0": [0], "INPUT1": [0]}}).headers["X-Tritium-Cache"] == "miss"
    finally:
        dep.stop()


def test_redis_cache_is_shared_between_gateways(triton: TritonServer, tmp_path: Path, redis_url: str) -> None:
    env = {"TRITIUM_REDIS_URL": redis_url}
    dep = deploy(tmp_path, triton, _spec(max_entries=3), env=env, name="rediscache")
    twin = deploy(tmp_path, triton, _spec(max_entries=3), env=env, name="rediscache")
    try:
        _check_hits(dep)
        # another pod of the same revision hits what the first one stored
        r = _invoke(twin, {"inputs": {"INPUT0": [1, 2], "INPUT1": [3, 4]}, "parameters": {"a": 1, "b": 2}})
        assert r.headers["X-Tritium-Cache"] == "hit"
        keys = redis.Redis.from_url(redis_url).keys("tritium:cache:*")
        assert 0 < len(keys) <= 3 + 1  # maxEntries entries + the index
    finally:
        dep.stop()
        twin.stop()


def test_redis_down_is_a_miss_not_an_error(triton: TritonServer, tmp_path: Path) -> None:
    dep = deploy(tmp_path, triton, _spec(), env={"TRITIUM_REDIS_URL": "redis://127.0.0.1:1/0"}, name="noredis")
    try:
        for _ in range(2):
            assert _invoke(dep, {"inputs": {"INPUT0": [1], "INPUT1": [1]}}).headers["X-Tritium-Cache"] == "miss"
    finally:
        dep.stop()


@pytest.fixture(autouse=True)
def _flush(request: pytest.FixtureRequest) -> None:
    if "redis_url" in request.fixturenames:
        redis.Redis.from_url(request.getfixturevalue("redis_url")).flushdb()


PASS_PRE = "def preprocess(inputs, parameters):\n    return dict(inputs)\n"
PASS_POST = "def postprocess(outputs, parameters):\n    return dict(outputs)\n"


def test_v2_through_both_stages_is_cached_by_its_bytes(triton: TritonServer, tmp_path: Path) -> None:
    """Both stages called: v2 bodies go through the gateway undecoded (stages/v2_relay.py), and the
    cache keys on the bytes. A request sent again as it was is a hit with the same answer; the same
    tensors in the binary encoding are another key, answered by the pipeline, equal in value."""
    (tmp_path / "pre.py").write_text(PASS_PRE)
    (tmp_path / "post.py").write_text(PASS_POST)
    spec = base_spec("add", preprocess={"script": {"path": str(tmp_path / "pre.py")}},
                     postprocess={"script": {"path": str(tmp_path / "post.py")}},
                     gateway={"cache": {"enabled": True}})
    dep = deploy(tmp_path, triton, spec, name="relaycache")
    try:
        v2 = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]},
                         {"name": "INPUT1", "datatype": "FP32", "shape": [1, 2], "data": [3, 5]}],
              "outputs": [{"name": "SUM"}]}
        answers = [httpx.post(f"{dep.url}/v2/models/add/infer", json=v2) for _ in range(2)]
        assert [a.status_code for a in answers] == [200, 200], answers[0].text
        assert [a.headers["X-Tritium-Cache"] for a in answers] == ["miss", "hit"]
        assert answers[1].content == answers[0].content
        out = answers[0].json()["outputs"]
        assert [o["name"] for o in out] == ["SUM"] and out[0]["data"] == [4.0, 7.0]
        head = b'{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,2],"parameters":{"binary_data_size":8}},' \
               b'{"name":"INPUT1","datatype":"FP32","shape":[1,2],"parameters":{"binary_data_size":8}}],' \
               b'"outputs":[{"name":"SUM","parameters":{"binary_data":false}}]}'
        body = head + np.array([1, 2], np.float32).tobytes() + np.array([3, 5], np.float32).tobytes()
        binary = httpx.post(f"{dep.url}/v2/models/add/infer", content=body,
                            headers={"Content-Type": "application/octet-stream",
                                     "Inference-Header-Content-Length": str(len(head))})
        assert binary.status_code == 200, binary.text
        assert binary.headers["X-Tritium-Cache"] == "miss"
        assert binary.json()["outputs"][0]["data"] == [4.0, 7.0]
    finally:
        dep.stop()
