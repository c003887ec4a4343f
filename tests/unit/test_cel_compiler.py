"""CEL's compiler is loaded without CEL's command line, and gives the same programs either way.

Each check runs in a fresh interpreter: what a process has imported is the thing under test, and
the test process itself has long imported `cel` whole (tests/support/crd_structural.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMAND_LINE_PACKAGES = ("typer", "prompt_toolkit", "rich", "pygments")

PARSE = """
import json, sys
from pathlib import Path
from tritium.api.resource import SpecError, load_inference_services

text = Path(sys.argv[1]).read_text()
load_inference_services(text)  # valid: every CEL rule on its path evaluates to true
try:
    load_inference_services(text.replace("minReplicas: 1", "minReplicas: 5"))
    refused = None
except SpecError as exc:
    refused = str(exc)
print(json.dumps({"refused": refused, "loaded": sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[2:]),
                  "cel_package": "cel" in sys.modules}))
"""


def run(code: str, *args: str) -> str:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT / "operator"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_parsing_a_spec_evaluates_its_rules_without_importing_the_command_line() -> None:
    result = json.loads(run(PARSE, str(ROOT / "examples" / "cpu-basic.yaml"), *COMMAND_LINE_PACKAGES))
    assert result["loaded"] == [], f"a spec parse imported CEL's command line: {result['loaded']}"
    assert not result["cel_package"]
    # A CEL rule still refuses what it should: minReplicas above maxReplicas (3).
    assert result["refused"] is not None and "minReplicas" in result["refused"], result


def test_a_later_import_of_the_package_reuses_the_loaded_extension() -> None:
    code = """
from tritium.api.cel_compiler import compile_expression, load_extension
first = load_extension()
import cel
assert cel.compile is first.compile, "the extension was loaded twice"
assert compile_expression("self.a + 1").execute({"self": {"a": 41}}) == 42
assert cel.compile("self.a + 1").execute({"self": {"a": 1}}) == 2
print("ok")
"""
    assert run(code).strip() == "ok"


def test_a_process_that_imported_the_package_first_gets_it_back() -> None:
    code = """
import cel
from tritium.api.cel_compiler import load_extension
assert load_extension().compile is cel.compile
print("ok")
"""
    assert run(code).strip() == "ok"


def test_without_the_extension_where_expected_the_package_is_imported_instead() -> None:
    code = """
import sys
import tritium.api.cel_compiler as compiler
compiler._extension_path = lambda: None  # before the first compile: nothing is loaded yet
assert compiler.EXTENSION not in sys.modules and "cel" not in sys.modules
module = compiler.load_extension()
assert module.__name__ == "cel" and "typer" in sys.modules, module
program = module.compile("size(self) == 2")
assert program.execute({"self": [1, 2]}) is True
print("ok")
"""
    assert run(code).strip() == "ok"


def test_a_syntax_error_is_a_value_error_naming_the_expression() -> None:
    from tritium.api.cel_compiler import compile_expression

    try:
        compile_expression("self.a ==")
    except ValueError as exc:
        assert "self.a ==" in str(exc)
    else:
        raise AssertionError("a broken expression compiled")
