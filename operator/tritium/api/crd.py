"""Generate the InferenceService CustomResourceDefinition from the pydantic models.

pydantic emits JSON Schema 2020-12; kube-apiserver wants a *structural* OpenAPI v3.0 schema:
every node typed, no $ref, no nullable-by-anyOf, booleans for exclusive bounds. The conversion
below is the only place that knows those differences. CEL rules come from each model's
``cel_rules``, so the cluster checks exactly what `tritium render` checks.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from tritium.api.base import DNS_1035_LABEL_PATTERN, ApiModel
from tritium.api.resource import API_VERSION, GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION
from tritium.api.spec import InferenceServiceSpec
from tritium.api.status import InferenceServiceStatus

_DROP_KEYS = {"title", "additionalProperties_", "$defs"}


def _cel_rules_by_title() -> dict[str, list[dict[str, str]]]:
    """Map pydantic's schema title (the class name) to its CEL rules."""
    rules: dict[str, list[dict[str, str]]] = {}
    seen: set[type] = set()

    def walk(cls: type[ApiModel]) -> None:
        if cls in seen:
            return
        seen.add(cls)
        if cls.cel_rules:
            rules[cls.__name__] = [r.to_crd() for r in cls.cel_rules]
        for field in cls.model_fields.values():
            for sub in models_in(field.annotation):
                walk(sub)

    walk(InferenceServiceSpec)
    walk(InferenceServiceStatus)
    return rules


def models_in(annotation: Any) -> list[type[ApiModel]]:
    """The API model classes a field annotation refers to (through Optional, list, dict...)."""
    found: list[type[ApiModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, ApiModel):
        found.append(annotation)
    for arg in getattr(annotation, "__args__", ()) or ():
        found.extend(models_in(arg))
    return found


def _structural(node: Any, defs: dict[str, Any], rules: dict[str, list[dict[str, str]]]) -> Any:
    if isinstance(node, list):
        return [_structural(n, defs, rules) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    # Inline references, keeping the referring node's own description/default.
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").split("/")[-1]])
        target.update(node)
        node = target
    if "allOf" in node and len(node["allOf"]) == 1:
        inner = node.pop("allOf")[0]
        node = {**_structural(inner, defs, rules), **node}
    # Optional[X] -> X: absence, not null, is how Kubernetes spells "unset".
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        if len(branches) == 1:
            node.pop("anyOf")
            node = {**_structural(branches[0], defs, rules), **node}
    if node.get("default", 0) is None:
        node.pop("default")
    # Literal["X"] comes out as JSON Schema's `const`, which the CRD schema language lacks.
    if "const" in node:
        const = node.pop("const")
        node.setdefault("enum", [const])
    title = node.pop("title", None)
    if title in rules and node.get("type") == "object":
        node["x-kubernetes-validations"] = rules[title]
    if "exclusiveMinimum" in node and not isinstance(node["exclusiveMinimum"], bool):
        node["minimum"] = node.pop("exclusiveMinimum")
        node["exclusiveMinimum"] = True
    if "exclusiveMaximum" in node and not isinstance(node["exclusiveMaximum"], bool):
        node["maximum"] = node.pop("exclusiveMaximum")
        node["exclusiveMaximum"] = True
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS:
            continue
        if key == "properties":
            out[key] = {k: _structural(v, defs, rules) for k, v in value.items()}
        elif key in {"items", "additionalProperties", "anyOf"}:
            out[key] = _structural(value, defs, rules)
        else:
            out[key] = value
    if out.get("additionalProperties") is False:
        out.pop("additionalProperties")  # forbidden in structural schemas: pruning drops unknown fields
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out.pop("additionalProperties", None)
    if "required" in out:
        out["required"] = sorted(out["required"])
    return {k: out[k] for k in sorted(out, key=_key_order)}


_FIRST_KEYS = ("type", "description", "default", "enum")


def _key_order(key: str) -> tuple[int, str]:
    """Readable, stable key order: type and description first, then alphabetical."""
    return (_FIRST_KEYS.index(key), "") if key in _FIRST_KEYS else (len(_FIRST_KEYS), key)


def _defaulted(value: Any, node: dict[str, Any]) -> Any:
    """``value`` with the defaults of ``node``'s sub-schema filled in, as kube-apiserver defaults."""
    if isinstance(value, dict):
        out = copy.deepcopy(value)
        props = node.get("properties") or {}
        for key, prop in props.items():
            if key not in out and "default" in prop:
                out[key] = copy.deepcopy(prop["default"])
        return {k: _defaulted(v, props[k]) if k in props else v for k, v in out.items()}
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [_defaulted(v, node["items"]) for v in value]
    return value


def _populate_defaults(node: Any) -> None:
    """Write every object default out in full (``{}`` -> ``{minReplicas: 2, maxReplicas: 10, ...}``).

    kube-apiserver checks each ``default`` against its schema and CEL rules *as written*, without
    applying the nested defaults first. A bare ``{}`` under a rule such as
    ``self.minReplicas <= self.maxReplicas`` then fails with "no such key" and the whole CRD is
    refused. Populated defaults keep every rule exactly as the models state it (no ``has()``
    guards that only exist for this check), and the stored objects are the same either way,
    because the server would have filled in those nested defaults anyway.
    """
    if isinstance(node, list):
        for item in node:
            _populate_defaults(item)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key != "default":
            _populate_defaults(value)
    if isinstance(node.get("default"), dict | list):
        node["default"] = _defaulted(node["default"], node)


def model_schema(model: type[ApiModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of one model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema = _structural(raw, raw.get("$defs", {}), _cel_rules_by_title())
    _populate_defaults(schema)
    return schema


def build_crd() -> dict[str, Any]:
    """The complete CustomResourceDefinition, deterministic."""
    spec_schema = model_schema(InferenceServiceSpec)
    status_schema = model_schema(InferenceServiceStatus)
    schema = {
        "type": "object",
        "description": "An InferenceService serves one model with NVIDIA Triton behind the Tritium gateway, "
        "with pre/post stages, autoscaling, blue-green rollouts, monitoring and security.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "API version: serving.tritium.dev/v1alpha1."},
            "kind": {"type": "string", "description": "Kind: InferenceService."},
            # Only metadata.name/generateName may be restricted, and nothing else may be said about
            # metadata (not even a description): anything more makes the schema non-structural.
            "metadata": {
                "type": "object",
                "properties": {
                    "name": {
                        "type": "string",
                        "description": "Name of the service; it becomes the Service name, so a DNS-1035 label.",
                        "maxLength": 63,
                        "pattern": DNS_1035_LABEL_PATTERN,
                    }
                },
            },
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    columns = [
        ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status', "Whether the service answers"),
        ("Phase", "string", ".status.phase", "Lifecycle phase"),
        ("URL", "string", ".status.url", "In-cluster URL of the gateway"),
        ("Stable", "string", ".status.stableRevision", "Revision serving most traffic"),
        ("Rollout", "string", ".status.rollout.phase", "Phase of the last rollout"),
        ("Canary %", "integer", ".status.canaryWeight", "Traffic share of the canary revision"),
        ("Replicas", "integer", ".status.readyReplicas", "Ready serving pods"),
        ("Age", "date", ".metadata.creationTimestamp", "Time since creation"),
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "tritium", "app.kubernetes.io/part-of": "tritium"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": ["tritium", "all"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": [
                        {"name": n, "type": t, "jsonPath": p, "description": d} for n, t, p, d in columns
                    ],
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as YAML, byte-identical from run to run (committed under crds/)."""
    header = f"# Generated from tritium.api ({API_VERSION}) by `make crds`; do not edit.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)
