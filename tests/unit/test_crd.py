"""The generated CustomResourceDefinition: in sync, structural, documented, and agreeing with the models.

kube-apiserver refuses a non-structural v1 CRD outright, defaults and prunes objects from the
schema, and evaluates the x-kubernetes-validations rules itself; none of that runs here, so the
checks of tests/support/crd_structural.py stand in for it (and are themselves tested on broken
schemas below), and the rules are evaluated from the CRD text, not from the Python classes.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from typing import Any

import cel
import pytest

from tests.support.crd_structural import (
    apply_defaults,
    iter_rules,
    prune,
    resolve_field_path,
    schema_errors,
    structural_violations,
    validation_rule_failures,
)
from tests.support.specs import (
    CRD_FILE,
    RULE_CASES,
    SCHEMA_BAD,
    VARIANTS,
    api_models,
    example_paths,
    load_example,
    manifest,
    merge,
)
from tritium.api.base import ApiModel
from tritium.api.crd import build_crd, crd_yaml, models_in
from tritium.api.resource import GROUP, KIND, PLURAL, parse_inference_service, spec_to_wire
from tritium.api.spec import InferenceServiceSpec
from tritium.api.status import InferenceServiceStatus

CRD = build_crd()
VERSION = CRD["spec"]["versions"][0]
SCHEMA: dict[str, Any] = VERSION["schema"]["openAPIV3Schema"]


def test_committed_crd_matches_the_models() -> None:
    committed = CRD_FILE.read_text()
    assert crd_yaml() == committed, (
        f"{CRD_FILE.relative_to(CRD_FILE.parents[1])} is out of date with tritium.api: run `make crds` and commit it"
    )


def test_crd_yaml_is_deterministic() -> None:
    assert crd_yaml() == crd_yaml()


# --- structural schema ----------------------------------------------------------------------------


def test_schema_is_structural() -> None:
    assert structural_violations(SCHEMA) == []


def _at(schema: dict[str, Any], *path: str) -> dict[str, Any]:
    node = schema
    for part in path:
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def _mutation(path: tuple[str, ...], change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def apply(schema: dict[str, Any]) -> None:
        change(_at(schema, *path))

    return apply


MODEL = ("spec", "model")
CPU = ("spec", "runtime", "resources", "cpu")

# (what is broken, how, a fragment of the violation the checker must report)
BROKEN: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("missing type", _mutation((*MODEL, "name"), lambda n: n.pop("type")), "type: must not be empty"),
    (
        "missing type in items",
        _mutation((*MODEL, "instanceGroups", "[]"), lambda n: n.pop("type")),
        "type: must not be empty for specified item",
    ),
    ("$ref", _mutation(MODEL, lambda n: n.update({"$ref": "#/definitions/ModelSpec"})), "$ref: not supported"),
    ("definitions", lambda s: s.update({"definitions": {"x": {"type": "string"}}}), "not allowed at the root"),
    (
        "properties + additionalProperties",
        _mutation(MODEL, lambda n: n.update({"additionalProperties": {"type": "string"}})),
        "mutually exclusive",
    ),
    (
        "additionalProperties false",
        _mutation(("spec", "model", "parameters"), lambda n: n.update({"additionalProperties": False})),
        "false is not",
    ),
    (
        "JSON Schema const",
        _mutation(("spec", "rollout", "strategy"), lambda n: n.update({"const": "BlueGreen"})),
        "const: unknown field",
    ),
    (
        "nullable by anyOf",
        _mutation((*MODEL, "version"), lambda n: n.update({"anyOf": [{"type": "integer"}, {"type": "null"}]})),
        "anyOf[0].type: must not be set inside",
    ),
    ("type null", _mutation((*MODEL, "version"), lambda n: n.update({"type": "null"})), "'null' is not one of"),
    (
        "nullable not boolean",
        _mutation((*MODEL, "version"), lambda n: n.update({"nullable": "yes"})),
        "nullable: must be a boolean",
    ),
    (
        "int-or-string with a type",
        _mutation(CPU, lambda n: n.update({"type": "string"})),
        "must be empty when x-kubernetes-int-or-string",
    ),
    (
        "description inside anyOf",
        _mutation(CPU, lambda n: n["anyOf"][0].update({"description": "int"})),
        "anyOf[0].description: must not be set inside",
    ),
    (
        "default inside allOf",
        _mutation(MODEL, lambda n: n.update({"allOf": [{"properties": {"name": {"default": "x"}}}]})),
        "allOf[0].properties[name].default: must not be set inside",
    ),
    (
        "junctor names an unspecified field",
        _mutation(MODEL, lambda n: n.update({"oneOf": [{"required": ["ghost"]}, {"properties": {"ghost": {}}}]})),
        "properties[ghost]: not specified outside",
    ),
    (
        "metadata description",
        _mutation(("metadata",), lambda n: n.update({"description": "Standard object metadata."})),
        "must not specify anything other than name and generateName",
    ),
    (
        "metadata labels",
        _mutation(("metadata",), lambda n: n["properties"].update({"labels": {"type": "object"}})),
        "properties other than name and generateName",
    ),
    (
        "root additionalProperties",
        lambda s: s.update({"additionalProperties": {"type": "string"}}),
        "additionalProperties",
    ),
    (
        "array without items",
        _mutation((*MODEL, "instanceGroups"), lambda n: n.pop("items")),
        "items: must be specified",
    ),
    (
        "items as a list",
        _mutation((*MODEL, "instanceGroups"), lambda n: n.update({"items": [{"type": "object"}]})),
        "items: must be a schema object and not an array",
    ),
    ("uniqueItems", _mutation((*MODEL, "instanceGroups"), lambda n: n.update({"uniqueItems": True})), "uniqueItems"),
    (
        "map list with an unknown key",
        _mutation(("status", "conditions"), lambda n: n.update({"x-kubernetes-list-map-keys": ["kind"]})),
        "'kind' is not an item property",
    ),
    (
        "map list key neither required nor defaulted",
        _mutation(("status", "conditions", "[]"), lambda n: n.update({"required": ["status"]})),
        "must be required or defaulted",
    ),
    ("invalid default", _mutation((*MODEL, "maxBatchSize"), lambda n: n.update({"default": -1})), "is invalid"),
    (
        "default of the wrong type",
        _mutation(("spec", "rollout", "canaryPercent"), lambda n: n.update({"default": "5"})),
        "is invalid",
    ),
    (
        "unpruned default",
        _mutation((*MODEL, "responseCache"), lambda n: n.update({"default": {"ttl": 1}})),
        "is not pruned",
    ),
    (
        "default breaking a rule",
        _mutation(("spec", "rollout"), lambda n: n.update({"default": {"canaryPercent": 90}})),
        "breaks a rule",
    ),
    (
        "default in metadata",
        _mutation(("metadata", "name"), lambda n: n.update({"default": "x"})),
        "must not be set in top-level metadata",
    ),
    (
        "rule that does not compile",
        _mutation(
            MODEL, lambda n: n["x-kubernetes-validations"].append({"rule": "self.maxBatchSize >", "message": "m"})
        ),
        "does not compile",
    ),
    (
        "rule fieldPath naming no field",
        _mutation(
            MODEL,
            lambda n: n["x-kubernetes-validations"].append({"rule": "true", "message": "m", "fieldPath": ".maxBatch"}),
        ),
        "does not name a field",
    ),
    (
        "two-line rule message",
        _mutation(MODEL, lambda n: n["x-kubernetes-validations"].append({"rule": "true", "message": "a\nb"})),
        "one line",
    ),
    ("bad pattern", _mutation((*MODEL, "name"), lambda n: n.update({"pattern": "([a-z"})), "not a regular expression"),
    (
        "preserve-unknown-fields false",
        _mutation(MODEL, lambda n: n.update({"x-kubernetes-preserve-unknown-fields": False})),
        "must be true or undefined",
    ),
    ("kind not a string", _mutation(("kind",), lambda n: n.update({"type": "integer"})), "[kind].type: must be string"),
    ("root not an object", lambda s: s.update({"type": "array"}), "must be object at the root"),
    # What kube-apiserver v1.36 refused in the shipped CRD: an empty object default under rules
    # that read its fields is checked as written, with no nested defaults applied.
    *(
        (
            f"bare default of {section}",
            _mutation(("spec", section), lambda n: n.update({"default": {}})),
            "breaks a rule",
        )
        for section in ("autoscaling", "rollout", "runtime", "traffic")
    ),
]


@pytest.mark.parametrize(("broken", "fragment"), [(b, f) for _, b, f in BROKEN], ids=[d for d, _, _ in BROKEN])
def test_structural_checker_catches(broken: Callable[[dict[str, Any]], None], fragment: str) -> None:
    """The checker is only worth something if it fails on what kube-apiserver refuses."""
    schema = copy.deepcopy(SCHEMA)
    broken(schema)
    problems = structural_violations(schema)
    assert any(fragment in p for p in problems), f"{fragment!r} not reported; got {problems}"


def _properties(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for name, sub in (node.get("properties") or {}).items():
        out.append((f"{path}.{name}", sub))
        out.extend(_properties(sub, f"{path}.{name}"))
    if isinstance(node.get("items"), dict):
        out.extend(_properties(node["items"], f"{path}[]"))
    if isinstance(node.get("additionalProperties"), dict):
        out.extend(_properties(node["additionalProperties"], f"{path}{{}}"))
    return out


def test_every_property_has_a_description() -> None:
    """`kubectl explain` is how users learn the API. Root metadata is exempt: a description there
    makes the schema non-structural, and the API server documents ObjectMeta itself."""
    props = _properties(SCHEMA)
    assert len(props) > 100
    missing = [p for p, node in props if p != ".metadata" and not str(node.get("description", "")).strip()]
    assert missing == []
    assert "description" not in SCHEMA["properties"]["metadata"]


def test_metadata_name_must_be_a_service_name() -> None:
    """The name becomes a Service name (DNS-1035): the cluster must refuse what the operator cannot create."""
    name = SCHEMA["properties"]["metadata"]["properties"]["name"]
    assert name["maxLength"] == 63
    assert schema_errors({"name": "ok-name"}, SCHEMA["properties"]["metadata"]) == []
    for bad in ("1abc", "Abc", "a_b", "a" * 64, "abc-"):
        assert schema_errors({"name": bad}, SCHEMA["properties"]["metadata"]), bad


# --- names, columns, subresources -----------------------------------------------------------------


def test_names() -> None:
    names = CRD["spec"]["names"]
    assert CRD["metadata"]["name"] == f"{PLURAL}.{GROUP}"
    assert names["kind"] == KIND and names["plural"] == PLURAL and names["listKind"] == f"{KIND}List"
    assert "isvc" not in names["shortNames"], "isvc belongs to KServe"
    assert names["shortNames"]
    assert CRD["spec"]["scope"] == "Namespaced"
    assert [v["name"] for v in CRD["spec"]["versions"] if v["storage"]] == ["v1alpha1"]


def test_printer_columns() -> None:
    columns = {c["name"]: c for c in VERSION["additionalPrinterColumns"]}
    assert list(columns) == ["Ready", "Phase", "URL", "Stable", "Rollout", "Canary %", "Replicas", "Age"]
    assert columns["Age"] == {**columns["Age"], "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    for name, column in columns.items():
        assert column["type"] in {"string", "integer", "number", "boolean", "date"}
        if name == "Age":
            continue
        path = column["jsonPath"].split("[")[0]
        target = resolve_field_path(SCHEMA, path)
        assert target is not None, f"column {name}: {path} is not in the schema"
        if column["type"] in {"integer", "string"} and "[" not in column["jsonPath"]:
            assert target["type"] == column["type"], name


def test_subresources() -> None:
    sub = VERSION["subresources"]
    assert sub["status"] == {}
    scale = sub["scale"]
    assert resolve_field_path(SCHEMA, scale["specReplicasPath"])["type"] == "integer"
    assert resolve_field_path(SCHEMA, scale["statusReplicasPath"])["type"] == "integer"
    assert resolve_field_path(SCHEMA, scale["labelSelectorPath"])["type"] == "string"
    assert scale["specReplicasPath"].startswith(".spec.") and scale["statusReplicasPath"].startswith(".status.")


# --- CEL rules in the CRD -------------------------------------------------------------------------

# Operators and functions of the base CEL language (plus the macros has/all/exists/map/filter,
# which compile away). Kubernetes' extension libraries (strings, lists, regex, url, ip, cidr,
# quantity, format, sets...) depend on the server version, so the rules stay clear of them.
BASE_CEL_FUNCTIONS = frozenset(
    {
        "size",
        "contains",
        "startsWith",
        "endsWith",
        "matches",
        "int",
        "uint",
        "double",
        "string",
        "bytes",
        "bool",
        "type",
        "dyn",
        "duration",
        "timestamp",
        "has",
    }
)


# Namespaces of extension functions (``sets.contains(...)`` reads as a call on a variable ``sets``).
EXTENSION_NAMESPACES = frozenset({"sets", "math", "strings", "lists", "base64", "optional", "regex"})


def non_base_functions(rule: str) -> set[str]:
    """Functions a rule calls that are not in base CEL (operators such as ``_&&_`` are base)."""
    program = cel.compile(rule)
    used = {f for f in program.functions() if not (f.startswith(("_", "!_", "-_", "@")) or f in BASE_CEL_FUNCTIONS)}
    return used | (set(program.variables()) & EXTENSION_NAMESPACES)


RULES = list(iter_rules(SCHEMA))


def test_rules_exist() -> None:
    assert len(RULES) >= len(RULE_CASES)


@pytest.mark.parametrize(("path", "rule"), RULES, ids=[f"{p}:{r['message']}" for p, r in RULES])
def test_rule_compiles_in_base_cel(path: str, rule: dict[str, str]) -> None:
    assert non_base_functions(rule["rule"]) == set(), f"{path}: {rule['rule']}"
    assert rule["message"].strip() and "\n" not in rule["message"]


@pytest.mark.parametrize(
    "rule",
    [
        "self.name.lowerAscii() == 'a'",
        "isQuantity(self.cpu)",
        "quantity(self.cpu).isGreaterThan(quantity('1'))",
        "self.xs.isSorted()",
        "url(self.u).getHost() != ''",
        "isCIDR(self.c)",
        "self.n.split(',').size() > 0",
        "self.a.indexOf('x') >= 0",
        "sets.contains(self.a, self.b)",
        "math.greatest(1, 2) > 0",
    ],
)
def test_base_cel_check_catches_extension_functions(rule: str) -> None:
    assert non_base_functions(rule)


def test_base_cel_check_passes_base_rules() -> None:
    assert (
        non_base_functions("has(self.a) && self.a.all(x, x > 0) && size(self.b) < 3 && self.s.startsWith('x')") == set()
    )


def _unbounded_lists_above_rules(node: dict[str, Any], path: str = "", unbounded: str = "") -> list[str]:
    found = (
        [f"{path}: rule under {unbounded}, which has no maxItems"]
        if unbounded and node.get("x-kubernetes-validations")
        else []
    )
    for name, sub in (node.get("properties") or {}).items():
        found += _unbounded_lists_above_rules(sub, f"{path}.{name}", unbounded)
    if isinstance(node.get("items"), dict):
        mark = unbounded or ("" if "maxItems" in node else path)
        found += _unbounded_lists_above_rules(node["items"], f"{path}[]", mark)
    if isinstance(node.get("additionalProperties"), dict):
        mark = unbounded or ("" if "maxProperties" in node else path)
        found += _unbounded_lists_above_rules(node["additionalProperties"], f"{path}{{}}", mark)
    return found


def test_rules_on_list_items_have_bounded_lists() -> None:
    """kube-apiserver estimates a rule's cost times the number of items it may run on, and refuses
    the CRD when that exceeds its budget; an unbounded list counts as millions of items."""
    assert _unbounded_lists_above_rules(SCHEMA) == []
    broken = copy.deepcopy(SCHEMA)
    del broken["properties"]["spec"]["properties"]["model"]["properties"]["instanceGroups"]["maxItems"]
    assert _unbounded_lists_above_rules(broken) == [
        ".spec.model.instanceGroups[]: rule under .spec.model.instanceGroups, which has no maxItems"
    ]


def _model_occurrences() -> Counter[str]:
    """How many schema nodes each model class becomes (a class used twice carries its rules twice)."""
    counts: Counter[str] = Counter()

    def walk(cls: type[ApiModel]) -> None:
        counts[cls.__name__] += 1
        for f in cls.model_fields.values():
            for sub in models_in(f.annotation):
                walk(sub)

    walk(InferenceServiceSpec)
    walk(InferenceServiceStatus)
    return counts


def test_crd_carries_every_python_rule_everywhere_the_model_is_used() -> None:
    expected: Counter[tuple[str, str, str]] = Counter()
    occurrences = _model_occurrences()
    for cls in api_models():
        for rule in cls.cel_rules:
            expected[(rule.rule, rule.message, rule.field)] += occurrences[cls.__name__]
    emitted = Counter((r["rule"], r["message"], r.get("fieldPath", "")) for _, r in RULES)
    assert emitted == expected


# --- defaulting, and the rules evaluated on defaulted objects -------------------------------------


def _defaults(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path or ".", node)] if "default" in node else []
    for name, sub in (node.get("properties") or {}).items():
        found.extend(_defaults(sub, f"{path}.{name}"))
    if isinstance(node.get("items"), dict):
        found.extend(_defaults(node["items"], f"{path}[*]"))
    return found


DEFAULTS = _defaults(SCHEMA)


@pytest.mark.parametrize(("path", "node"), DEFAULTS, ids=[p for p, _ in DEFAULTS])
def test_every_default_is_valid_as_written(path: str, node: dict[str, Any]) -> None:
    """kube-apiserver validates each default against its own schema and CEL rules, as written."""
    default = node["default"]
    assert schema_errors(default, node, strict=True) == []
    assert validation_rule_failures(default, node) == []


def test_object_defaults_are_written_out_in_full() -> None:
    """An object default carries its fields' defaults, so a rule reading them finds them."""
    autoscaling = SCHEMA["properties"]["spec"]["properties"]["autoscaling"]
    assert autoscaling["default"]["minReplicas"] == 2
    assert autoscaling["default"]["maxReplicas"] == 10
    assert apply_defaults(autoscaling["default"], autoscaling) == autoscaling["default"]


