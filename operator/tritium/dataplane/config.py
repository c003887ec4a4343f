"""The data-plane configuration: the JSON file `--spec` points at (the revision ConfigMap's spec file).

Its shape is render.configmap.data_plane_config: {"name", "namespace", "revision", "spec": {...}};
the "spec" part is parsed with the same pydantic model the operator uses, so a pod never runs a
configuration the operator would have rejected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from tritium.api.resource import first_error
from tritium.api.spec import InferenceServiceSpec


class ConfigError(ValueError):
    """The spec file is missing or invalid (reported as a usage error by the CLI)."""


@dataclass(frozen=True)
class DataPlaneConfig:
    name: str
    namespace: str
    revision: str
    spec: InferenceServiceSpec
    path: Path


def load_config(path: str | Path) -> DataPlaneConfig:
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("spec"), dict):
        raise ConfigError(f"{path}: expected an object with a \"spec\" object")
    try:
        spec = InferenceServiceSpec.model_validate(raw["spec"])
    except ValidationError as exc:
        err = first_error(exc)
        raise ConfigError(f"{path}: spec.{err}") from None
    return DataPlaneConfig(
        name=str(raw.get("name", spec.model.name)),
        namespace=str(raw.get("namespace", "default")),
        revision=str(raw.get("revision", "")),
        spec=spec,
        path=path,
    )
