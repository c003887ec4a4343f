"""What kube-apiserver checks on a CRD schema and does to a custom resource, re-implemented small.

No API server runs in these tests, so the rules a CRD must pass ("Specifying a structural schema"
and the apiextensions.k8s.io/v1 schema validation) and the two things the server does to every
object before storing it (pruning, then defaulting, then x-kubernetes-validations) are written
here once, after the Kubernetes sources (apiextensions-apiserver pkg/apis/apiextensions/validation
and pkg/apiserver/schema/{validation,defaulting,pruning}.go), and proven on broken schemas in the
CRD tests so that a silent checker cannot pass a broken CRD.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import cel
from openapi_schema_validator import OAS30Validator

Schema = dict[str, Any]

# Every field of apiextensions.k8s.io/v1 JSONSchemaProps: anything else is an unknown field of the
# CRD object (rejected by `kubectl apply`'s strict field validation, silently dropped otherwise).
JSON_SCHEMA_PROPS_FIELDS = frozenset(
    {
        "id",
        "$schema",
        "$ref",
        "description",
        "type",
        "format",
        "title",
        "default",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "multipleOf",
        "enum",
        "maxProperties",
        "minProperties",
        "required",
        "items",
        "allOf",
        "oneOf",
        "anyOf",
        "not",
        "properties",
        "additionalProperties",
        "patternProperties",
        "dependencies",
        "additionalItems",
        "definitions",
        "externalDocs",
        "example",
        "nullable",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-list-type",
        "x-kubernetes-map-type",
        "x-kubernetes-validations",
    }
)
# Accepted by the schema language but refused for v1 CRDs.
FORBIDDEN_IN_V1 = ("id", "$ref", "definitions", "dependencies", "patternProperties", "additionalItems")
# The only fields the root schema may use.
ROOT_FIELDS = frozenset(
    {
        "description",
        "type",
        "format",
        "title",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "multipleOf",
        "required",
        "items",
        "properties",
        "externalDocs",
        "example",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-validations",
    }
)
TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean"})
JUNCTORS = ("allOf", "anyOf", "oneOf")
# Inside allOf/anyOf/oneOf/not only value validations may appear.
FORBIDDEN_IN_JUNCTORS = (
    "type",
    "description",
    "title",
    "default",
    "nullable",
    "additionalProperties",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-list-type",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
)
INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]
VALIDATION_RULE_FIELDS = frozenset({"rule", "message", "messageExpression", "reason", "fieldPath", "optionalOldSelf"})


def structural_violations(schema: Schema) -> list[str]:
    """Every reason kube-apiserver would refuse ``schema`` as a v1 CRD's openAPIV3Schema (empty: fine)."""
    problems: list[str] = []
    if not isinstance(schema, dict):
        return ["openAPIV3Schema: must be an object"]
    for key in sorted(set(schema) - ROOT_FIELDS):
        problems.append(f"openAPIV3Schema.{key}: not allowed at the root")
    if schema.get("type") != "object":
        problems.append("openAPIV3Schema.type: must be object at the root")
    _check_node(schema, "openAPIV3Schema", "root", problems)
    props = schema.get("properties", {})
    for name in ("apiVersion", "kind"):
        if name in props and props[name].get("type") != "string":
            problems.append(f"openAPIV3Schema.properties[{name}].type: must be string")
    if "metadata" in props:
        problems.extend(_metadata_violations(props["metadata"]))
    return problems


def _metadata_violations(meta: Schema) -> list[str]:
    """The root metadata may only be ``type: object`` plus restrictions of name and generateName."""
    path = "openAPIV3Schema.properties[metadata]"
    problems: list[str] = []
    if meta.get("type") != "object":
        problems.append(f"{path}.type: must be object")
    extra = set(meta) - {"type", "properties"}
    if extra:
        problems.append(f"{path}: must not specify anything other than name and generateName ({sorted(extra)})")
    other = set(meta.get("properties", {})) - {"name", "generateName"}
    if other:
        problems.append(f"{path}: must not specify properties other than name and generateName ({sorted(other)})")
    for name, sub in meta.get("properties", {}).items():
        if "default" in sub:
            problems.append(f"{path}.properties[{name}].default: must not be set in top-level metadata")
    return problems