def test_defaulting_fills_nested_defaults_like_the_api_server() -> None:
    obj = {"spec": {"model": {"name": "m", "instanceGroups": [{}, {"count": 3}]}, "rollout": {"analysis": None}}}
    out = apply_defaults(obj, SCHEMA)
    assert obj["spec"]["rollout"] == {"analysis": None}, "the input must not be modified"
    assert out["spec"]["runtime"]["resources"] == {"cpu": "1", "memory": "2Gi", "gpu": 0}
    assert out["spec"]["autoscaling"]["minReplicas"] == 2
    assert out["spec"]["model"]["responseCache"]["enabled"] is False
    assert out["spec"]["model"]["instanceGroups"] == [{"count": 1, "kind": "AUTO"}, {"count": 3, "kind": "AUTO"}]
    assert out["spec"]["rollout"]["analysis"]["maxErrorRatio"] == 0.01, "null is defaulted for non-nullable fields"
    assert "preprocess" not in out["spec"], "optional objects without a default stay absent"
    assert "status" not in out and "metadata" not in out


def test_pruning_drops_unknown_fields_but_keeps_preserved_ones() -> None:
    obj = {"spec": {"model": {"name": "m", "ghost": 1}, "preprocess": {"inputSchema": {"type": "object", "x": 1}}}}
    out = prune(obj, SCHEMA)
    assert out == {"spec": {"model": {"name": "m"}, "preprocess": {"inputSchema": {"type": "object", "x": 1}}}}


