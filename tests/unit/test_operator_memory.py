"""The operator process leaves out what it never uses (its memory target is in docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from tritium.cli import without_kubernetes_client
without_kubernetes_client()
import tritium.controller.main, tritium.controller.handlers, kopf
assert sys.modules.get("kubernetes") is None, "kubernetes was imported"
assert not [m for m in sys.modules if m.startswith("kubernetes.")], "a kubernetes submodule was imported"
from kopf._cogs.helpers import thirdparty
assert thirdparty.V1ObjectMetaSync is None  # kopf took its path without the library
print("ok")
"""


def test_the_operator_process_does_not_load_the_kubernetes_client() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_without_it_kopf_would_load_it() -> None:
    """The probe above can fail: kopf does import the library when it is not marked absent."""
    probe = "import sys, kopf; print('kubernetes' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "True", result.stderr
