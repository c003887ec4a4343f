"""fetch-model's remote path (s3://, gs://) on an in-memory fsspec filesystem, and its error lines.

The real drivers (s3fs, gcsfs) cannot reach a bucket from here; the logic around them — prefix
copies, single objects, checksums, and turning driver exceptions into one clear line — is the
same for every fsspec filesystem, so it is tested on fsspec's memory filesystem.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fsspec.implementations.memory import MemoryFileSystem

from tritium.dataplane import fetch
from tritium.dataplane.fetch import FetchError, fetch_model


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryFileSystem]:
    fs = MemoryFileSystem()
    fs.store.clear()
    fs.pseudo_dirs.clear()
    fs.pseudo_dirs.append("")
    monkeypatch.setattr(fetch, "_filesystem", lambda source: fs)
    yield fs
    fs.store.clear()


def _archive() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"# model\n"
        info = tarfile.TarInfo("toy/1/model.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_prefix_is_copied_recursively(bucket: MemoryFileSystem, tmp_path: Path) -> None:
    bucket.pipe({"/models/team/toy/1/model.py": b"# v1\n", "/models/team/toy/2/model.py": b"# v2\n",
                 "/models/team/toy-other/1/model.py": b"# not this one\n"})
    dest = fetch_model("s3://models/team/toy", tmp_path / "toy", config_text='name: "toy"\n')
    assert (dest / "1" / "model.py").read_bytes() == b"# v1\n"
    assert (dest / "2" / "model.py").read_bytes() == b"# v2\n"
    assert sorted(p.name for p in dest.iterdir()) == ["1", "2", "config.pbtxt"]


def test_single_archive_object_with_checksum(bucket: MemoryFileSystem, tmp_path: Path) -> None:
    data = _archive()
    bucket.pipe("/models/toy.tgz", data)
    dest = fetch_model("gs://models/toy.tgz", tmp_path / "toy", sha256=hashlib.sha256(data).hexdigest())
    assert (dest / "1" / "model.py").read_bytes() == b"# model\n"
    with pytest.raises(FetchError, match="sha256 mismatch"):
        fetch_model("gs://models/toy.tgz", tmp_path / "bad", sha256="0" * 64)


def test_missing_object(bucket: MemoryFileSystem, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"^s3://models/nothing: no such object$"):
        fetch_model("s3://models/nothing", tmp_path / "x")


class _Denied(Exception):
    pass


class NoCredentialsError(Exception):
    """Named like botocore's: recognised by name, so botocore need not be imported."""


class _Failing:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def _strip_protocol(self, path: str) -> str:
        return path

    def isdir(self, path: str) -> bool:
        raise self.exc

    def get_file(self, *args: Any) -> None:
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (PermissionError("AccessDenied"), "access denied (PermissionError)"),
        (NoCredentialsError("Unable to locate credentials"), "access denied (NoCredentialsError)"),
        (type("HttpError", (Exception,), {"code": 403})("Forbidden"), "access denied (HttpError)"),
        (FileNotFoundError("models/x"), "no such object"),
        (ConnectionError("cannot connect to host\nsecond line"), "cannot connect to host"),
    ],
)
def test_driver_errors_become_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                       exc: Exception, message: str) -> None:
    monkeypatch.setattr(fetch, "_filesystem", lambda source: _Failing(exc))
    with pytest.raises(FetchError) as info:
        fetch_model("s3://models/x", tmp_path / "x")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_driver_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import fsspec

    def no_driver(protocol: str, **kwargs: Any) -> None:
        raise ImportError("Install s3fs to access S3")

    monkeypatch.setattr(fsspec, "filesystem", no_driver)
    with pytest.raises(FetchError, match=r"s3:// needs the s3fs package"):
        fetch_model("s3://models/x", tmp_path / "x")


def test_gcs_credentials_json_must_parse(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS_JSON", "{not json")
    with pytest.raises(FetchError, match="GOOGLE_APPLICATION_CREDENTIALS_JSON is not valid JSON"):
        fetch_model("gs://models/x", tmp_path / "x")