def _normalize_quantities(value: Any, node: dict[str, Any]) -> Any:
    """The Python models store int quantities as strings; the server keeps the JSON type."""
    if node.get("x-kubernetes-int-or-string") and isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        props = node.get("properties") or {}
        extra = node.get("additionalProperties") if isinstance(node.get("additionalProperties"), dict) else {}
        return {k: _normalize_quantities(v, props.get(k, extra)) for k, v in value.items()}
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [_normalize_quantities(v, node["items"]) for v in value]
    return value


ALL_MANIFESTS = {
    **{p.name: load_example(p) for p in example_paths()},
    **{name: manifest(patch) for name, patch in VARIANTS.items()},
    "minimal": manifest(),
}


@pytest.mark.parametrize("obj", ALL_MANIFESTS.values(), ids=ALL_MANIFESTS.keys())
def test_server_defaults_equal_model_defaults(obj: dict[str, Any]) -> None:
    """What the cluster stores is what the operator computes: no default differs between the two."""
    stored = apply_defaults(prune(obj, SCHEMA), SCHEMA)["spec"]
    modelled = spec_to_wire(parse_inference_service(obj).spec)
    assert _normalize_quantities(stored, SCHEMA["properties"]["spec"]) == modelled


@pytest.mark.parametrize("obj", ALL_MANIFESTS.values(), ids=ALL_MANIFESTS.keys())
def test_valid_manifests_pass_schema_and_rules(obj: dict[str, Any]) -> None:
    assert schema_errors(obj, SCHEMA, strict=True) == []
    assert validation_rule_failures(apply_defaults(obj, SCHEMA), SCHEMA) == []


