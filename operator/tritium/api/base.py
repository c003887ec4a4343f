"""Building blocks shared by every API model.

The pydantic models in this package are the single source of truth for the InferenceService API:
the CRD schema (crds/) is generated from them, and the cross-field rules are written once, in CEL,
then both emitted as ``x-kubernetes-validations`` (checked by kube-apiserver) and evaluated here
when a manifest is parsed (so `tritium render` and the operator give the same verdict as the
cluster, without a second hand-written copy of each rule).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from tritium.api.cel_compiler import compile_expression

# Kubernetes resource.Quantity grammar (signed decimal number, optional binary/decimal suffix or exponent).
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)


def _quantity(value: Any) -> str:
    """Accept ints (``cpu: 2``) as Kubernetes does and keep the canonical string form.

    Floats are refused: the CRD types a quantity as int-or-string, so kube-apiserver rejects
    ``cpu: 0.5`` and the offline verdict must be the same (``"500m"`` or ``"0.5"`` work).
    """
    if isinstance(value, bool | float):
        raise ValueError(f"{value!r} is not a Kubernetes quantity; write an integer or a string such as '500m'")
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not _QUANTITY_RE.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (examples: 2, '500m', '4Gi')")
    return value


Quantity = Annotated[
    str,
    BeforeValidator(_quantity),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
        }
    ),
]

# DNS-1123 label: what Kubernetes accepts as a Service/Deployment name component.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# DNS-1035 label: what a Service name must be (a letter first); the InferenceService's name becomes one.
DNS_1035_LABEL_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"

# pydantic error type of a failed CEL rule; its context carries the rule's field and message.
CEL_ERROR_TYPE = "cel_rule"


@dataclass(frozen=True)
class CelRule:
    """A cross-field rule, in the base CEL language only (no Kubernetes extension functions).

    ``field`` is the JSON path (relative to the object the rule sits on) that the error names.
    """

    rule: str
    message: str
    field: str = ""

    def to_crd(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.field:
            out["fieldPath"] = self.field
        return out


@cache
def _compiled(rule: str) -> Any:
    return compile_expression(rule)


def evaluate_rule(rule: CelRule, obj: dict[str, Any]) -> bool:
    """Evaluate one rule against ``obj`` the way kube-apiserver does (``self`` is the object)."""
    return bool(_compiled(rule.rule).execute({"self": obj}))


class ApiModel(BaseModel):
    """Base of every spec/status model: camelCase on the wire, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = ()

    @model_validator(mode="after")
    def _check_cel_rules(self) -> ApiModel:
        if self.cel_rules:
            wire = self.to_wire()
            for rule in self.cel_rules:
                if not evaluate_rule(rule, wire):
                    field = rule.field.lstrip(".")
                    raise PydanticCustomError(
                        CEL_ERROR_TYPE, "{where}: {message}",
                        {"where": field or "object", "field": field, "message": rule.message},
                    )
        return self

    def to_wire(self) -> dict[str, Any]:
        """The object as it is stored in Kubernetes: camelCase keys, unset optionals omitted."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def described(description: str, **kwargs: Any) -> Any:
    """A pydantic Field with a mandatory description (the CRD test requires one on every field)."""
    return Field(description=description, **kwargs)


def nested(model: type[ApiModel], description: str) -> Any:
    """An always-present sub-object defaulted to ``{}`` so that its own defaults apply on the server too."""
    return Field(default_factory=model, description=description, json_schema_extra={"default": {}})
