"""`tritium fetch-model` against real sources: local directories, archives, a PVC root and HTTP.

The HTTP source is a real http.server on a loopback port; one path needs a bearer token, to
show that denied access is reported as such rather than as a missing object.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tritium.cli import main

TOKEN = "s3cret"


def _model_dir(root: Path, name: str = "toy") -> Path:
    model = root / name
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text("# a python model\n")
    (model / "config.pbtxt").write_text('name: "from-source"\n')
    return model


def _tar(src: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname=src.name)
    return archive


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    rc = main(["fetch-model", *args])
    captured = capsys.readouterr()
    return rc, captured.err.strip()


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/private/") and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.send_error(403, "Forbidden")
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def http_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("http")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_directory_copy_writes_the_rendered_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _model_dir(tmp_path / "src")
    config = tmp_path / "config.pbtxt"
    config.write_text('name: "toy"\nbackend: "python"\n')
    rc, err = _run(capsys, f"file://{src}", str(tmp_path / "repo" / "toy"), "--config", str(config))
    assert rc == 0, err
    assert (tmp_path / "repo/toy/1/model.py").read_text() == "# a python model\n"
    assert (tmp_path / "repo/toy/config.pbtxt").read_text() == config.read_text()


def test_bare_path_relative_file_uri_and_pvc(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    src = _model_dir(tmp_path / "src")
    assert _run(capsys, str(src), str(tmp_path / "a"))[0] == 0
    monkeypatch.chdir(tmp_path)
    assert _run(capsys, "file://./src/toy", str(tmp_path / "b"))[0] == 0
    monkeypatch.setenv("TRITIUM_PVC_ROOT", str(tmp_path / "pvc"))
    _model_dir(tmp_path / "pvc" / "models-claim" / "team")
    assert _run(capsys, "pvc://models-claim/team/toy", str(tmp_path / "c"))[0] == 0
    for out in "abc":
        assert (tmp_path / out / "1" / "model.py").is_file()


def test_archives_and_single_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _model_dir(tmp_path / "src")
    archive = _tar(src, tmp_path / "toy.tar.gz")
    assert _run(capsys, str(archive), str(tmp_path / "t"))[0] == 0
    assert (tmp_path / "t/1/model.py").is_file(), "the wrapping directory is dropped"

    zipped = tmp_path / "toy.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.write(src / "1" / "model.py", "1/model.py")
    assert _run(capsys, str(zipped), str(tmp_path / "z"))[0] == 0
    assert (tmp_path / "z/1/model.py").is_file()

    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07")
    assert _run(capsys, str(onnx), str(tmp_path / "o"))[0] == 0
    assert (tmp_path / "o/1/model.onnx").read_bytes() == b"\x08\x07"


def test_sha256(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _model_dir(tmp_path / "src")
    archive = _tar(src, tmp_path / "toy.tgz")
    good = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert _run(capsys, str(archive), str(tmp_path / "ok"), "--sha256", good)[0] == 0

    rc, err = _run(capsys, str(archive), str(tmp_path / "bad"), "--sha256", "0" * 64)
    assert rc == 1 and "sha256 mismatch" in err and good in err
    assert not (tmp_path / "bad").exists(), "nothing is installed when the checksum fails"

    rc, err = _run(capsys, str(src), str(tmp_path / "dir"), "--sha256", good)
    assert rc == 2 and "directory" in err
    rc, err = _run(capsys, str(archive), str(tmp_path / "x"), "--sha256", "XYZ")
    assert rc == 2 and "64 lowercase hex" in err


def test_refetch_replaces_a_previous_partial_fetch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _model_dir(tmp_path / "src")
    dest = tmp_path / "repo" / "toy"
    (dest / "2").mkdir(parents=True)
    (dest / "2" / "stale.py").write_text("")
    assert _run(capsys, str(src), str(dest))[0] == 0
    assert sorted(p.name for p in dest.iterdir()) == ["1", "config.pbtxt"]
    assert [p.name for p in dest.parent.iterdir()] == ["toy"], "no staging directory is left behind"


def test_bad_input_and_missing_objects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        ("ftp://host/model.tgz", 2, "unsupported scheme ftp://"),
        ("model", 2, "unsupported scheme (none)"),
        ("file://otherhost/x", 2, "not host 'otherhost'"),
        ("s3:///key", 2, "no bucket"),
        ("pvc:///x", 2, "no claim name"),
        (f"file://{tmp_path}/missing", 1, "no such object"),
    ]
    for uri, code, message in cases:
        rc, err = _run(capsys, uri, str(tmp_path / "out"))
        assert (rc, message in err) == (code, True), (uri, err)
        assert len(err.splitlines()) == 1, err
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, err = _run(capsys, str(empty), str(tmp_path / "out"))
    assert rc == 1 and "empty" in err
    rc, err = _run(capsys, str(empty), str(tmp_path / "out"), "--config", str(tmp_path / "nope.pbtxt"))
    assert rc == 2 and "nope.pbtxt" in err


def test_archive_escaping_the_target_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    rc, err = _run(capsys, str(evil), str(tmp_path / "repo" / "m"))
    assert rc == 1, err
    assert not (tmp_path / "escaped.txt").exists()


def test_http_archive(http_root: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, root = http_root
    src = _model_dir(tmp_path / "src")
    archive = _tar(src, root / "toy.tar.gz")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    rc, err = _run(capsys, f"{base}/toy.tar.gz", str(tmp_path / "h"), "--sha256", digest)
    assert rc == 0, err
    assert (tmp_path / "h/1/model.py").read_text() == "# a python model\n"


def test_http_errors_and_token(http_root: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    base, root = http_root
    (root / "private").mkdir(exist_ok=True)
    _tar(_model_dir(tmp_path / "src"), root / "private" / "toy.tgz")

    rc, err = _run(capsys, f"{base}/missing.tar.gz", str(tmp_path / "m"))
    assert rc == 1 and "no such object" in err, err
    rc, err = _run(capsys, f"{base}/private/toy.tgz", str(tmp_path / "p"))
    assert rc == 1 and "access denied" in err, err
    rc, err = _run(capsys, f"{base}/", str(tmp_path / "p"))
    assert rc == 2 and "must name a file" in err, err

    monkeypatch.setenv("TRITIUM_HTTP_TOKEN", TOKEN)
    rc, err = _run(capsys, f"{base}/private/toy.tgz", str(tmp_path / "p"))
    assert rc == 0, err
    assert (tmp_path / "p/1/model.py").is_file()
