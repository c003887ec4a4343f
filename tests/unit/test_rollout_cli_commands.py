"""`tritium promote|abort|pause|resume|status`: the flags, the patch each command sends, the tables.

The cluster is a fake that records patches (tests/e2e/test_rollout_cli.py does the same against a
real API server); the kubeconfig namespace default is read from a real kubeconfig file.
"""

from __future__ import annotations

import argparse
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from tritium import rollout_cli
from tritium.cli import build_parser, main
from tritium.render.metadata import LABEL_ISVC, LABEL_REVISION
from tritium.rollout.commands import ABORT, PAUSED, PROMOTE

COMMANDS = ("promote", "abort", "pause", "resume", "status")


class FakeCluster:
    """One InferenceService (or none) and its Deployments; patches are recorded, and merged."""

    def __init__(self, obj: dict[str, Any] | None, deployments: list[dict[str, Any]] | None = None) -> None:
        self.obj = obj
        self.items = deployments or []
        self.patches: list[tuple[str, str, dict[str, Any]]] = []
        self.closed = False
        self.namespace_found: bool | None = True  # None: reading namespaces is forbidden

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.obj

    def patch(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.patches.append((namespace, name, body))
        assert self.obj is not None
        annotations = self.obj.setdefault("metadata", {}).setdefault("annotations", {})
        for key, value in body["metadata"]["annotations"].items():
            if value is None:
                annotations.pop(key, None)
            else:
                annotations[key] = value
        return self.obj

    def deployments(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return self.items

    def namespace_exists(self, namespace: str) -> bool | None:
        return self.namespace_found

    def close(self) -> None:
        self.closed = True


def isvc(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "serving.tritium.dev/v1alpha1", "kind": "InferenceService",
            "metadata": {"name": "demo", "namespace": "default"}, "spec": spec, "status": status or {}}


def deployment(revision: str, replicas: int, ready: int | None) -> dict[str, Any]:
    status = {} if ready is None else {"readyReplicas": ready}
    return {"metadata": {"name": f"demo-{revision}", "labels": {LABEL_ISVC: "demo", LABEL_REVISION: revision}},
            "spec": {"replicas": replicas}, "status": status}


CANARY_STATUS: dict[str, Any] = {
    "phase": "Ready", "replicas": 4, "readyReplicas": 4,
    "stableRevision": "aaaa111111", "canaryRevision": "bbbb222222", "canaryWeight": 20,
    "rollout": {"phase": "Canary", "revision": "bbbb222222", "step": 1, "failures": 1, "passes": 0,
                "reason": "NextStep", "message": "revision bbbb222222 passed step 1: now 20 % of traffic",
                "startedAt": "2025-01-01T10:00:00Z"},
    "analysis": [
        {"time": "2025-01-01T10:01:00Z", "revision": "bbbb222222", "result": "Failed", "requests": 120,
         "errorRatio": 0.05, "p99LatencyMs": 41.5, "message": "error ratio 0.05 > 0.01"},
        {"time": "2025-01-01T10:02:00Z", "revision": "bbbb222222", "result": "Inconclusive", "requests": 3,
         "message": "3 requests < 50"},
    ],
}


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster(isvc(CANARY_STATUS, rollout={"steps": [5, 20, 50]}))

    def connect(args: argparse.Namespace) -> tuple[FakeCluster, str]:
        return fake, args.namespace or "default"

    monkeypatch.setattr(rollout_cli, "connect", connect)
    return fake


# -- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_takes_a_name_namespace_context_and_kubeconfig(command: str) -> None:
    args = build_parser().parse_args([command, "demo", "-n", "ml", "--context", "prod", "--kubeconfig", "/k"])
    assert (args.name, args.namespace, args.context, args.kubeconfig) == ("demo", "ml", "prod", "/k")
    assert args.func is getattr(rollout_cli, f"cmd_{command}")
    assert build_parser().parse_args([command, "demo", "--namespace", "ml"]).namespace == "ml"


@pytest.mark.parametrize("command", COMMANDS)
def test_defaults_leave_namespace_and_context_to_the_kubeconfig(command: str) -> None:
    args = build_parser().parse_args([command, "demo"])
    assert (args.namespace, args.context, args.kubeconfig) == (None, None, None)


@pytest.mark.parametrize("command", COMMANDS)
def test_name_is_required(command: str) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command])
    assert exc.value.code == 2