def _check_node(node: Any, path: str, level: str, problems: list[str]) -> None:
    """One schema node reached through properties/items/additionalProperties (or the root)."""
    if not isinstance(node, dict):
        problems.append(f"{path}: must be a schema object")
        return
    for key in sorted(set(node) - JSON_SCHEMA_PROPS_FIELDS):
        problems.append(f"{path}.{key}: unknown field of JSONSchemaProps")
    for key in FORBIDDEN_IN_V1:
        if key in node:
            problems.append(f"{path}.{key}: not supported in apiextensions.k8s.io/v1")
    if node.get("uniqueItems") is True:
        problems.append(f"{path}.uniqueItems: cannot be true")
    typ = node.get("type")
    int_or_string = node.get("x-kubernetes-int-or-string") is True
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if "x-kubernetes-preserve-unknown-fields" in node and not preserve:
        problems.append(f"{path}.x-kubernetes-preserve-unknown-fields: must be true or undefined")
    if typ is not None and (not isinstance(typ, str) or typ not in TYPES):
        problems.append(f"{path}.type: {typ!r} is not one of {sorted(TYPES)}")
    if not typ and not int_or_string and not preserve:
        problems.append(f"{path}.type: must not be empty for specified {level} nodes")
    if int_or_string:
        if typ:
            problems.append(f"{path}.type: must be empty when x-kubernetes-int-or-string is true")
        if preserve:
            problems.append(f"{path}: x-kubernetes-int-or-string and x-kubernetes-preserve-unknown-fields exclude")
    if "nullable" in node:
        if not isinstance(node["nullable"], bool):
            problems.append(f"{path}.nullable: must be a boolean")
        elif node["nullable"] and not typ:
            problems.append(f"{path}.nullable: needs a type")
    if node.get("x-kubernetes-embedded-resource") and typ != "object":
        problems.append(f"{path}: x-kubernetes-embedded-resource needs type object")
    if typ == "array" and "items" not in node:
        problems.append(f"{path}.items: must be specified for arrays")
    if "items" in node and isinstance(node["items"], list):
        problems.append(f"{path}.items: must be a schema object and not an array")
    if "properties" in node and typ not in (None, "object"):
        problems.append(f"{path}: properties need type object, not {typ!r}")
    if "items" in node and typ not in (None, "array"):
        problems.append(f"{path}: items need type array, not {typ!r}")
    if "additionalProperties" in node:
        if level == "root":
            problems.append(f"{path}.additionalProperties: must not be used at the root")
        if node.get("properties") and node["additionalProperties"] is not True:
            problems.append(f"{path}.additionalProperties: additionalProperties and properties are mutually exclusive")
        if node["additionalProperties"] is False:
            problems.append(f"{path}.additionalProperties: false is not allowed (pruning drops unknown fields)")
    if "pattern" in node:
        try:
            re.compile(node["pattern"])
        except re.error as exc:
            problems.append(f"{path}.pattern: not a regular expression ({exc})")
    if "required" in node:
        missing = set(node["required"]) - set(node.get("properties", {}))
        if missing and not preserve:
            problems.append(f"{path}.required: {sorted(missing)} are not properties")
    _check_list_and_map_types(node, path, problems)
    _check_junctors(node, path, int_or_string, problems)
    _check_validations(node, path, problems)
    if "default" in node:
        problems.extend(f"{path}.default: {p}" for p in default_violations(node))
    for name, sub in (node.get("properties") or {}).items():
        _check_node(sub, f"{path}.properties[{name}]", "field", problems)
    if isinstance(node.get("items"), dict):
        _check_node(node["items"], f"{path}.items", "item", problems)
    if isinstance(node.get("additionalProperties"), dict):
        _check_node(node["additionalProperties"], f"{path}.additionalProperties", "field", problems)


def _check_list_and_map_types(node: Schema, path: str, problems: list[str]) -> None:
    list_type = node.get("x-kubernetes-list-type")
    keys = node.get("x-kubernetes-list-map-keys")
    if list_type is not None and node.get("type") != "array":
        problems.append(f"{path}.type: must be array if x-kubernetes-list-type is specified")
    if list_type not in (None, "atomic", "set", "map"):
        problems.append(f"{path}.x-kubernetes-list-type: {list_type!r} is not atomic, set or map")
    if keys and list_type != "map":
        problems.append(f"{path}.x-kubernetes-list-type: must be map if x-kubernetes-list-map-keys is non-empty")
    if list_type == "map":
        items = node.get("items") if isinstance(node.get("items"), dict) else {}
        if not keys:
            problems.append(f"{path}.x-kubernetes-list-map-keys: must not be empty for a map list")
        if items.get("type") != "object":
            problems.append(f"{path}.items.type: must be object for a map list")
        for key in keys or []:
            prop = items.get("properties", {}).get(key)
            if prop is None:
                problems.append(f"{path}.x-kubernetes-list-map-keys: {key!r} is not an item property")
            elif key not in items.get("required", []) and "default" not in prop:
                problems.append(f"{path}.items.properties[{key}]: a map key must be required or defaulted")
    map_type = node.get("x-kubernetes-map-type")
    if map_type is not None and (node.get("type") != "object" or map_type not in ("atomic", "granular")):
        problems.append(f"{path}.x-kubernetes-map-type: needs type object and atomic or granular")


