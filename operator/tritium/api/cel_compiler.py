"""CEL's compiler without CEL's command line.

`import cel` (the common-expression-language package) also imports the package's REPL: typer,
prompt_toolkit, rich and pygments, about 10 MB of memory in every process that parses a spec.
That is the operator, and the gateway and both stage processes of every pod. The compiler the
API's rules need is the package's Rust extension module alone. It is loaded here by itself,
registered under its own name (`cel.cel`), so a later `import cel` in the same process reuses it
instead of loading it twice (a second load of the extension aborts the process: its logger can be
set only once). Should the package's layout change and the extension not be where
it is today, `import cel` is the fallback: slower to import, same results.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

EXTENSION = "cel.cel"  # the package's Rust module, which `cel/__init__.py` re-exports


def _extension_path() -> Path | None:
    """Where the installed `cel` package keeps its extension module (found without importing it)."""
    spec = importlib.util.find_spec("cel")
    for location in (spec.submodule_search_locations or []) if spec else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = Path(location) / f"cel{suffix}"
            if path.is_file():
                return path
    return None


def load_extension() -> ModuleType:
    """The module whose `compile` turns a CEL expression into a program, loaded as lightly as may be."""
    for name in (EXTENSION, "cel"):  # already in this process: by this module, or by `import cel`
        if sys.modules.get(name) is not None:
            return sys.modules[name]
    path = _extension_path()
    if path is None:
        import cel  # the package itself, command line and all

        return cel
    loader = importlib.machinery.ExtensionFileLoader(EXTENSION, str(path))
    spec = importlib.util.spec_from_file_location(EXTENSION, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    sys.modules[EXTENSION] = module
    return module


def compile_expression(expression: str) -> Any:
    """A compiled CEL program (`.execute(context)` evaluates it); raises ValueError on a syntax error."""
    return load_extension().compile(expression)
