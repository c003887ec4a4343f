"""Markdown reference of the InferenceService API, generated from the CRD (`make crds`).

`python -m tritium.api.reference > docs/api-reference.md`; a test fails when the file drifts.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tritium.api.crd import build_crd
from tritium.api.support import NOT_SUPPORTED, ONLY_WITH


def _type(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "int or string"
    if node.get("type") == "array":
        return f"[]{_type(node.get('items') or {})}"
    if node.get("type") == "object" and "additionalProperties" in node:
        return f"map[string]{_type(node['additionalProperties'])}"
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    return str(node.get("type", "any"))


def _rows(node: dict[str, Any], path: str, required: set[str]) -> list[str]:
    rows: list[str] = []
    for name, child in (node.get("properties") or {}).items():
        field = f"{path}.{name}" if path else name
        default = json.dumps(child["default"]) if "default" in child else ""
        req = "yes" if name in required else ""
        desc = child.get("description", "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{field}` | {_type(child)} | {req} | {default and f'`{default}`'} | {desc} |")
        target = child.get("items", {}) if child.get("type") == "array" else child
        if target.get("properties"):
            rows.extend(_rows(target, field + ("[]" if child.get("type") == "array" else ""),
                              set(target.get("required", []))))
    return rows


def reference_markdown() -> str:
    version = build_crd()["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]["properties"]
    lines = [
        "# InferenceService API reference (serving.tritium.dev/v1alpha1)",
        "",
        "Generated from the API models by `make crds`; do not edit. `kubectl explain tisvc.spec` shows the same.",
        "",
    ]
    for section in ("spec", "status"):
        node = schema[section]
        lines += [f"## {section}", "", node.get("description", ""), "",
                  "| field | type | required | default | description |", "|---|---|---|---|---|"]
        lines += _rows(node, section, set(node.get("required", [])))
        lines.append("")
    rules = []

    def collect(node: dict[str, Any], path: str) -> None:
        for rule in node.get("x-kubernetes-validations", []):
            rules.append(f"| `{path}` | `{rule['rule']}` | {rule['message']} |")
        for name, child in (node.get("properties") or {}).items():
            collect(child, f"{path}.{name}")
        if "items" in node:
            collect(node["items"], f"{path}[]")

    collect(schema["spec"], "spec")
    lines += ["## Validation rules (CEL, checked by the API server and by `tritium render`)", "",
              "| on | rule | message |", "|---|---|---|", *rules, ""]
    lines += ["## Not supported yet", "",
              "These fields are part of the API but do nothing yet. A spec that sets one of them to anything but "
              "its default is refused with `Ready=False, reason InvalidSpec` naming the field (and by "
              "`tritium render` and `tritium up`), rather than silently ignored.", "",
              "| fields | why |", "|---|---|",
              *(f"| `{prefix}` | {why} |" for prefix, why in NOT_SUPPORTED.items()), ""]
    lines += ["## Fields used only with another setting", "",
              "Each of these is read only while the setting beside it is on. Set to anything but its default while "
              "that setting is off, it would do nothing, so the spec is refused the same way, naming the field.", "",
              "| field | used only with |", "|---|---|",
              *(f"| `{path}` | `{needs.split(' (')[0]}` |" for path, (_, needs) in ONLY_WITH.items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(reference_markdown())
