"""The pipeline signature (dataplane/signature.py): declarations, derivation, documents, values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tritium.api.spec import PostprocessSpec, PreprocessSpec
from tritium.dataplane import signature as sig
from tritium.dataplane.config import ConfigError
from tritium.dataplane.errors import ApiError

CORE_IN = {"INPUT0": ("FP32", (-1, 4)), "INPUT1": ("FP32", (-1, 4))}
CORE_OUT = {"SUM": ("FP32", (-1, 4)), "DIFF": ("FP32", (-1, 4))}
TEXT = sig.TensorSpec("text", "BYTES", (-1,))


def _pre(**kw: object) -> PreprocessSpec:
    return PreprocessSpec.model_validate(kw)


def _post(**kw: object) -> PostprocessSpec:
    return PostprocessSpec.model_validate(kw)


def test_declared_reads_a_list_of_tensors() -> None:
    specs = sig.declared([{"name": "text", "datatype": "BYTES", "shape": [-1]}], "INPUTS", "pre.py")
    assert specs == (TEXT,)


@pytest.mark.parametrize(("value", "message"), [
    ([], "non-empty list"),
    ("text", "non-empty list"),
    ([{"name": "a", "datatype": "STRING", "shape": [1]}], r"INPUTS\[0\].datatype must be one of"),
    ([{"name": "", "datatype": "BYTES", "shape": [1]}], r"INPUTS\[0\].name"),
    ([{"name": "a", "datatype": "BYTES", "shape": [-2]}], r"INPUTS\[0\].shape"),
    ([{"name": "a", "datatype": "BYTES", "shape": [True]}], r"INPUTS\[0\].shape"),
    ([{"name": "a", "datatype": "BYTES", "shape": [1], "dims": [1]}], "name, datatype and shape only"),
    ([{"name": "a", "datatype": "BYTES", "shape": [1]}, {"name": "a", "datatype": "FP32", "shape": [1]}],
     "appears twice"),
])
def test_a_wrong_declaration_is_a_config_error_naming_the_entry(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        sig.declared(value, "INPUTS", "pre.py")


def test_without_script_stages_the_core_tensors_are_the_pipeline() -> None:
    s = sig.pipeline_signature(CORE_IN, CORE_OUT, 8, _pre(builtin={"format": "json"}), None, None, None)
    assert [t.name for t in s.inputs] == ["INPUT0", "INPUT1"]
    assert [t.name for t in s.outputs] == ["SUM", "DIFF"]
    assert s.max_batch_size == 8  # the inputs are the core's: so is its batching


def test_scripts_declare_the_pipeline_and_undeclared_ones_pass_the_core_through() -> None:
    out = (sig.TensorSpec("score", "FP64", (-1,)),)
    s = sig.pipeline_signature(CORE_IN, CORE_OUT, 8, _pre(script={"path": "p.py"}),
                               _post(script={"path": "q.py"}), (TEXT,), out)
    assert s.inputs == (TEXT,) and s.outputs == out and s.max_batch_size == 0
    s = sig.pipeline_signature(CORE_IN, CORE_OUT, 8, _pre(script={"path": "p.py"}),
                               _post(script={"path": "q.py"}), None, None)
    assert [t.name for t in s.inputs] == ["INPUT0", "INPUT1"] and [t.name for t in s.outputs] == ["SUM", "DIFF"]
    assert s.max_batch_size == 8
    # What a built-in pre stage "declares" is never used: it passes v2 tensors through.
    s = sig.pipeline_signature(CORE_IN, CORE_OUT, 8, _pre(builtin={"format": "json"}), None, (TEXT,), None)
    assert [t.name for t in s.inputs] == ["INPUT0", "INPUT1"]


def test_builtin_top_k_and_the_filter_reshape_and_rename_outputs() -> None:
    post = _post(builtin={"format": "json", "topK": {"output": "SUM", "k": 2}},
                 filter={"include": ["SUM", "SUM_indices"], "rename": {"SUM": "top"}})
    s = sig.pipeline_signature(CORE_IN, CORE_OUT, 8, None, post, None, None)
    assert s.outputs == (sig.TensorSpec("top", "FP32", (-1, 2)), sig.TensorSpec("SUM_indices", "INT64", (-1, 2)))


def test_a_filter_applies_to_declared_script_outputs_too() -> None:
    declared = (sig.TensorSpec("a", "FP32", (1,)), sig.TensorSpec("b", "FP32", (1,)))
    post = _post(script={"path": "q.py"}, filter={"include": ["b"], "rename": {"b": "B"}})
    s = sig.pipeline_signature(CORE_IN, CORE_OUT, 0, None, post, None, declared)
    assert s.outputs == (sig.TensorSpec("B", "FP32", (1,)),)


def test_metadata_and_config_documents() -> None:
    s = sig.Signature((TEXT,), (sig.TensorSpec("e", "FP32", (-1, 3)),), 0)
    core = {"name": "m", "versions": ["1"], "platform": "python", "inputs": [], "outputs": []}
    assert sig.metadata(core, s) == {
        "name": "m", "versions": ["1"], "platform": "tritium_pipeline",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "e", "datatype": "FP32", "shape": [-1, 3]}]}
    config = sig.config({"name": "m", "max_batch_size": 8, "dynamic_batching": {}, "backend": "python"}, s)
    assert config["input"] == [{"name": "text", "data_type": "TYPE_STRING", "dims": [-1]}]
    assert config["max_batch_size"] == 0 and "dynamic_batching" not in config and config["backend"] == "python"
    batched = sig.config({"max_batch_size": 8, "dynamic_batching": {}},
                         sig.Signature((sig.TensorSpec("x", "FP32", (-1, 4)),), (), 8))
    assert batched["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [4]}]  # no batch dim
    assert "dynamic_batching" in batched


texts = st.one_of(st.text(max_size=8), st.binary(max_size=8))


@given(st.lists(texts, min_size=1, max_size=6))
def test_bytes_tensors_reach_scripts_as_str_when_utf8_else_bytes(items: list[str | bytes]) -> None:
    arr = np.array([x.encode() if isinstance(x, str) else x for x in items] + [b""], dtype=np.object_)[:-1]
    values = sig.script_value(arr)
    assert isinstance(values, list) and len(values) == len(items)
    for got, item in zip(values, items, strict=True):
        raw = item.encode() if isinstance(item, str) else item
        try:
            assert got == raw.decode() and isinstance(got, str)
        except UnicodeDecodeError:
            assert got == raw and isinstance(got, bytes)


def test_numbers_stay_arrays_and_nested_text_keeps_its_shape() -> None:
    arr = np.arange(4, dtype=np.float32)
    assert sig.script_value(arr) is arr
    nested = np.array([[b"a", b"b"], [b"c", b"\xff"]], dtype=np.object_)
    assert sig.script_value(nested) == [["a", "b"], ["c", b"\xff"]]
    assert sig.script_value(np.array(b"x", dtype=np.object_)) == "x"


def test_v2_tensors_are_checked_against_the_declared_inputs() -> None:
    ok = {"text": np.array([b"a"], dtype=np.object_)}
    assert sig.tensors_for_script(ok, (TEXT,)) == {"text": ["a"]}
    for tensors, message in (
        ({"txt": ok["text"]}, r"unknown input 'txt': the pipeline takes text \(BYTES \[-1\]\)"),
        ({}, "input 'text' is required"),
        ({"text": np.ones(2, dtype=np.int32)}, "is INT32, the pipeline takes BYTES"),
        ({"text": np.array([[b"a"]], dtype=np.object_)}, r"has shape \[1, 1\], the pipeline takes \[-1\]"),
    ):
        with pytest.raises(ApiError, match=message) as exc:
            sig.tensors_for_script(tensors, (TEXT,))
        assert exc.value.status == 400 and (exc.value.field or "").startswith("inputs.")
    # Nothing declared: nothing to check against, the values still converted.
    assert sig.tensors_for_script({"any": ok["text"]}, None) == {"any": ["a"]}


def test_invoke_json_gets_the_values_its_v2_form_would_give() -> None:
    vector = sig.TensorSpec("v", "FP32", (3,))
    values = sig.json_for_script({"text": ["a", {"b64": "/w=="}], "v": [1, 2, 3]}, (TEXT, vector))
    assert values["text"] == ["a", b"\xff"]
    assert isinstance(values["v"], np.ndarray) and values["v"].dtype == np.float32
    with pytest.raises(ApiError, match=r"has shape \[2\], the pipeline takes \[3\]"):
        sig.json_for_script({"text": "a", "v": [1, 2]}, (TEXT, vector))
    with pytest.raises(ApiError, match="must be text"):
        sig.json_for_script({"text": 3, "v": [1, 2, 3]}, (TEXT, vector))
    undeclared = {"anything": {"nested": [1]}}
    assert sig.json_for_script(undeclared, None) is undeclared


def test_post_script_results_become_the_declared_typed_outputs() -> None:
    outputs = (sig.TensorSpec("e", "FP32", (-1, 2)), sig.TensorSpec("label", "BYTES", (1,)))
    out = sig.outputs_from_script({"e": [[1.5, 2.0]], "label": ["x"], "extra": 3}, outputs)
    assert set(out) == {"e", "label"} and out["e"].dtype == np.float32 and out["label"].tolist() == [b"x"]
    with pytest.raises(ApiError, match="returned no 'label'"):
        sig.outputs_from_script({"e": [[1.0]]}, outputs)
    with pytest.raises(ApiError, match="is not FP32"):
        sig.outputs_from_script({"e": [["x"]], "label": ["x"]}, outputs)


def test_a_raw_body_is_the_one_declared_bytes_input_or_refused() -> None:
    assert sig.raw_for_script(b"\x89PNG", "image/png", None) == {"body": b"\x89PNG"}
    assert sig.raw_for_script(b"\x89PNG", "image/png", (TEXT,)) == {"text": b"\x89PNG"}
    assert sig.raw_for_script("gr\u00fcn".encode(), "text/plain", (TEXT,)) == {"text": "gr\u00fcn"}
    with pytest.raises(ApiError, match=r"the pipeline takes x \(FP32 \[-1\]\)") as exc:
        sig.raw_for_script(b"abc", "text/plain", (sig.TensorSpec("x", "FP32", (-1,)),))
    assert exc.value.status == 415 and exc.value.field == "Content-Type"