def _check_junctors(node: Schema, path: str, int_or_string: bool, problems: list[str]) -> None:
    """allOf/anyOf/oneOf/not may only carry value validations, on fields specified outside them."""
    for junctor in JUNCTORS:
        branches = node.get(junctor)
        if branches is None:
            continue
        if int_or_string and junctor == "anyOf" and branches == INT_OR_STRING_ANY_OF:
            continue  # the one allowed pattern
        if int_or_string and junctor == "allOf" and branches and branches[0].get("anyOf") == INT_OR_STRING_ANY_OF:
            branches = [{k: v for k, v in branches[0].items() if k != "anyOf"}, *branches[1:]]
        for i, branch in enumerate(branches):
            _check_nested(branch, node, f"{path}.{junctor}[{i}]", problems)
    if "not" in node:
        _check_nested(node["not"], node, f"{path}.not", problems)


def _check_nested(branch: Any, outer: Schema, path: str, problems: list[str]) -> None:
    if not isinstance(branch, dict):
        problems.append(f"{path}: must be a schema object")
        return
    for key in FORBIDDEN_IN_JUNCTORS:
        if key in branch:
            problems.append(f"{path}.{key}: must not be set inside allOf/anyOf/oneOf/not to be structural")
    for junctor in JUNCTORS:
        for i, sub in enumerate(branch.get(junctor, [])):
            _check_nested(sub, outer, f"{path}.{junctor}[{i}]", problems)
    if "not" in branch:
        _check_nested(branch["not"], outer, f"{path}.not", problems)
    outer_props = outer.get("properties", {})
    for name, sub in (branch.get("properties") or {}).items():
        if name == "metadata":
            problems.append(f"{path}.properties[metadata]: must not be specified in a nested context")
        if name not in outer_props:
            problems.append(f"{path}.properties[{name}]: not specified outside the junctor")
        else:
            _check_nested(sub, outer_props[name], f"{path}.properties[{name}]", problems)
    if "items" in branch:
        if not isinstance(outer.get("items"), dict):
            problems.append(f"{path}.items: not specified outside the junctor")
        else:
            _check_nested(branch["items"], outer["items"], f"{path}.items", problems)


def _check_validations(node: Schema, path: str, problems: list[str]) -> None:
    for i, rule in enumerate(node.get("x-kubernetes-validations", [])):
        where = f"{path}.x-kubernetes-validations[{i}]"
        for key in sorted(set(rule) - VALIDATION_RULE_FIELDS):
            problems.append(f"{where}.{key}: unknown field")
        if not str(rule.get("rule", "")).strip():
            problems.append(f"{where}.rule: must be specified")
        if "message" in rule and ("\n" in rule["message"] or not rule["message"].strip()):
            problems.append(f"{where}.message: must be non-empty and one line")
        field_path = rule.get("fieldPath")
        if field_path is not None and resolve_field_path(node, field_path) is None:
            problems.append(f"{where}.fieldPath: {field_path!r} does not name a field of the schema")
        try:
            cel.compile(rule.get("rule", ""))
        except ValueError as exc:
            problems.append(f"{where}.rule: does not compile: {exc}")


def resolve_field_path(node: Schema, field_path: str) -> Schema | None:
    """The schema a rule's ``fieldPath`` (``.a.b``, ``.a['b']``, ``.list[0]``) points at, or None."""
    if not field_path.startswith("."):
        return None
    current: Schema | None = node
    for part in re.findall(r"\.([A-Za-z_][A-Za-z0-9_]*)|\['([^']*)'\]|\[(\d+)\]", field_path):
        name, quoted, index = part
        if current is None:
            return None
        if index:
            current = current.get("items") if current.get("type") == "array" else None
        else:
            key = name or quoted
            props = current.get("properties", {})
            if key in props:
                current = props[key]
            elif isinstance(current.get("additionalProperties"), dict):
                current = current["additionalProperties"]
            else:
                return None
    return current


def default_violations(node: Schema) -> list[str]:
    """A default must be pruned (nothing the schema does not know) and valid against its own schema.

    Checked as written, the way kube-apiserver checks it at CRD creation: the nested defaults are
    *not* applied first, so a ``default: {}`` under a rule that reads one of its fields fails here
    as it fails there ("no such key").
    """
    default = copy.deepcopy(node["default"])
    problems: list[str] = []
    if prune(default, node) != default:
        problems.append(f"{node['default']!r} is not pruned (has fields the schema does not specify)")
    errors = schema_errors(default, node)
    problems.extend(f"{node['default']!r} is invalid: {e}" for e in errors)
    if not errors:
        problems.extend(f"{node['default']!r} breaks a rule: {e}" for e in validation_rule_failures(default, node))
    return problems


# --- what the server does to an object -------------------------------------------------------------


