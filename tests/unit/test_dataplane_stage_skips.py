"""When the gateway may answer without a stage hop: only when the stage would change nothing."""

from __future__ import annotations

import pytest

from tritium.api.spec import PostprocessSpec, PreprocessSpec
from tritium.dataplane.pipeline import MODES, post_passes_modes, pre_passes_tensors


def pre(**fields: object) -> PreprocessSpec:
    return PreprocessSpec.model_validate(fields)


def post(**fields: object) -> PostprocessSpec:
    return PostprocessSpec.model_validate(fields)


@pytest.mark.parametrize("fmt", ["json", "xml", "binary"])
def test_builtin_pre_without_schema_passes_tensors(fmt: str) -> None:
    assert pre_passes_tensors(pre(builtin={"format": fmt}))


@pytest.mark.parametrize("section", [
    None,
    {"builtin": {"format": "json"}, "inputSchema": {"type": "object"}},
    {"script": {"path": "pre.py"}},
])
def test_pre_with_work_or_absent_is_not_skipped(section: dict | None) -> None:
    assert not pre_passes_tensors(pre(**section) if section is not None else None)


def test_plain_json_post_passes_every_mode() -> None:
    assert post_passes_modes(post(builtin={"format": "json"})) == frozenset(MODES)


@pytest.mark.parametrize("fmt", ["xml", "binary"])
def test_formatting_post_still_formats_invoke_answers(fmt: str) -> None:
    assert post_passes_modes(post(builtin={"format": fmt})) == {"v2", "stream"}


@pytest.mark.parametrize("section", [
    {"builtin": {"format": "json", "topK": {"output": "OUT", "k": 2}}},
    {"builtin": {"format": "json"}, "filter": {"include": ["OUT"]}},
    {"script": {"path": "post.py"}},
])
def test_post_with_work_is_never_skipped(section: dict) -> None:
    assert post_passes_modes(post(**section)) == frozenset()


def test_absent_post_has_nothing_to_skip() -> None:
    assert post_passes_modes(None) == frozenset()