@pytest.mark.parametrize(
    ("case", "patch"),
    [(c, b) for c in RULE_CASES for b in c.bad],
    ids=[f"{c.model}:{c.message}:{i}" for c in RULE_CASES for i, _ in enumerate(c.bad)],
)
def test_crd_rules_reject_bad_examples(case: Any, patch: dict[str, Any]) -> None:
    """The rule as emitted in the CRD gives the Python verdict, on the same field."""
    obj = apply_defaults(manifest(patch), SCHEMA)
    assert schema_errors(obj, SCHEMA, strict=True) == [], "the case must only break a rule, not the schema"
    failures = validation_rule_failures(obj, SCHEMA)
    assert f".{case.field}: {case.message}" in failures, failures


@pytest.mark.parametrize(
    ("case", "patch"),
    [(c, g) for c in RULE_CASES for g in c.good],
    ids=[f"{c.model}:{c.message}:{i}" for c in RULE_CASES for i, _ in enumerate(c.good)],
)
def test_crd_rules_accept_good_examples(case: Any, patch: dict[str, Any]) -> None:
    obj = apply_defaults(manifest(patch), SCHEMA)
    assert schema_errors(obj, SCHEMA, strict=True) == []
    assert validation_rule_failures(obj, SCHEMA) == []


def test_rules_without_defaults_would_error() -> None:
    """Why the defaulting matters: minReplicas <= maxReplicas reads maxReplicas, which only
    exists once defaults are applied; evaluated on the raw object the rule errors (and fails)."""
    raw = manifest({"autoscaling": {"minReplicas": 3}})
    assert any("error" in f for f in validation_rule_failures(raw, SCHEMA))
    assert validation_rule_failures(apply_defaults(raw, SCHEMA), SCHEMA) == []