def prune(value: Any, node: Schema) -> Any:
    """Drop the fields the schema does not specify (kube-apiserver's pruning), on a copy."""
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return copy.deepcopy(value)
    if isinstance(value, dict):
        props = node.get("properties")
        extra = node.get("additionalProperties")
        if props is not None:
            return {k: prune(v, props[k]) for k, v in value.items() if k in props}
        if isinstance(extra, dict):
            return {k: prune(v, extra) for k, v in value.items()}
        if extra is True:
            return copy.deepcopy(value)
        return {}
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [prune(v, node["items"]) for v in value]
    return copy.deepcopy(value)


def apply_defaults(value: Any, node: Schema) -> Any:
    """Fill in ``default`` values the way kube-apiserver does, on a copy.

    For an object: first every missing (or null, when not nullable) property with a default gets
    a copy of it, then every property, old or new, is defaulted recursively; so a ``default: {}``
    sub-object receives its own fields' defaults. Arrays default each item.
    """
    value = copy.deepcopy(value)
    _default_in_place(value, node)
    return value


def _default_in_place(value: Any, node: Schema) -> None:
    if isinstance(value, dict):
        props = node.get("properties") or {}
        for key, prop in props.items():
            if "default" in prop and (key not in value or (value[key] is None and not prop.get("nullable"))):
                value[key] = copy.deepcopy(prop["default"])
        extra = node.get("additionalProperties")
        for key, sub in value.items():
            if key in props:
                _default_in_place(sub, props[key])
            elif isinstance(extra, dict):
                _default_in_place(sub, extra)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        items = node["items"]
        for i, sub in enumerate(value):
            if sub is None and "default" in items and not items.get("nullable"):
                value[i] = copy.deepcopy(items["default"])
            _default_in_place(value[i], items)


def iter_rules(node: Schema, path: str = "") -> Iterator[tuple[str, dict[str, str]]]:
    """Every x-kubernetes-validations rule of the schema with the schema path it sits on."""
    for rule in node.get("x-kubernetes-validations", []):
        yield path or ".", rule
    for name, sub in (node.get("properties") or {}).items():
        yield from iter_rules(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from iter_rules(node["items"], f"{path}[*]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from iter_rules(node["additionalProperties"], f"{path}[*]")


def validation_rule_failures(value: Any, node: Schema, path: str = "") -> list[str]:
    """Evaluate every x-kubernetes-validations rule where the object has a value, like the server.

    Each rule sees its own node as ``self``. A rule that errors (e.g. reads an absent field) is a
    failure too, as on the server. Returns ``"<path>: <message>"`` per failed rule.
    """
    failures: list[str] = []
    if value is None:
        return failures
    for rule in node.get("x-kubernetes-validations", []):
        try:
            ok = cel.compile(rule["rule"]).execute({"self": value})
        except Exception as exc:  # an evaluation error fails the rule on the server too
            failures.append(f"{path or '.'}: {rule.get('message', rule['rule'])} (error: {exc})")
            continue
        if ok is not True:
            failures.append(f"{(path + rule.get('fieldPath', '')) or '.'}: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        props = node.get("properties") or {}
        extra = node.get("additionalProperties")
        for key, sub in value.items():
            if key in props:
                failures.extend(validation_rule_failures(sub, props[key], f"{path}.{key}"))
            elif isinstance(extra, dict):
                failures.extend(validation_rule_failures(sub, extra, f"{path}.{key}"))
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, sub in enumerate(value):
            failures.extend(validation_rule_failures(sub, node["items"], f"{path}[{i}]"))
    return failures


# --- OpenAPI validation of the object ------------------------------------------------------------


def strip_kubernetes_extensions(node: Any) -> Any:
    """The schema without x-kubernetes-* keys: plain OpenAPI 3.0 that a generic validator reads."""
    if isinstance(node, dict):
        return {k: strip_kubernetes_extensions(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if isinstance(node, list):
        return [strip_kubernetes_extensions(v) for v in node]
    return node


def closed(node: Any, *, root: bool = True) -> Any:
    """Forbid unknown fields in every object with properties (kubectl's strict field validation).

    The root ``metadata`` stays open: the server validates ObjectMeta itself.
    """
    if isinstance(node, list):
        return [closed(v, root=False) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {
                name: sub if (root and name == "metadata") else closed(sub, root=False) for name, sub in value.items()
            }
        else:
            out[key] = closed(value, root=False)
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def schema_errors(value: Any, node: Schema, *, strict: bool = False) -> list[str]:
    """OpenAPI v3.0 validation errors of ``value`` (x-kubernetes-* ignored), as ``path: message``."""
    schema = strip_kubernetes_extensions(closed(node) if strict else node)
    validator = OAS30Validator(schema)
    return [
        f"{'.'.join(str(p) for p in err.absolute_path) or '.'}: {err.message}"
        for err in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
    ]
