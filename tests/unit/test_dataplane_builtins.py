"""Built-in stages, user scripts and the in-memory cache, without processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from tritium.api.spec import InferenceServiceSpec, OutputFilter, PostTopK
from tritium.dataplane.cache import CachedResponse, MemoryCache, cache_key
from tritium.dataplane.config import ConfigError
from tritium.dataplane.errors import ApiError
from tritium.dataplane.stages.builtin_post import apply_filter, to_xml, top_k
from tritium.dataplane.stages.builtin_pre import BuiltinPre, parse_xml_inputs
from tritium.dataplane.stages.server import StageProcessor

MODEL = {"name": "m", "max_batch_size": 0, "inputs": {"x": ["FP32", [3]], "t": ["BYTES", [1]]}}


def _spec(**sections: object) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate({"model": {"name": "m", "storageUri": "file:///m", "format": "python"},
                                                **sections})


def test_xml_inputs_and_defused_parsing() -> None:
    inputs, params = parse_xml_inputs(b'<r><input name="x" shape="1,3">1 2.5 3</input>'
                                      b'<input name="t" type="text">a b</input><parameter name="k">v</parameter></r>')
    assert inputs == {"x": [[1, 2.5, 3]], "t": "a b"} and params == {"k": "v"}
    for bad in (b"<r><input>", b'<!DOCTYPE r [<!ENTITY e "x">]><r><input name="x">&e;</input></r>',
                b'<!DOCTYPE r SYSTEM "http://example.com/x.dtd"><r/>'):
        with pytest.raises(ApiError) as err:
            parse_xml_inputs(bad)
        assert err.value.status == 400


def test_binary_payloads() -> None:
    pre = BuiltinPre("binary")
    x = np.array([1, 2, 3], np.float32)
    out = pre.tensors("application/octet-stream", x.tobytes(), None, MODEL, {"input": "x"})
    np.testing.assert_array_equal(out["x"], x)
    with pytest.raises(ApiError) as err:
        pre.tensors("application/json", b"{}", None, MODEL, {})
    assert err.value.status == 415


def test_topk_and_filter() -> None:
    out = top_k({"p": np.array([[0.1, 0.7, 0.2]]), "q": np.array([1])}, PostTopK(output="p", k=2))
    np.testing.assert_array_equal(out["p_indices"], [[1, 2]])
    filtered = apply_filter(out, OutputFilter(include=["p", "p_indices"], rename={"p": "scores"}))
    assert set(filtered) == {"scores", "p_indices"}
    assert b'<output name="q" datatype="INT64" shape="1">1</output>' in to_xml({"q": np.array([1])}, None)


def test_pre_processor_schema_names_the_field() -> None:
    schema = {"type": "object", "required": ["x"], "properties": {"x": {"type": "array", "maxItems": 3}}}
    proc = StageProcessor("pre", _spec(preprocess={"builtin": {}, "inputSchema": schema}))
    header = {"mode": "json", "model": MODEL, "inputs": {"x": [1, 2, 3, 4]}}
    with pytest.raises(ApiError) as err:
        asyncio.run(proc.process(header, {}, None))
    assert err.value.field == "inputs.x"
    header["inputs"] = {}
    with pytest.raises(ApiError) as err:
        asyncio.run(proc.process(header, {}, None))
    assert err.value.field == "inputs.x"


def test_script_stage(tmp_path: Path) -> None:
    script = tmp_path / "post.py"
    script.write_text("STATE = {}\n"
                      "def setup(options):\n    STATE.update(options)\n"
                      "def postprocess(outputs, parameters):\n"
                      "    if parameters.get('bad'):\n        raise ValueError('bad parameter')\n"
                      "    return {'y': outputs['y'] * 2, 'text': STATE['greeting'], 'n': 1}\n")
    proc = StageProcessor("post", _spec(postprocess={"script": {"path": str(script),
                                                                "options": {"greeting": "hi"}}}))
    head, tensors, _ = asyncio.run(proc.process({"mode": "invoke"}, {"y": np.array([1.0])}, None))
    assert head["text"] == "hi" and head["values"] == {"n": 1} and tensors["y"].tolist() == [2.0]
    with pytest.raises(ApiError) as err:
        asyncio.run(proc.process({"mode": "invoke", "parameters": {"bad": True}}, {"y": np.array([1.0])}, None))
    assert err.value.status == 400 and "bad parameter" in err.value.message


def test_script_problems_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ConfigError, match="defines no preprocess"):
        StageProcessor("pre", _spec(preprocess={"script": {"path": str(tmp_path / "empty.py")}}))
    with pytest.raises(ConfigError, match="does not exist"):
        StageProcessor("pre", _spec(preprocess={"script": {"path": str(tmp_path / "missing.py")}}))


def test_memory_cache_ttl_and_bound() -> None:
    async def run() -> None:
        cache = MemoryCache(ttl_seconds=60, max_entries=2)
        for i in range(3):
            await cache.set(str(i), CachedResponse(b"%d" % i, "application/json", {}))
        assert await cache.get("0") is None and (await cache.get("2")).body == b"2"  # type: ignore[union-attr]
        expired = MemoryCache(ttl_seconds=0, max_entries=2)
        await expired.set("k", CachedResponse(b"", "x", {}))
        assert await expired.get("k") is None

    asyncio.run(run())
    assert cache_key("m", "", "invoke", b"ab", b"c") != cache_key("m", "", "invoke", b"a", b"bc")
    blob = CachedResponse(b"body", "application/json", {"h": "v"}).encode()
    assert CachedResponse.decode(blob) == CachedResponse(b"body", "application/json", {"h": "v"})
