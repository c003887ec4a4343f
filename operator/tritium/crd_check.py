"""`tritium crd --check`: is the InferenceService CRD in the cluster as new as this operator?

Helm installs the CRDs of a chart once and never upgrades them, and `kubectl apply` of an old
manifest can downgrade them. When the cluster's schema lacks a field this operator knows, the API
server silently prunes that field from every InferenceService: the user's setting is lost without
an error. This check names the missing fields before that bites.

The comparison is a pure function of two CRD dicts (tested without a cluster); only
`fetch_installed_crd` talks to the API server.

Exit codes: 0 up to date (or newer), 1 older or different, 2 not installed, 3 the cluster could
not be asked: no usable credentials (a kubeconfig that does not exist or is not valid YAML),
an API server that cannot be reached, or one that refuses the read.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

EXIT_UP_TO_DATE = 0
EXIT_OUTDATED = 1
EXIT_NOT_INSTALLED = 2
EXIT_CANNOT_CHECK = 3

# Keys that hold sub-schemas (walked separately) or only documentation (never a compatibility issue).
_STRUCTURE_KEYS = frozenset({"properties", "items", "additionalProperties", "description"})


@dataclass(frozen=True)
class CrdComparison:
    """The verdict on an installed CRD, with the details a user needs to act on it."""

    status: str  # "up to date" | "newer" | "older" | "different" | "not installed"
    exit_code: int
    missing_fields: tuple[str, ...] = ()
    extra_fields: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        """One line for the terminal."""
        if self.status == "not installed":
            return "not installed"
        if self.status == "older":
            return f"older than the operator (missing fields: {', '.join(self.missing_fields)})"
        if self.status == "different":
            return f"different from the operator's (changed: {', '.join(self.changed)})"
        if self.status == "newer":
            return f"up to date (newer than the operator; fields it does not know: {', '.join(self.extra_fields)})"
        return "up to date"


def _schema_nodes(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every schema node with its field path: `spec.model.name`, `[]` for list items, `{}` for map values."""
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from _schema_nodes(sub, f"{path}.{name}" if path else name)
    items = schema.get("items")
    if isinstance(items, Mapping):
        yield from _schema_nodes(items, f"{path}[]")
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping):
        yield from _schema_nodes(extra, f"{path}{{}}")


def _topmost(paths: set[str]) -> tuple[str, ...]:
    """Drop paths below another listed path: a missing `spec.cache` implies its children."""
    ordered = sorted(paths)
    kept: list[str] = []
    for p in ordered:
        if not any(p.startswith(k) and p[len(k)] in ".[{" for k in kept):
            kept.append(p)
    return tuple(kept)


def _constraints(node: Mapping[str, Any]) -> dict[str, Any]:
    """The validating part of one schema node (type, enum, bounds, CEL rules...), not its children."""
    return {k: v for k, v in node.items() if k not in _STRUCTURE_KEYS}


