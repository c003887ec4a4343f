"""`tritium crd --check`: the comparison is pure, so every verdict is tested on dicts, no cluster."""

from __future__ import annotations

import copy
import io
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from tritium import cli, crd_check
from tritium.api.crd import build_crd
from tritium.crd_check import (
    EXIT_CANNOT_CHECK,
    EXIT_NOT_INSTALLED,
    EXIT_OUTDATED,
    EXIT_UP_TO_DATE,
    CheckError,
    check_cluster,
    compare_crd,
)


def _schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _as_stored(crd: dict[str, Any]) -> dict[str, Any]:
    """What the API server returns: the same spec plus server-owned metadata and status."""
    stored = copy.deepcopy(crd)
    stored["metadata"].update(uid="0b5c", resourceVersion="42", generation=3, managedFields=[{"manager": "kubectl"}])
    stored["status"] = {"acceptedNames": stored["spec"]["names"], "storedVersions": ["v1alpha1"]}
    stored["spec"]["conversion"] = {"strategy": "None"}
    return stored


@pytest.fixture
def expected() -> dict[str, Any]:
    return build_crd()


def test_not_installed(expected: dict[str, Any]) -> None:
    result = compare_crd(None, expected)
    assert (result.status, result.exit_code, result.summary) == ("not installed", EXIT_NOT_INSTALLED, "not installed")


def test_same_crd_is_up_to_date_despite_server_fields(expected: dict[str, Any]) -> None:
    result = compare_crd(_as_stored(expected), expected)
    assert (result.status, result.exit_code, result.summary) == ("up to date", EXIT_UP_TO_DATE, "up to date")


def test_missing_field_makes_it_older_and_names_only_the_topmost_path(expected: dict[str, Any]) -> None:
    installed = _as_stored(expected)
    spec = _schema(installed)["properties"]["spec"]["properties"]
    assert "gateway" in spec and "properties" in spec["gateway"]
    del spec["gateway"]
    del spec["model"]["properties"]["storageUri"]
    result = compare_crd(installed, expected)
    assert result.status == "older"
    assert result.exit_code == EXIT_OUTDATED
    assert result.missing_fields == ("spec.gateway", "spec.model.storageUri")
    assert result.summary == "older than the operator (missing fields: spec.gateway, spec.model.storageUri)"


def test_missing_field_inside_list_items(expected: dict[str, Any]) -> None:
    installed = _as_stored(expected)
    groups = _schema(installed)["properties"]["spec"]["properties"]["model"]["properties"]["instanceGroups"]
    item_fields = groups["items"]["properties"]
    dropped = sorted(item_fields)[0]
    del item_fields[dropped]
    result = compare_crd(installed, expected)
    assert result.missing_fields == (f"spec.model.instanceGroups[].{dropped}",)


def test_missing_version_is_older(expected: dict[str, Any]) -> None:
    installed = _as_stored(expected)
    installed["spec"]["versions"][0]["name"] = "v1alpha0"
    result = compare_crd(installed, expected)
    assert (result.status, result.missing_fields) == ("older", ("version v1alpha1",))


def test_unserved_version_counts_as_missing(expected: dict[str, Any]) -> None:
    installed = _as_stored(expected)
    installed["spec"]["versions"][0]["served"] = False
    assert compare_crd(installed, expected).missing_fields == ("version v1alpha1",)


def test_extra_fields_are_a_newer_crd_and_fine(expected: dict[str, Any]) -> None:
    installed = _as_stored(expected)
    _schema(installed)["properties"]["spec"]["properties"]["future"] = {
        "type": "object", "properties": {"knob": {"type": "string"}},
    }
    result = compare_crd(installed, expected)
    assert (result.status, result.exit_code) == ("newer", EXIT_UP_TO_DATE)
    assert result.extra_fields == ("spec.future",)
    assert result.summary.startswith("up to date (newer than the operator")


def test_changed_validation_is_different(expected: dict[str, Any]) -> None:
    installed = _as_stored(expected)
    name = _schema(installed)["properties"]["spec"]["properties"]["model"]["properties"]["name"]
    name["maxLength"] = 30
    result = compare_crd(installed, expected)
    assert (result.status, result.exit_code, result.changed) == ("different", EXIT_OUTDATED, ("spec.model.name",))
    assert result.summary == "different from the operator's (changed: spec.model.name)"


def test_changed_subresources_are_different(expected: dict[str, Any]) -> None:
    installed = _as_stored(expected)
    del installed["spec"]["versions"][0]["subresources"]["scale"]
    assert compare_crd(installed, expected).changed == ("v1alpha1 subresources",)