def _kubeconfig(tmp_path: Path, namespace: str | None) -> Path:
    context: dict[str, Any] = {"cluster": "c", "user": "u"}
    if namespace:
        context["namespace"] = namespace
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "main", "context": context},
                     {"name": "other", "context": {"cluster": "c", "user": "u", "namespace": "elsewhere"}}],
        "current-context": "main",
    }))
    return path


def test_namespace_defaults_to_the_current_context_then_default(tmp_path: Path) -> None:
    assert rollout_cli.kubeconfig_namespace(str(_kubeconfig(tmp_path, "ml")), None) == "ml"
    assert rollout_cli.kubeconfig_namespace(str(_kubeconfig(tmp_path, None)), None) == "default"
    assert rollout_cli.kubeconfig_namespace(str(_kubeconfig(tmp_path, None)), "other") == "elsewhere"


def test_unknown_context_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _kubeconfig(tmp_path, None)
    assert main(["status", "demo", "--kubeconfig", str(path), "--context", "nope"]) == 2
    err = capsys.readouterr().err
    assert err == f"tritium status: context 'nope' not found in {path}\n"


@pytest.mark.parametrize("command", COMMANDS)
def test_missing_kubeconfig_says_it_does_not_exist(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "demo", "--kubeconfig", str(tmp_path / "absent")]) == 2
    assert capsys.readouterr().err == f"tritium {command}: kubeconfig {tmp_path / 'absent'} does not exist\n"