# --- OpenAPI validation of custom resources -------------------------------------------------------


@pytest.mark.parametrize(("patch", "meta", "field"), SCHEMA_BAD, ids=[c[2] + f":{i}" for i, c in enumerate(SCHEMA_BAD)])
def test_schema_rejects_what_the_models_reject(patch: dict[str, Any], meta: dict[str, Any], field: str) -> None:
    errors = schema_errors(manifest(patch, **meta), SCHEMA)
    assert errors, f"the CRD accepts what the models refuse ({field})"
    path = field.replace("[", ".").replace("]", "")
    parent, _, leaf = path.rpartition(".")
    # A missing required field is reported on its parent object, naming the field.
    assert any(e.startswith(f"{path}:") or (e.startswith(f"{parent}:") and repr(leaf) in e) for e in errors), errors


def test_unknown_fields_fail_strict_validation_only() -> None:
    """kube-apiserver prunes unknown fields; `kubectl apply` (strict field validation) refuses them."""
    obj = merge(manifest(), {"spec": {"model": {"storageURI": "s3://x/y"}}})
    assert schema_errors(obj, SCHEMA) == []
    assert any("storageURI" in e for e in schema_errors(obj, SCHEMA, strict=True))
    assert schema_errors(manifest(uid="1", labels={"a": "b"}), SCHEMA, strict=True) == [], "metadata stays open"


def test_quantities_accept_ints_and_strings() -> None:
    for good in (2, "2", "500m", "4Gi"):
        assert schema_errors(manifest({"runtime": {"resources": {"cpu": good}}}), SCHEMA) == []
    for bad in ("two", 0.5, True, [1]):
        assert schema_errors(manifest({"runtime": {"resources": {"cpu": bad}}}), SCHEMA)
