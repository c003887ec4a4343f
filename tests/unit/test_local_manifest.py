"""Local mode's reading of a manifest and its wiring: same commands and files as the pod."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritium import pod_layout
from tritium.api.resource import load_inference_services
from tritium.cli import UsageError
from tritium.local import runner
from tritium.local.manifest import load_manifest, resolve_paths
from tritium.render import configmap
from tritium.render.commands import Wiring, fetch_command, gateway_command, stage_command, triton_command

MANIFEST = """
apiVersion: serving.tritium.dev/v1alpha1
kind: InferenceService
metadata: {name: demo}
spec:
  model: {name: demo, storageUri: "URI", format: python}
  preprocess: {script: {path: stages/pre.py}}
  postprocess: {builtin: {format: json}}
"""


def _write(tmp_path: Path, uri: str = "file://./model", extra: str = "") -> Path:
    (tmp_path / "stages").mkdir(exist_ok=True)
    (tmp_path / "stages" / "pre.py").write_text("")
    path = tmp_path / "isvc.yaml"
    path.write_text(MANIFEST.replace("URI", uri) + extra)
    return path


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file://./model", "file://{base}/model"),
        ("file://../shared/model", "file://{parent}/shared/model"),
        ("file:///abs/model", "file:///abs/model"),
        ("/abs/model", "/abs/model"),
        ("s3://bucket/model", "s3://bucket/model"),
        ("pvc://claim/model", "pvc://claim/model"),
    ],
)
def test_storage_uri_resolution(tmp_path: Path, uri: str, expected: str) -> None:
    isvc = load_manifest(str(_write(tmp_path, uri)))
    assert isvc.spec.model.storage_uri == expected.format(base=tmp_path, parent=tmp_path.parent)


def test_script_paths_become_absolute(tmp_path: Path) -> None:
    isvc = load_manifest(str(_write(tmp_path)))
    assert isvc.spec.preprocess is not None and isvc.spec.preprocess.script is not None
    assert isvc.spec.preprocess.script.path == str(tmp_path / "stages" / "pre.py")


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unsupported scheme ftp://"):
        load_manifest(str(_write(tmp_path, "ftp://h/m")))
    with pytest.raises(UsageError, match=r"missing\.yaml: No such file"):
        load_manifest(str(tmp_path / "missing.yaml"))
    path = _write(tmp_path)
    path.write_text(path.read_text().replace("stages/pre.py", "stages/nope.py"))
    with pytest.raises(UsageError, match=r"script.path: no such file .*nope.py"):
        load_manifest(str(path))
    path.write_text(MANIFEST.replace("URI", "file://./m").replace("path: stages/pre.py", "configMapRef: {name: x}"))
    with pytest.raises(UsageError, match="configMapRef needs a cluster"):
        load_manifest(str(path))


def test_several_services_need_a_name(tmp_path: Path) -> None:
    path = _write(tmp_path)
    text = path.read_text()
    path.write_text(text + "---\n" + text.replace("name: demo}", "name: other}", 1))
    with pytest.raises(UsageError, match=r"several InferenceServices \(demo, other\)"):
        load_manifest(str(path))
    assert load_manifest(str(path), name="other").name == "other"
    with pytest.raises(UsageError, match="no InferenceService named 'third'"):
        load_manifest(str(path), name="third")


def test_resolve_keeps_everything_else(tmp_path: Path) -> None:
    isvc = load_inference_services(MANIFEST.replace("URI", "file://./model"))[0]
    resolved = resolve_paths(isvc, tmp_path)
    before, after = isvc.to_wire(), resolved.to_wire()
    before["spec"]["model"].pop("storageUri")
    after["spec"]["model"].pop("storageUri")
    before["spec"]["preprocess"]["script"].pop("path")
    after["spec"]["preprocess"]["script"].pop("path")
    assert before == after


def _local(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Wiring:
    monkeypatch.setattr(runner, "find_tritonserver", lambda: Path("/opt/tritonserver"))
    monkeypatch.setattr(runner, "backend_args", lambda: ["--backend-directory=/opt/backends"])
    return runner.local_wiring(tmp_path, gateway_port=18080)


def test_local_commands_are_the_pods_with_other_ports_and_paths(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    isvc = load_manifest(str(_write(tmp_path)))
    # The one deliberate difference: the gateway (and Triton's metrics) listen on loopback only.
    local, pod = _local(monkeypatch, tmp_path / "work"), Wiring(gateway_host="127.0.0.1")
    assert local.gateway_port == 18080 and local.gateway_host == "127.0.0.1"
    ports = [local.gateway_port, local.gateway_metrics_port, local.pre_port, local.post_port,
             local.triton_http_port, local.triton_grpc_port, local.triton_metrics_port]
    assert len(set(ports)) == len(ports), "every port is distinct"
    # Mapping local values back to the pod's gives the pod's command lines, token for token.
    back = {str(getattr(local, f)): str(getattr(pod, f)) for f in
            ("spec_file", "triton_config_file", "model_repository", "gateway_port",
             "gateway_metrics_port", "pre_port", "post_port", "triton_http_port", "triton_grpc_port",
             "triton_metrics_port", "traffic_file", "socket_dir", "tritonserver")}

    def to_pod(cmd: list[str]) -> list[str]:
        out = []
        for token in cmd:
            for local_value, pod_value in sorted(back.items(), key=lambda kv: -len(kv[0])):
                token = token.replace(local_value, pod_value)
            out.append(token)
        return out

    assert to_pod(fetch_command(isvc, local)) == fetch_command(isvc, pod)
    assert to_pod(stage_command("pre", local)) == stage_command("pre", pod)
    assert to_pod(gateway_command(isvc, local)) == gateway_command(isvc, pod)
    local_triton = triton_command(isvc, local)
    assert "--backend-directory=/opt/backends" in local_triton
    local_triton.remove("--backend-directory=/opt/backends")
    assert to_pod(local_triton) == triton_command(isvc, pod)


def test_config_files_are_the_configmap_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isvc = load_manifest(str(_write(tmp_path)))
    wiring = _local(monkeypatch, tmp_path / "work")
    revision = runner.write_config(isvc, wiring)
    data = configmap.render(isvc, revision)["data"]
    assert Path(wiring.spec_file).read_text() == data[pod_layout.SPEC_FILE]
    assert Path(wiring.triton_config_file).read_text() == data[pod_layout.TRITON_CONFIG_FILE]
    spec = json.loads(Path(wiring.spec_file).read_text())["spec"]
    assert spec["preprocess"]["script"]["path"] == str(tmp_path / "stages" / "pre.py")
