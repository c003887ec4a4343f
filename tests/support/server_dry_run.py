"""Asking kube-apiserver itself whether it would take some objects: a server-side dry run.

Shared by the e2e tests that check third-party kinds against their real CRDs
(tests/e2e/test_optional_crds.py, tests/e2e/test_httproute_on_server.py), so each asks the same way.
"""

from __future__ import annotations

import subprocess
from typing import Any, Protocol

import yaml


class Kubectl(Protocol):
    """What the dry run needs of the cluster under test (tests/e2e/conftest.py's Kube)."""

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        ...


def server_dry_run(kube: Kubectl, namespace: str, objects: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    """`kubectl apply --server-side --dry-run=server` of the objects; the caller judges the result."""
    text = yaml.safe_dump_all(objects)
    return kube.kubectl("apply", "--server-side", "--dry-run=server", "--field-manager=tritium-e2e",
                        "-n", namespace, "-f", "-", input=text, check=False)
