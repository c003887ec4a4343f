"""The catalogue of specs the schema accepts and the operator refuses (tests/data/invalid-specs.yaml).

Each entry must pass the CRD (its schema and CEL rules, evaluated as kube-apiserver does) and be
refused by the part the catalogue names, with the field named. The catalogue must also be
complete: every field the spec checks can name has an entry, read from the checks' source, so a
new check without a case fails here. tests/e2e/test_invalid_specs_on_server.py applies each entry
to a running service on the real API server.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.operator_scenarios import make_isvc
from tests.support.optional_crds import problems
from tests.support.specs import CRD_FILE, ROOT, merge
from tritium.api.checks import check_spec, references
from tritium.api.resource import SpecError, parse_inference_service
from tritium.api.support import NOT_SUPPORTED

CATALOGUE = ROOT / "tests" / "data" / "invalid-specs.yaml"
# Where SpecErrors naming spec fields are raised for a spec (checks) or for the operator's settings.
CHECK_SOURCES = [ROOT / "operator/tritium/api/checks.py", ROOT / "operator/tritium/api/support.py",
                 ROOT / "operator/tritium/controller/rollouts.py"]


def catalogue() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = yaml.safe_load(CATALOGUE.read_text())
    return entries


def crd_schema() -> dict[str, Any]:
    (version,) = yaml.safe_load(CRD_FILE.read_text())["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def bad_object(entry: dict[str, Any]) -> dict[str, Any]:
    base = make_isvc("bad", "catalogue")
    return {**base, "spec": merge(base["spec"], entry["spec"])}


ENTRIES = {e["name"]: e for e in catalogue()}


def test_entries_are_well_formed_and_the_base_is_valid() -> None:
    assert len(ENTRIES) == len(catalogue()), "entry names must be unique"
    for entry in ENTRIES.values():
        assert set(entry) == {"name", "spec", "field", "says", "by"}, entry["name"]
        assert entry["by"] in ("spec", "reference", "operator"), entry["name"]
    base = make_isvc("good", "catalogue")
    assert problems(base, crd_schema()) == []
    check_spec(parse_inference_service(base))


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_the_schema_accepts_it(name: str) -> None:
    assert problems(bad_object(ENTRIES[name]), crd_schema()) == []


@pytest.mark.parametrize("name", sorted(n for n, e in ENTRIES.items() if e["by"] == "spec"))
def test_the_checks_refuse_it_naming_the_field(name: str) -> None:
    entry = ENTRIES[name]
    with pytest.raises(SpecError) as refused:
        check_spec(parse_inference_service(bad_object(entry)))
    assert refused.value.field == entry["field"]
    assert entry["says"] in refused.value.message


@pytest.mark.parametrize("name", sorted(n for n, e in ENTRIES.items() if e["by"] != "spec"))
def test_the_others_pass_the_checks_and_references_are_listed(name: str) -> None:
    entry = ENTRIES[name]
    isvc = parse_inference_service(bad_object(entry))
    check_spec(isvc)  # refused later: by the cluster's contents or the operator's settings
    if entry["by"] == "reference":
        assert entry["field"] in {ref.field for ref in references(isvc)}


def _named_fields(path: Path) -> set[str]:
    """Spec paths the source can name in a SpecError: literal first arguments, and _check_cidrs's."""
    fields: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        if node.func.id == "SpecError":
            arg = node.args[0]
        elif node.func.id == "_check_cidrs":
            arg = node.args[1]
        else:
            continue
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("spec."):
            fields.add(arg.value)
    return fields


def test_every_field_a_check_names_has_a_case() -> None:
    named = set(NOT_SUPPORTED) | {f for path in CHECK_SOURCES for f in _named_fields(path)}
    assert len(named) >= 12, f"the source reading found too little: {sorted(named)}"
    covered = {re.sub(r"\[\d+\]$", "", e["field"]) for e in ENTRIES.values()}
    assert named - covered == set(), "add these to tests/data/invalid-specs.yaml"
