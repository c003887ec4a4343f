"""The CLI's first-run errors: one line on stderr naming the problem, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritium.cli import UsageError, main
from tritium.local.manifest import load_manifest


def _latin1_file(tmp_path: Path) -> Path:
    path = tmp_path / "isvc.yaml"
    path.write_bytes("metadata: {name: caf\xe9}\n".encode("latin-1"))
    return path


def test_render_non_utf8_file_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _latin1_file(tmp_path)
    assert main(["render", "-f", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"tritium render: {path}: not UTF-8 text")
    assert "Traceback" not in err


def test_up_non_utf8_manifest_is_a_usage_error(tmp_path: Path) -> None:
    path = _latin1_file(tmp_path)
    with pytest.raises(UsageError, match="not UTF-8 text"):
        load_manifest(str(path))


def _operator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kubeconfig: str | None) -> int:
    import kopf

    monkeypatch.setattr(kopf, "login_with_service_account", lambda **_: None)  # not in a pod
    monkeypatch.setenv("HOME", str(tmp_path))
    if kubeconfig is None:
        monkeypatch.delenv("KUBECONFIG", raising=False)
    else:
        monkeypatch.setenv("KUBECONFIG", kubeconfig)
    return main(["operator", "--metrics-port", "0", "--liveness-port", "0"])


@pytest.mark.parametrize(
    ("kubeconfig", "expected"),
    [
        (None, "tritium operator: no Kubernetes cluster: not running in a cluster"),
        ("/nonexistent/kubeconfig", "tritium operator: cannot read the Kubernetes credentials "
                                    "(/nonexistent/kubeconfig: No such file or directory)"),
        ("UNREACHABLE", "tritium operator: cannot reach the Kubernetes API server https://127.0.0.1:1 "
                        "(from KUBECONFIG "),
    ],
)
def test_operator_without_a_cluster_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    kubeconfig: str | None, expected: str,
) -> None:
    if kubeconfig == "UNREACHABLE":
        path = tmp_path / "kubeconfig"
        path.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
            "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
            "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
            "users: [{name: u, user: {token: x}}]\n"
        )
        kubeconfig = str(path)
    code = _operator(monkeypatch, tmp_path, kubeconfig)
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1, err
    assert err.startswith(expected), err


def test_a_closed_stdout_stops_quietly() -> None:
    """`tritium render -f ... | head`: the reader is gone before the output is written."""
    import subprocess
    import sys

    example = Path(__file__).resolve().parents[2] / "examples" / "cpu-basic.yaml"
    proc = subprocess.Popen([sys.executable, "-m", "tritium.cli", "render", "-f", str(example)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert err == ""


MISSPELLED = """
apiVersion: serving.tritium.dev/v1alpha1
kind: InferenceService
metadata: {name: demo}
spec:
  model: {name: demo, storageURI: "file:///models/demo", format: python}
"""


def test_a_misspelled_required_field_names_the_close_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "isvc.yaml"
    path.write_text(MISSPELLED)
    assert main(["render", "-f", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"tritium render: {path}: spec.model.storageUri: Field required "
        "(found unknown field storageURI: did you mean storageUri?)\n"
    )


def test_a_missing_field_without_a_look_alike_has_no_hint() -> None:
    from tritium.api.resource import SpecError, load_inference_services

    with pytest.raises(SpecError) as info:
        load_inference_services(MISSPELLED.replace("storageURI", "weights"))
    assert str(info.value) == "spec.model.storageUri: Field required"


@pytest.mark.parametrize("namespace", ["Bad_NS!", "UPPER", "-lead", "x" * 64, "web/*"])
def test_operator_refuses_a_namespace_that_can_match_none(
    namespace: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checked before any cluster is asked: a bad -n is bad input (exit 2), not an idle operator."""
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    assert main(["operator", f"--namespace={namespace}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--namespace {namespace!r} can match no namespace" in err, err


@pytest.mark.parametrize("namespace", ["ml", "team-a", "web-*", "!kube-system", "ns-?", "x" * 63])
def test_operator_namespaces_and_kopf_patterns_pass_the_check(namespace: str) -> None:
    from tritium.cli import check_watched_namespace

    assert check_watched_namespace(namespace) == namespace
