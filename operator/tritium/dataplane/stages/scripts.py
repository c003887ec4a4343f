"""User stage scripts: a plain Python module, loaded once per stage process.

Interface (documented in docs/stages.md):

    def setup(options: dict[str, str]) -> None                                  # optional, once at start
    def preprocess(inputs: dict[str, Any], parameters: dict[str, Any]) -> dict[str, numpy.ndarray]
    def postprocess(outputs: dict[str, numpy.ndarray], parameters: dict[str, Any]) -> dict[str, Any]

State (tokenizers, lookup tables) lives in module globals set by `setup`. A ValueError means the
request is bad: the client gets 400 with the error's message (and its `field` attribute, if any).

A plain (sync) function runs in a small thread pool, so one slow request (a huge sentence to
tokenize) delays neither the others nor the stage's health probe, which would otherwise fail and
take the pod out of service. Module-level settings change that:

    THREADS = 4        # pool size; 1 when the function is not safe to call from two threads
    BLOCKING = False   # the function is always quick: call it on the event loop (saves ~50 us)

An `async def` function runs on the event loop: it must not block it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

from tritium import pod_layout
from tritium.api.spec import ScriptSpec
from tritium.dataplane.config import ConfigError

FUNCTIONS = {"pre": "preprocess", "post": "postprocess"}
DEFAULT_THREADS = 4
MAX_THREADS = 64


def script_path(stage: str, script: ScriptSpec, scripts_dir: str = pod_layout.SCRIPTS_DIR) -> Path:
    """Where the module is: the mounted ConfigMap key, or the path the spec gives."""
    if script.config_map_ref is not None:
        return Path(scripts_dir) / stage / script.config_map_ref.key
    if script.path is None:
        raise ConfigError(f"{stage}process.script needs configMapRef or path")
    return Path(script.path)


class UserScript:
    """A loaded script: its stage function, called with (data, parameters)."""

    def __init__(self, stage: str, path: Path, options: dict[str, str] | None) -> None:
        if not path.is_file():
            raise ConfigError(f"{stage} script {path} does not exist")
        name = f"tritium_user_{stage}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"{stage} script {path} cannot be loaded as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # lets the script's dataclasses/pickling find their module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ConfigError(f"{stage} script {path} failed to import: {type(exc).__name__}: {exc}") from exc
        func_name = FUNCTIONS[stage]
        func = getattr(module, func_name, None)
        if not callable(func):
            raise ConfigError(f"{stage} script {path} defines no {func_name}(...) function")
        self.module: ModuleType = module
        self.path = path
        self.func: Callable[..., Any] = func
        self.is_async = inspect.iscoroutinefunction(func)
        self.executor = None if self.is_async or not _blocking(module, stage, path) else ThreadPoolExecutor(
            _threads(module, stage, path), thread_name_prefix=f"tritium-{stage}-script")
        setup = getattr(module, "setup", None)
        if callable(setup):
            try:
                setup(dict(options or {}))
            except Exception as exc:
                raise ConfigError(f"{stage} script {path}: setup() failed: {type(exc).__name__}: {exc}") from exc

    async def __call__(self, data: dict[str, Any], parameters: dict[str, Any]) -> Any:
        if self.is_async:
            return await self.func(data, parameters)
        if self.executor is not None:
            return await asyncio.get_running_loop().run_in_executor(self.executor, self.func, data, parameters)
        return self.func(data, parameters)


def _blocking(module: ModuleType, stage: str, path: Path) -> bool:
    value = getattr(module, "BLOCKING", True)
    if not isinstance(value, bool):
        raise ConfigError(f"{stage} script {path}: BLOCKING must be True or False, not {value!r}")
    return value


def _threads(module: ModuleType, stage: str, path: Path) -> int:
    value = getattr(module, "THREADS", DEFAULT_THREADS)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_THREADS:
        raise ConfigError(f"{stage} script {path}: THREADS must be an integer from 1 to {MAX_THREADS}, not {value!r}")
    return value