def _versions(crd: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {v["name"]: v for v in crd.get("spec", {}).get("versions", []) if v.get("served", True)}


def compare_crd(installed: Mapping[str, Any] | None, expected: Mapping[str, Any]) -> CrdComparison:
    """Compare the CRD found in the cluster with the one this operator was built with.

    Missing fields (or a missing served version) make the installed CRD "older": exit 1. The same
    fields with other validation, subresources or printer columns make it "different": also exit 1,
    since the cluster then accepts or rejects other objects than the operator expects. Extra fields
    alone are fine (additive changes within v1alpha1): a newer CRD serves an older operator.
    """
    if installed is None:
        return CrdComparison(status="not installed", exit_code=EXIT_NOT_INSTALLED)
    have_versions = _versions(installed)
    missing: set[str] = set()
    extra: set[str] = set()
    changed: set[str] = set()
    for name, want in _versions(expected).items():
        have = have_versions.get(name)
        if have is None:
            missing.add(f"version {name}")
            continue
        want_nodes = dict(_schema_nodes(want.get("schema", {}).get("openAPIV3Schema", {})))
        have_nodes = dict(_schema_nodes(have.get("schema", {}).get("openAPIV3Schema", {})))
        missing |= {p for p in want_nodes if p not in have_nodes}
        extra |= {p for p in have_nodes if p not in want_nodes}
        changed |= {
            p or "(root)"
            for p, node in want_nodes.items()
            if p in have_nodes and _constraints(node) != _constraints(have_nodes[p])
        }
        for key in ("subresources", "additionalPrinterColumns"):
            if (want.get(key) or None) != (have.get(key) or None):
                changed.add(f"{name} {key}")
    if missing:
        return CrdComparison(
            status="older", exit_code=EXIT_OUTDATED, missing_fields=_topmost(missing),
            extra_fields=_topmost(extra), changed=tuple(sorted(changed)),
        )
    if changed:
        return CrdComparison(
            status="different", exit_code=EXIT_OUTDATED, extra_fields=_topmost(extra), changed=tuple(sorted(changed))
        )
    if extra:
        return CrdComparison(status="newer", exit_code=EXIT_UP_TO_DATE, extra_fields=_topmost(extra))
    return CrdComparison(status="up to date", exit_code=EXIT_UP_TO_DATE)


class CheckError(Exception):
    """The cluster could not be asked (no kubeconfig, unreachable, forbidden)."""


def fetch_installed_crd(name: str) -> dict[str, Any] | None:
    """The CRD as stored by the API server (raw JSON, so no field is lost to client models); None if absent."""
    try:
        from kubernetes import client, config
        from kubernetes.client.rest import ApiException
        from kubernetes.config.config_exception import ConfigException
    except ImportError:
        raise CheckError("the check needs the kubernetes client: pip install kubernetes") from None

    from tritium.rollout_cli import connection_failure, kubeconfig_path, kubeconfig_problem

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except ConfigException:
        path = kubeconfig_path(None)
        problem = kubeconfig_problem(path)
        if problem and not os.environ.get("KUBECONFIG") and not os.path.exists(path):
            raise CheckError(f"no cluster configured: not running in a cluster, and {problem}") from None
        if problem:
            raise CheckError(problem) from None
        try:
            config.load_kube_config(config_file=path, client_configuration=configuration, persist_config=False)
        except Exception as exc:  # a ConfigException, or a KeyError/TypeError from a malformed file
            detail = f"no {exc} entry" if isinstance(exc, KeyError) else " ".join(str(exc).split())
            raise CheckError(f"cannot use the Kubernetes credentials in {path}: {detail}") from None
    api_client = client.ApiClient(configuration)
    try:
        response = client.ApiextensionsV1Api(api_client).read_custom_resource_definition(
            name, _preload_content=False, _request_timeout=15)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise CheckError(f"reading customresourcedefinition {name}: HTTP {exc.status} {exc.reason}") from None
    except Exception as exc:  # urllib3 connection errors and timeouts have no common base worth importing
        reason = connection_failure(exc, timeout=15)
        raise CheckError(f"cannot reach the Kubernetes API at {configuration.host}: {reason}") from None
    finally:
        api_client.close()
    data: dict[str, Any] = json.loads(response.data)
    return data


def check_cluster(
    fetch: Callable[[str], dict[str, Any] | None] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Print the verdict on the cluster's InferenceService CRD; the exit code says it to scripts."""
    from tritium.api.crd import build_crd

    fetch = fetch or fetch_installed_crd
    out = out or sys.stdout
    err = err or sys.stderr

    expected = build_crd()
    name = expected["metadata"]["name"]
    try:
        installed = fetch(name)
    except CheckError as exc:
        print(f"tritium crd --check: {exc}", file=err)
        return EXIT_CANNOT_CHECK
    result = compare_crd(installed, expected)
    print(f"customresourcedefinition {name}: {result.summary}", file=out)
    if result.exit_code != EXIT_UP_TO_DATE:
        verb = "install" if result.exit_code == EXIT_NOT_INSTALLED else "upgrade"
        print(
            f"  {verb} it with: kubectl apply --server-side -f crds/  (or `tritium crd | kubectl apply "
            "--server-side -f -`)",
            file=out,
        )
    return result.exit_code