@pytest.mark.parametrize("command", COMMANDS)
def test_kubeconfig_that_is_not_yaml_is_one_line_exit_2(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kc"
    path.write_text("garbage: [\n")
    for namespace in ([], ["-n", "ml"]):  # read for the context's namespace, or only for the client
        assert main([command, "demo", *namespace, "--kubeconfig", str(path)]) == 2
        captured = capsys.readouterr()
        assert captured.err == (f"tritium {command}: kubeconfig {path} is not valid YAML at line 2, column 1: while "
                                "parsing a flow node, expected the node content, but found '<stream end>'\n")
        assert captured.out == ""


def test_kubeconfig_from_env_that_is_not_a_mapping_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kc"
    path.write_text("- a\n")
    monkeypatch.setenv("KUBECONFIG", str(path))
    assert main(["status", "demo"]) == 2
    assert capsys.readouterr().err == (
        f"tritium status: kubeconfig {path} is not a kubeconfig: a YAML list, not a mapping\n")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: a connection to it is refused


@pytest.mark.parametrize("command", COMMANDS)
def test_unreachable_api_server_is_one_short_line_exit_1(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _closed_port()
    path = _kubeconfig(tmp_path, None)
    path.write_text(path.read_text().replace("https://127.0.0.1:1", f"https://127.0.0.1:{port}"))
    assert main([command, "demo", "--kubeconfig", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.err == (
        f"tritium {command}: cannot reach the Kubernetes API at https://127.0.0.1:{port}: connection refused\n")
    assert captured.out == ""


def test_connection_failure_keeps_the_root_cause() -> None:
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as root:
            raise RuntimeError("<urllib3.connection.HTTPSConnection object at 0x7f>: Failed to establish") from root
    except RuntimeError as wrapped:
        assert rollout_cli.connection_failure(wrapped) == "connection refused"
    assert rollout_cli.connection_failure(TimeoutError("timed out")) == "no answer within 15 s"


@pytest.mark.parametrize("namespace", ["Bad_NS!", "ML", "-ml", "ml-", "a" * 64, "m.l", ""])
@pytest.mark.parametrize("command", COMMANDS)
def test_a_namespace_that_is_not_a_dns_label_is_refused_exit_2(
    command: str, namespace: str, cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.undo()  # the real connect, which checks -n before it reads any kubeconfig
    assert main([command, "iris", f"--namespace={namespace}", "--kubeconfig", "/nonexistent"]) == 2
    assert capsys.readouterr().err == (
        f"tritium {command}: invalid namespace {namespace!r}: a namespace is at most 63 lowercase letters, digits "
        "and '-', starting and ending with a letter or digit\n")


@pytest.mark.parametrize("namespace", ["a", "ml", "team-2", "0", "a" * 63])
def test_dns_label_namespaces_pass(namespace: str) -> None:
    assert rollout_cli.check_namespace(namespace) == namespace


def test_kubeconfig_env_is_used_when_no_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path, "from-env")))
    args = build_parser().parse_args(["status", "demo"])
    cluster, namespace = rollout_cli.connect(args)
    assert namespace == "from-env"
    assert isinstance(cluster, rollout_cli.KubeCluster)
    cluster.close()


# -- the patches ------------------------------------------------------------------------------


def test_promote_names_the_canary(cluster: FakeCluster, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["promote", "demo"]) == 0
    assert cluster.patches == [("default", "demo", {"metadata": {"annotations": {PROMOTE: "bbbb222222"}}})]
    assert capsys.readouterr().out == "promote requested: revision bbbb222222 of default/demo\n"
    assert cluster.closed


def test_abort_names_the_canary(cluster: FakeCluster, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["abort", "demo", "-n", "ml"]) == 0
    assert cluster.patches == [("ml", "demo", {"metadata": {"annotations": {ABORT: "bbbb222222"}}})]
    assert capsys.readouterr().out == "abort requested: revision bbbb222222 of ml/demo\n"


def test_pause_sets_true_and_resume_removes_it(cluster: FakeCluster, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pause", "demo"]) == 0
    assert main(["resume", "demo"]) == 0
    assert [body for _, _, body in cluster.patches] == [
        {"metadata": {"annotations": {PAUSED: "true"}}},
        {"metadata": {"annotations": {PAUSED: None}}},  # null: a merge patch removes the key
    ]
    assert capsys.readouterr().out == "pause requested: default/demo\nresume requested: default/demo\n"


def test_resume_when_not_paused_is_one_line_exit_1(cluster: FakeCluster, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["resume", "demo"]) == 1
    assert cluster.patches == []
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "tritium resume: default/demo is not paused, nothing to resume\n"


def test_resume_of_a_rollout_waiting_for_a_person_says_what_it_waits_for(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.obj = isvc({**CANARY_STATUS, "rollout": {"phase": "Paused", "reason": "Inconclusive"}})
    cluster.obj["metadata"]["annotations"] = {PAUSED: "false"}
    assert main(["resume", "demo"]) == 1
    assert cluster.patches == []
    assert capsys.readouterr().err == ("tritium resume: default/demo is not paused, nothing to resume "
                                       "(its rollout waits for promote or abort: Inconclusive)\n")


def test_resume_patch_serialises_to_null() -> None:
    assert json.dumps(rollout_cli.annotation_patch({PAUSED: None})) == (
        '{"metadata": {"annotations": {"serving.tritium.dev/paused": null}}}')


@pytest.mark.parametrize("command", ["promote", "abort"])
def test_no_canary_in_flight_is_one_line_exit_1(
    command: str, cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.obj = isvc({"stableRevision": "aaaa111111", "rollout": {"phase": "Promoted", "revision": "aaaa111111"}})
    assert main([command, "demo"]) == 1
    assert cluster.patches == []
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"tritium {command}: no canary in flight for default/demo "
                            f"(stable revision aaaa111111): nothing to {command}\n")


@pytest.mark.parametrize("command", COMMANDS)
def test_missing_service_is_one_line_exit_1(
    command: str, cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.obj = None
    assert main([command, "x"]) == 1
    assert cluster.patches == []
    assert capsys.readouterr().err == f"tritium {command}: inferenceservice default/x not found\n"


@pytest.mark.parametrize("command", COMMANDS)
def test_missing_namespace_is_named_exit_1(
    command: str, cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.obj, cluster.namespace_found = None, False
    assert main([command, "iris", "-n", "nope"]) == 1
    assert capsys.readouterr().err == (
        f"tritium {command}: inferenceservice nope/iris not found: namespace nope does not exist\n")


def test_forbidden_namespace_read_keeps_the_plain_not_found(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.obj, cluster.namespace_found = None, None
    assert main(["status", "iris", "-n", "ml"]) == 1
    assert capsys.readouterr().err == "tritium status: inferenceservice ml/iris not found\n"


@pytest.mark.parametrize(("status", "found"), [(404, False), (403, None), (200, True)])
def test_kube_cluster_namespace_exists(status: int, found: bool | None, monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    class CoreV1Api:
        def __init__(self, api_client: Any) -> None:
            pass

        def read_namespace(self, name: str, **kwargs: Any) -> None:
            if status != 200:
                raise ApiException(status=status, reason="x")

    monkeypatch.setattr(client, "CoreV1Api", CoreV1Api)
    cluster = rollout_cli.KubeCluster.__new__(rollout_cli.KubeCluster)
    cluster._api_client = None
    assert cluster.namespace_exists("ml") is found


def test_pause_without_a_canary_still_holds_the_next_rollout(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.obj = isvc({"stableRevision": "aaaa111111"})
    assert main(["pause", "demo"]) == 0
    assert cluster.patches[0][2] == {"metadata": {"annotations": {PAUSED: "true"}}}
    assert capsys.readouterr().out == ("paused default/demo: no canary in flight, so the next rollout waits at its "
                                       "first step until resume\n")


class _ApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        self.status, self.reason, self.body = status, "Not Found" if status == 404 else "Forbidden", body


def test_not_found_tells_a_missing_object_from_a_missing_api() -> None:
    status_404 = json.dumps({"kind": "Status", "reason": "NotFound",
                             "details": {"name": "x", "kind": "inferenceservices"}})
    assert rollout_cli._is_object_not_found(_ApiError(404, status_404))
    assert not rollout_cli._is_object_not_found(_ApiError(404, "404 page not found"))
    forbidden = json.dumps({"kind": "Status", "message": 'inferenceservices "x" is forbidden: User "u" cannot get'})
    assert rollout_cli._api_error(_ApiError(403, forbidden)) == (
        'HTTP 403 Forbidden: inferenceservices "x" is forbidden: User "u" cannot get')


# -- the tables -------------------------------------------------------------------------------


def test_table_aligns_columns_without_trailing_blanks() -> None:
    assert rollout_cli.table([("A", "BB", "C"), ("long", "x", ""), ("m", "n", "last\ncell")]) == (
        "A     BB  C\n"
        "long  x\n"
        "m     n   last cell"
    )


def test_revisions_table_gives_roles_weights_and_replicas() -> None:
    obj = isvc({**CANARY_STATUS, "rollout": {**CANARY_STATUS["rollout"], "previousRevision": "cccc333333"}})
    deployments = [deployment("bbbb222222", 1, None), deployment("aaaa111111", 3, 3), deployment("dddd444444", 2, 1)]
    assert rollout_cli.revision_rows(obj, deployments) == [
        ("REVISION", "ROLE", "WEIGHT", "REPLICAS"),
        ("aaaa111111", "stable", "80 %", "3/3"),
        ("bbbb222222", "canary", "20 %", "1/0"),
        ("cccc333333", "previous", "0 %", "-"),  # its Deployment already gone
        ("dddd444444", "-", "-", "2/1"),  # a Deployment status does not mention
    ]


def test_without_a_canary_the_stable_revision_takes_everything() -> None:
    obj = isvc({"stableRevision": "aaaa111111", "canaryWeight": None,
                "rollout": {"phase": "RolledBack", "revision": "bbbb222222", "rejectedRevision": "bbbb222222"}})
    rows = rollout_cli.revision_rows(obj, [deployment("aaaa111111", 2, 2), deployment("bbbb222222", 1, 1)])
    assert rows[1:] == [("aaaa111111", "stable", "100 %", "2/2"), ("bbbb222222", "rejected", "0 %", "1/1")]


def test_status_prints_the_three_tables(cluster: FakeCluster, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.items = [deployment("aaaa111111", 3, 3), deployment("bbbb222222", 1, 1)]
    cluster.obj["metadata"]["annotations"] = {PAUSED: "true"}  # type: ignore[index]
    assert main(["status", "demo"]) == 0
    assert capsys.readouterr().out == (
        "inferenceservice default/demo: Ready, 4/4 replicas ready (paused by a person: tritium resume)\n"
        "\n"
        "REVISION    ROLE    WEIGHT  REPLICAS\n"
        "aaaa111111  stable  80 %    3/3\n"
        "bbbb222222  canary  20 %    1/1\n"
        "\n"
        "PHASE   REVISION    STEP  FAILURES  REASON    MESSAGE\n"
        "Canary  bbbb222222  2/3   1         NextStep  revision bbbb222222 passed step 1: now 20 % of traffic\n"
        "\n"
        "TIME                  REVISION    RESULT        REQUESTS  ERROR RATIO  P99 MS  MESSAGE\n"
        "2025-01-01T10:01:00Z  bbbb222222  Failed        120       0.05         41.5    error ratio 0.05 > 0.01\n"
        "2025-01-01T10:02:00Z  bbbb222222  Inconclusive  3         -            -       3 requests < 50\n"
    )
    assert cluster.patches == []


def test_status_of_a_service_without_status_yet() -> None:
    text = rollout_cli.format_status(isvc(None), [])
    assert text == ("inferenceservice default/demo: no status yet\n\n"
                    "REVISION  ROLE  WEIGHT  REPLICAS\n\n"
                    "rollout: none yet\n\n"
                    "analysis: no measurements yet")


def test_status_of_a_failed_service_says_why() -> None:
    message = "spec.autoscaling.scaleUpSeconds: not supported yet\n(remove it)"
    obj = isvc({"phase": "Failed", "replicas": 0, "readyReplicas": 0, "conditions": [
        {"type": "Progressing", "status": "False", "reason": "Other", "message": "x"},
        {"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": message}]})
    assert rollout_cli.format_status(obj, []).split("\n\n")[0] == (
        "inferenceservice default/demo: Failed, 0/0 replicas ready\n"
        "why: InvalidSpec: spec.autoscaling.scaleUpSeconds: not supported yet (remove it)")


@pytest.mark.parametrize(("condition", "why"), [
    ({"type": "Ready", "status": "True", "reason": "Ready", "message": "all replicas ready"}, None),
    ({"type": "Ready", "status": "Unknown"}, "Ready=Unknown"),
    ({"type": "Ready", "status": "False", "reason": "Starting"}, "Starting"),
])
def test_why_is_the_ready_condition_when_it_is_not_true(condition: dict[str, Any], why: str | None) -> None:
    assert rollout_cli.why_not_ready(isvc({"conditions": [condition]})) == why
    assert rollout_cli.why_not_ready(isvc({})) is None


def test_status_reads_what_the_rollout_state_writes() -> None:
    """The tables follow RolloutState.to_status, the operator's own writer of these fields."""
    from tritium.rollout.analysis import Verdict
    from tritium.rollout.phases import Phase
    from tritium.rollout.state import AnalysisResult, RolloutState

    state = RolloutState(stable="aaaa111111", revision="bbbb222222", phase=Phase.PAUSED, weight=5, step=0,
                         reason="PausedByPerson", message="held", started_at=1.7e9,
                         history=(AnalysisResult(1.7e9, "bbbb222222", Verdict.PASSED, 80, 0.0, 12.25, "ok"),))
    status = {k: v for k, v in state.to_status().items() if v is not None}
    obj = isvc(status)
    assert rollout_cli.revision_rows(obj, [])[1:] == [("aaaa111111", "stable", "95 %", "-"),
                                                      ("bbbb222222", "canary", "5 %", "-")]
    assert rollout_cli.rollout_rows(obj) == [("PHASE", "REVISION", "STEP", "FAILURES", "REASON", "MESSAGE"),
                                             ("Paused", "bbbb222222", "1/1", "0", "PausedByPerson", "held")]
    assert rollout_cli.analysis_rows(obj)[1] == (  # type: ignore[index]
        "2023-11-14T22:13:20Z", "bbbb222222", "Passed", "80", "0", "12.25", "ok")


def test_a_missing_crd_is_not_a_missing_object() -> None:
    from kubernetes.client.rest import ApiException

    class Custom:
        def get_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> Any:
            error = ApiException(status=404, reason="Not Found")
            error.body = "404 page not found"
            raise error

    cluster = rollout_cli.KubeCluster.__new__(rollout_cli.KubeCluster)
    cluster._custom = Custom()
    with pytest.raises(rollout_cli.CommandFailed, match=r"does not serve inferenceservices\.serving\.tritium"):
        cluster.get("default", "demo")
