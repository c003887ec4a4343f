"""The third-party CRDs of Tritium's optional children (Gateway API, Prometheus Operator, KEDA).

scripts/optional-crds.sh copies them from the Go modules that ship them. The e2e control plane
installs that directory; the unit tests, with no API server, check rendered objects against a
CRD version's openAPIV3Schema the way kube-apiserver would (tests/support/crd_structural.py).
Fetching, loading and checking live here once, so every such test does it the same way.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.cluster import ROOT
from tests.support.crd_structural import Schema, apply_defaults, prune, schema_errors, validation_rule_failures
from tests.support.dataplane import missing


def optional_crds_dir() -> Path:
    """The directory scripts/optional-crds.sh fills (skipped locally when it fails, failed in CI)."""
    result = subprocess.run(["bash", str(ROOT / "scripts" / "optional-crds.sh")], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        missing(f"the optional CRDs could not be fetched: {result.stderr.strip()[-500:]}")
    return Path(result.stdout.strip().splitlines()[-1])


class _CrdLoader(yaml.SafeLoader):
    """Some CRDs list the matchType ``=`` unquoted, which YAML 1.1 tags as a "value" node: read it as a string.

    (The Prometheus Operator's AlertmanagerConfig does; plain ``yaml.safe_load`` refuses that node.)
    """


_CrdLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def crd_schema(file_name: str, version: str) -> Schema:
    """The openAPIV3Schema of ``version`` in the CRD ``file_name`` of optional_crds_dir()."""
    crd = yaml.load((optional_crds_dir() / file_name).read_text(), Loader=_CrdLoader)  # a SafeLoader subclass
    (found,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema: Schema = found["schema"]["openAPIV3Schema"]
    return schema


def problems(obj: dict[str, Any], schema: Schema) -> list[str]:
    """What kube-apiserver would refuse: unknown or invalid fields, then failed CEL rules on the stored object.

    Strict OpenAPI validation of the object as sent, then pruning and defaulting, then every
    x-kubernetes-validations rule where the stored object has a value. Empty: the server accepts it.
    """
    errors = schema_errors(obj, schema, strict=True)
    stored = apply_defaults(prune(obj, schema), schema)
    return errors + validation_rule_failures(stored, schema)
