"""The SDK against the real data plane: a real Triton and gateway (and stages), no mocks.

invoke, stream (and cancelling one), batches with a failing item, every error the gateway can
produce here mapped to its type, and the async client under many concurrent calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support.dataplane import Deployment, base_spec, deploy
from tritium import AsyncInferenceClient, InferenceClient
from tritium.client import (
    APIConnectionError,
    DeadlineExceededError,
    InvalidInputError,
    ModelNotFoundError,
    RetryPolicy,
    ServiceUnavailableError,
    Timeout,
    TritiumError,
)
from tritium.local.tritonserver import TritonServer, free_port

ADD = {"INPUT0": [1.0, 2.0, 3.0], "INPUT1": [10.0, 20.0, 30.0]}
FAST_RETRIES = RetryPolicy(max_retries=2, backoff_base=0.01, backoff_max=0.05)


@pytest.fixture(scope="module")
def gw(triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    spec = base_spec("add", gateway={"maxRequestBytes": 4096, "requestTimeoutSeconds": 5,
                                     "cache": {"enabled": True, "ttlSeconds": 60, "maxEntries": 100}})
    dep = deploy(tmp_path_factory.mktemp("sdk"), triton, spec, name="sdk")
    yield dep
    dep.stop()


@pytest.fixture
def client(gw: Deployment) -> Iterator[InferenceClient]:
    with InferenceClient(endpoint=gw.url, retries=FAST_RETRIES) as c:
        yield c


# -- invoke --------------------------------------------------------------------------------------

def test_invoke_outputs_headers_and_metadata(client: InferenceClient) -> None:
    r = client.invoke(model_id="add", inputs={"INPUT0": np.array([1, 2, 3], np.float32), "INPUT1": [4, 5, 6]},
                      request_id="sdk-req-1")
    assert r.status_code == 200 and r.model == "add"
    np.testing.assert_array_equal(r.outputs["SUM"], [[5.0, 7.0, 9.0]])
    assert isinstance(r.outputs["DIFF"], np.ndarray) and r.outputs["DIFF"].shape == (1, 3)
    assert r.request_id == "sdk-req-1" and r.revision == "r1"
    assert r.text is None and r.json()["outputs"]["SUM"] == [[5.0, 7.0, 9.0]]
    assert 0 < r.latency_ms < 5000 and r.attempts == 1


def test_invoke_cache_hit_is_reported(client: InferenceClient) -> None:
    inputs = {"INPUT0": [7.0, 7.5], "INPUT1": [0.25, 0.5]}
    first = client.invoke(model_id="add", inputs=inputs, parameters={"tag": "cache-test"})
    second = client.invoke(model_id="add", inputs=inputs, parameters={"tag": "cache-test"})
    assert (first.cached, second.cached) == (False, True)
    np.testing.assert_array_equal(first.outputs["SUM"], second.outputs["SUM"])


def test_invoke_with_version(client: InferenceClient) -> None:
    assert client.invoke(model_id="add", inputs=ADD, version=1).outputs["SUM"].tolist() == [[11.0, 22.0, 33.0]]
    with pytest.raises(TritiumError) as info:
        client.invoke(model_id="add", inputs=ADD, version=7)
    assert info.value.status_code in (400, 404)


def test_metadata_and_health(client: InferenceClient) -> None:
    meta = client.model("add")
    assert meta.name == "add" and "1" in meta.versions
    assert [(t.name, t.datatype) for t in meta.inputs] == [("INPUT0", "FP32"), ("INPUT1", "FP32")]
    assert {t.name for t in meta.outputs} == {"SUM", "DIFF"}
    with pytest.raises(ModelNotFoundError):
        client.model("nope")
    health = client.health()
    assert health and health.live and health.ready


def test_models_lists_the_served_models(client: InferenceClient) -> None:
    assert "add" in client.models()


# -- errors --------------------------------------------------------------------------------------

def test_400_names_the_field(client: InferenceClient) -> None:
    with pytest.raises(InvalidInputError) as info:
        client.invoke(model_id="add", inputs={"INPUT0": [1, 2], "NOPE": [1]}, request_id="bad-1")
    err = info.value
    assert err.status_code == 400 and err.field == "inputs.NOPE" and err.request_id == "bad-1"
    assert err.message and "inputs.NOPE" in str(err) and "bad-1" in str(err)
    with pytest.raises(InvalidInputError) as info:
        client.invoke(model_id="stream", inputs={"PROMPT": "x"})
    assert info.value.code == "streaming_model"


def test_404_unknown_model(client: InferenceClient) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        client.invoke(model_id="nope", inputs={"x": [1]})
    assert info.value.status_code == 404 and info.value.code == "model_not_found" and info.value.request_id


def test_413_too_large(client: InferenceClient) -> None:
    with pytest.raises(InvalidInputError) as info:
        client.invoke(model_id="add", inputs={"INPUT0": [0.5] * 2000, "INPUT1": [1.0]})
    assert info.value.status_code == 413 and info.value.code == "request_too_large"


def test_415_raw_payload_without_a_pre_stage(client: InferenceClient) -> None:
    with pytest.raises(InvalidInputError) as info:
        client.invoke(model_id="add", content=b"<x/>", content_type="application/xml")
    assert info.value.status_code == 415 and info.value.field == "Content-Type"


def test_504_deadline_is_not_retried(client: InferenceClient) -> None:
    start = time.monotonic()
    with pytest.raises(DeadlineExceededError) as info:
        client.invoke(model_id="slow", inputs={"SECONDS": [1.5]}, timeout=0.3)
    assert info.value.status_code == 504 and info.value.code == "deadline_exceeded"
    assert time.monotonic() - start < 1.2, "a 504 on invoke must not be retried, nor outlive its deadline"


def test_client_side_read_timeout(gw: Deployment) -> None:
    with InferenceClient(endpoint=gw.url, timeout=Timeout(read=0.2), retries=0) as c, \
            pytest.raises(DeadlineExceededError) as info:
        c.invoke(model_id="slow", inputs={"SECONDS": [0.8]})
    assert info.value.status_code is None


def test_connection_refused_is_retried_then_raised() -> None:
    with InferenceClient(endpoint=f"http://127.0.0.1:{free_port()}", retries=FAST_RETRIES) as c:
        with pytest.raises(APIConnectionError, match="cannot reach"):
            c.invoke(model_id="add", inputs=ADD)
        with pytest.raises(APIConnectionError):
            c.health()


@pytest.fixture
def staged(triton: TritonServer, tmp_path: Path) -> Iterator[Deployment]:
    # The filter gives the post stage work on every request (a stage with none is not called).
    spec = base_spec("add", preprocess={"builtin": {"format": "json"}},
                     postprocess={"builtin": {"format": "json"}, "filter": {"include": ["SUM"]}})
    dep = deploy(tmp_path, triton, spec, name="sdkstages")
    yield dep
    dep.stop()


def test_503_stage_down_pre_is_retried_post_is_not(staged: Deployment) -> None:
    """A down pre stage: the model never ran, so the SDK retries; a down post stage: it ran, so it does not."""
    with InferenceClient(endpoint=staged.url, retries=RetryPolicy(max_retries=1, max_retry_after=5)) as c:
        assert c.invoke(model_id="add", inputs=ADD).outputs["SUM"].tolist() == [[11.0, 22.0, 33.0]]
        staged.stages["post"].kill()
        start = time.monotonic()
        with pytest.raises(ServiceUnavailableError) as info:
            c.invoke(model_id="add", inputs=ADD)
        assert info.value.field == "post" and info.value.retry_after == 1.0
        assert time.monotonic() - start < 0.9, "post-stage 503 must not be retried (the model ran)"

        staged.stages["pre"].kill()
        start = time.monotonic()
        with pytest.raises(ServiceUnavailableError) as info:
            c.invoke(model_id="add", inputs=ADD)
        assert info.value.code == "stage_unavailable" and info.value.field == "pre"
        assert time.monotonic() - start >= 1.0, "pre-stage 503 is retried after Retry-After: 1"
        assert not c.health() and "pre" in (c.health().detail or "")


# -- stream --------------------------------------------------------------------------------------

def test_stream_yields_chunks_in_order(client: InferenceClient) -> None:
    with client.stream(model_id="stream", inputs={"PROMPT": "tokens arrive one by one"}) as chunks:
        got = list(chunks)
        assert chunks.revision == "r1" and chunks.request_id
    assert "".join(c.text or "" for c in got) == "tokens arrive one by one"
    assert [c.index for c in got] == [0, 1, 2, 3, 4]
    assert [int(c.outputs["INDEX"][0]) for c in got] == [0, 1, 2, 3, 4]


def test_stream_errors_before_the_first_chunk(client: InferenceClient) -> None:
    with pytest.raises(ModelNotFoundError):
        list(client.stream(model_id="nope", inputs={"PROMPT": "x"}))
    with pytest.raises(InvalidInputError) as info:
        list(client.stream(model_id="stream", inputs={"NOPE": "x"}))
    assert info.value.field and info.value.field.startswith("inputs")


def test_stream_cancellation_releases_the_connection(gw: Deployment) -> None:
    """Stopping early closes the response: with a one-connection pool, the next call must not wait for it.

    (The test model does not poll for cancellation, so it finishes its words on the server anyway:
    prompts stay short so that the next stream does not queue behind it for long.)
    """
    words = " ".join(f"w{i}" for i in range(40))
    with InferenceClient(endpoint=gw.url, timeout=Timeout(pool=0.5), max_connections=1, retries=0) as c:
        for chunk in c.stream(model_id="stream", inputs={"PROMPT": words}):
            if chunk.index == 2:
                break  # the dropped iterator closes its response at once
        assert c.invoke(model_id="add", inputs=ADD).status_code == 200
        with c.stream(model_id="stream", inputs={"PROMPT": words}) as chunks:
            assert next(chunks).index == 0
        assert c.invoke(model_id="add", inputs=ADD).status_code == 200
        chunks = c.stream(model_id="stream", inputs={"PROMPT": words})
        assert next(chunks).index == 0
        chunks.close()
        assert list(chunks) == []
        assert c.invoke(model_id="add", inputs=ADD).status_code == 200


# -- batch ---------------------------------------------------------------------------------------

def test_invoke_batch_keeps_order_and_isolates_a_failure(client: InferenceClient) -> None:
    items = [{"inputs": {"INPUT0": [float(i)], "INPUT1": [1.0]}} for i in range(20)]
    items[7] = {"inputs": {"INPUT0": [1.0], "NOPE": [1.0]}}
    seen: list[tuple[int, int]] = []
    results = client.invoke_batch(items, model_id="add", concurrency=4,
                                  progress=lambda done, total, r: seen.append((done, total)))
    assert [r.index for r in results] == list(range(20))
    assert isinstance(results[7].error, InvalidInputError) and results[7].error.field == "inputs.NOPE"
    assert not results[7].ok and all(r.ok for i, r in enumerate(results) if i != 7)
    assert [r.unwrap().outputs["SUM"][0, 0] for i, r in enumerate(results) if i != 7] == \
        [i + 1.0 for i in range(20) if i != 7]
    assert sorted(seen) == [(n, 20) for n in range(1, 21)]


async def test_async_batch_with_a_bad_item(gw: Deployment) -> None:
    items = [{"model_id": "add", "inputs": {"INPUT0": [float(i)], "INPUT1": [2.0]}} for i in range(12)]
    items.insert(3, {"model_id": "nope", "inputs": {"x": [1]}})
    done: list[int] = []
    async with AsyncInferenceClient(endpoint=gw.url) as c:
        results = await c.invoke_batch(items, concurrency=5, progress=lambda n, total, r: done.append(n))
    assert isinstance(results[3].error, ModelNotFoundError)
    assert [r.response.outputs["SUM"][0, 0] for r in results if r.response] == [i + 2.0 for i in range(12)]
    assert done == list(range(1, 14))


# -- async ---------------------------------------------------------------------------------------

async def test_async_client_many_concurrent_calls(gw: Deployment) -> None:
    async with AsyncInferenceClient(endpoint=gw.url, max_connections=32) as c:
        responses = await asyncio.gather(*(
            c.invoke(model_id="add", inputs={"INPUT0": [float(i), 1.0], "INPUT1": [1.0, float(i)]})
            for i in range(200)))
        assert [r.outputs["SUM"].tolist() for r in responses] == [[[i + 1.0, i + 1.0]] for i in range(200)]
        assert len({r.request_id for r in responses}) == 200
        assert (await c.health()).ready and (await c.model("add")).name == "add"
        with pytest.raises(InvalidInputError):
            await c.invoke(model_id="add", inputs={"INPUT0": [1, 2], "NOPE": [1]})


async def test_async_stream_and_cancellation(gw: Deployment) -> None:
    async with AsyncInferenceClient(endpoint=gw.url, timeout=Timeout(pool=0.5), max_connections=1) as c:
        async with c.stream(model_id="stream", inputs={"PROMPT": "a b c d"}) as chunks:
            texts = [chunk.text async for chunk in chunks]
        assert "".join(t or "" for t in texts) == "a b c d"

        words = " ".join(f"w{i}" for i in range(40))
        async with c.stream(model_id="stream", inputs={"PROMPT": words}) as chunks:
            async for chunk in chunks:
                if chunk.index == 1:
                    break

        async def consume() -> None:
            async for _ in c.stream(model_id="stream", inputs={"PROMPT": words}):
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Both early exits released the only pooled connection.
        assert (await c.invoke(model_id="add", inputs=ADD)).status_code == 200


def test_sdk_requests_match_a_bare_http_call(gw: Deployment, client: InferenceClient) -> None:
    """The SDK's body is the documented invoke body: same answer as a hand-written request."""
    bare = httpx.post(f"{gw.url}/v1/models/add/invoke", json={"inputs": ADD, "parameters": {"k": 1}}).json()
    sdk = client.invoke(model_id="add", inputs=ADD, parameters={"k": 1}).json()
    assert sdk["outputs"] == bare["outputs"]
