"""Reading the InferenceService local mode runs, with its relative paths made absolute.

A manifest kept next to its model and scripts (examples/minilm) names them relative to itself:
``storageUri: file://./model``, ``script.path: pre.py``. In a pod those paths have no meaning,
so local mode resolves them against the manifest's directory once, here, before anything is
written or started; every process then sees absolute paths only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tritium.api.checks import check_spec, storage_scheme
from tritium.api.resource import InferenceService, SpecError, load_inference_services, parse_inference_service
from tritium.cli import UsageError
from tritium.dataplane.fetch import file_uri_path


def _absolute_storage_uri(uri: str, base: Path) -> str:
    if storage_scheme(uri) != "file":
        return uri
    path = file_uri_path(uri)
    if os.path.isabs(path):
        return uri
    return "file://" + quote(str((base / path).resolve()))


def _absolute_script(stage: dict[str, Any] | None, base: Path) -> None:
    script = (stage or {}).get("script") or {}
    path = script.get("path")
    if path and not os.path.isabs(path):
        script["path"] = str((base / path).resolve())


def resolve_paths(isvc: InferenceService, base: Path) -> InferenceService:
    """The same service with storageUri and script paths made absolute against ``base``."""
    wire = isvc.to_wire()
    spec = wire["spec"]
    spec["model"]["storageUri"] = _absolute_storage_uri(spec["model"]["storageUri"], base)
    _absolute_script(spec.get("preprocess"), base)
    _absolute_script(spec.get("postprocess"), base)
    return parse_inference_service(wire)


def load_manifest(path: str, name: str | None = None) -> InferenceService:
    """The one InferenceService of the manifest (or the one called ``name``), checked and resolved."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None
    try:
        services = load_inference_services(text)
        if name is not None:
            services = [s for s in services if s.name == name]
            if not services:
                raise SpecError("metadata.name", f"no InferenceService named {name!r} in the file")
        if len(services) > 1:
            names = ", ".join(s.name for s in services)
            raise SpecError("", f"the file holds several InferenceServices ({names}); pick one with --name")
        isvc = services[0]
        check_spec(isvc)
    except SpecError as exc:
        raise UsageError(f"{path}: {exc}") from None
    for stage_name, stage in (("preprocess", isvc.spec.preprocess), ("postprocess", isvc.spec.postprocess)):
        if stage and stage.script and stage.script.config_map_ref:
            raise UsageError(
                f"{path}: spec.{stage_name}.script.configMapRef needs a cluster; use script.path in local mode"
            )
    resolved = resolve_paths(isvc, file.resolve().parent)
    for stage_name, stage in (("preprocess", resolved.spec.preprocess), ("postprocess", resolved.spec.postprocess)):
        if stage and stage.script and stage.script.path and not Path(stage.script.path).is_file():
            raise UsageError(f"{path}: spec.{stage_name}.script.path: no such file {stage.script.path}")
    return resolved