def test_descriptions_do_not_matter(expected: dict[str, Any]) -> None:
    installed = _as_stored(expected)
    _schema(installed)["properties"]["spec"]["description"] = "reworded"
    assert compare_crd(installed, expected).status == "up to date"


def test_older_wins_over_different(expected: dict[str, Any]) -> None:
    installed = _as_stored(expected)
    spec = _schema(installed)["properties"]["spec"]
    spec["properties"]["model"]["properties"]["name"]["maxLength"] = 30
    del spec["properties"]["gateway"]
    result = compare_crd(installed, expected)
    assert (result.status, result.changed) == ("older", ("spec.model.name",))


@pytest.mark.parametrize(
    ("installed", "code", "line"),
    [
        (None, EXIT_NOT_INSTALLED, "not installed"),
        ("same", EXIT_UP_TO_DATE, "up to date"),
    ],
)
def test_check_cluster_prints_the_verdict(installed: Any, code: int, line: str) -> None:
    crd = build_crd() if installed == "same" else None
    out, err = io.StringIO(), io.StringIO()
    assert check_cluster(fetch=lambda name: crd, out=out, err=err) == code
    first = out.getvalue().splitlines()[0]
    assert first == f"customresourcedefinition inferenceservices.serving.tritium.dev: {line}"
    assert ("kubectl apply --server-side -f crds/" in out.getvalue()) == (code != EXIT_UP_TO_DATE)
    assert err.getvalue() == ""


@pytest.mark.parametrize(("installed", "verb"), [(None, "install"), ("older", "upgrade"), ("different", "upgrade")])
def test_the_hint_says_install_when_absent_and_upgrade_when_outdated(installed: str | None, verb: str) -> None:
    crd = None
    if installed is not None:
        crd = build_crd()
        if installed == "older":
            del _schema(crd)["properties"]["status"]
        else:
            _schema(crd)["properties"]["spec"]["properties"]["model"]["properties"]["name"]["maxLength"] = 30
    out = io.StringIO()
    check_cluster(fetch=lambda name: crd, out=out, err=io.StringIO())
    assert out.getvalue().splitlines()[1] == (
        f"  {verb} it with: kubectl apply --server-side -f crds/  "
        "(or `tritium crd | kubectl apply --server-side -f -`)")


def test_check_cluster_reports_an_unreachable_cluster() -> None:
    def fail(name: str) -> None:
        raise CheckError("cannot reach the cluster: connection refused")

    out, err = io.StringIO(), io.StringIO()
    assert check_cluster(fetch=fail, out=out, err=err) == EXIT_CANNOT_CHECK
    assert err.getvalue() == "tritium crd --check: cannot reach the cluster: connection refused\n"


def test_cli_flag_runs_the_check(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def fetch(name: str) -> dict[str, Any]:
        assert name == "inferenceservices.serving.tritium.dev"
        older = build_crd()
        del _schema(older)["properties"]["status"]
        return older

    monkeypatch.setattr(crd_check, "fetch_installed_crd", fetch)
    assert cli.main(["crd", "--check"]) == EXIT_OUTDATED
    assert "older than the operator (missing fields: status)" in capsys.readouterr().out


@pytest.fixture
def no_service_account(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not in a pod: the check falls back to KUBECONFIG."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)


def _kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))
    return path


def _run_check(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(["crd", "--check"])
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err and captured.err.count("\n") == 1
    return code, captured.err


@pytest.mark.usefixtures("no_service_account")
def test_kubeconfig_that_is_not_yaml_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kc"
    path.write_text("garbage: [\n")
    monkeypatch.setenv("KUBECONFIG", str(path))
    assert _run_check(capsys) == (EXIT_CANNOT_CHECK, (
        f"tritium crd --check: kubeconfig {path} is not valid YAML at line 2, column 1: while parsing a flow node, "
        "expected the node content, but found '<stream end>'\n"))


@pytest.mark.usefixtures("no_service_account")
def test_missing_kubeconfig_says_it_does_not_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    assert _run_check(capsys) == (
        EXIT_CANNOT_CHECK, f"tritium crd --check: kubeconfig {tmp_path / 'absent'} does not exist\n")


@pytest.mark.usefixtures("no_service_account")
def test_unreachable_api_server_is_one_short_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path, f"https://127.0.0.1:{port}")))
    assert _run_check(capsys) == (EXIT_CANNOT_CHECK, (
        f"tritium crd --check: cannot reach the Kubernetes API at https://127.0.0.1:{port}: connection refused\n"))


def test_cli_without_flag_still_prints_the_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["crd"]) == 0
    assert "kind: CustomResourceDefinition" in capsys.readouterr().out
