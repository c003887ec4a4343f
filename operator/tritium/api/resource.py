"""The InferenceService resource as a whole, and parsing it from YAML/dicts with clear errors."""

from __future__ import annotations

import difflib
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tritium.api.base import CEL_ERROR_TYPE, DNS_1035_LABEL_PATTERN, ApiModel
from tritium.api.spec import InferenceServiceSpec
from tritium.api.status import InferenceServiceStatus

GROUP = "serving.tritium.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceService"
PLURAL = "inferenceservices"
SINGULAR = "inferenceservice"
SHORT_NAMES = ["tisvc"]  # not "isvc": KServe owns that one


class ObjectMeta(BaseModel):
    """The parts of metadata the operator reads; everything else is kept but ignored."""

    model_config = ConfigDict(extra="allow", frozen=True)

    # The name becomes the Service's name, which must be a DNS-1035 label (a letter first).
    name: str = Field(min_length=1, max_length=63, pattern=DNS_1035_LABEL_PATTERN)
    namespace: str = "default"
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class InferenceService(ApiModel):
    """An InferenceService: one Triton model served behind the Tritium gateway."""

    api_version: Literal["serving.tritium.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["InferenceService"]
    metadata: ObjectMeta
    spec: InferenceServiceSpec
    status: InferenceServiceStatus | None = None

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace


class SpecError(ValueError):
    """A manifest that cannot be used, with the offending field named (``spec.model.name: ...``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def _loc_to_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif str(part).startswith("function-") or str(part) in {"str", "int", "float", "bool"}:
            continue  # pydantic's internal validator names, not user fields
        else:
            path += f".{part}" if path else str(part)
    return path


def first_error(exc: ValidationError) -> SpecError:
    """The first validation problem as one line that names the field."""
    errors = exc.errors(include_url=False)
    err = errors[0]
    message = err["msg"].removeprefix("Value error, ")
    field = _loc_to_path(tuple(err["loc"]))
    # A CEL rule names its own field relative to the object it sits on ("minReplicas").
    if err["type"] == CEL_ERROR_TYPE:
        ctx = err.get("ctx") or {}
        sub = ctx.get("field", "")
        if sub:
            field = f"{field}.{sub}" if field else sub
        message = ctx.get("message", message)
    if err["type"] == "extra_forbidden":
        message = "unknown field"
    if err["type"] == "missing" and err["loc"]:
        message += _misspelled_hint(str(err["loc"][-1]), tuple(err["loc"][:-1]), errors)
    return SpecError(field, message)


def _misspelled_hint(name: str, parent: tuple[Any, ...], errors: list[Any]) -> str:
    """For a required field that is missing: the unknown sibling key that looks like a typo of it."""
    unknown = [str(e["loc"][-1]) for e in errors
               if e["type"] == "extra_forbidden" and tuple(e["loc"][:-1]) == parent and e["loc"]]
    close = [k for k in unknown if k.lower() == name.lower()] or difflib.get_close_matches(name, unknown, n=1)
    return f" (found unknown field {close[0]}: did you mean {name}?)" if close else ""


def parse_inference_service(obj: Any) -> InferenceService:
    """Parse one InferenceService dict; raise SpecError naming the first bad field."""
    if not isinstance(obj, dict):
        raise SpecError("", "an InferenceService must be a mapping")
    if obj.get("kind") != KIND or obj.get("apiVersion") != API_VERSION:
        raise SpecError(
            "kind", f"expected apiVersion {API_VERSION} and kind {KIND}, got "
            f"{obj.get('apiVersion')!r} {obj.get('kind')!r}"
        )
    try:
        return InferenceService.model_validate(obj)
    except ValidationError as exc:
        raise first_error(exc) from None


def load_inference_services(text: str) -> list[InferenceService]:
    """Parse every InferenceService in a (multi-document) YAML text; other kinds are skipped."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError("", f"not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    services = [parse_inference_service(d) for d in docs if isinstance(d, dict) and d.get("kind") == KIND]
    if not services:
        raise SpecError("kind", f"no {KIND} found in the file")
    return services


def spec_to_wire(spec: InferenceServiceSpec) -> dict[str, Any]:
    """The spec with every default filled in, as kube-apiserver would store it."""
    return ApiModel.to_wire(spec)
