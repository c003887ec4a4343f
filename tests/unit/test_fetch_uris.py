"""How fetch-model reads a storageUri: which scheme, which path, and what is refused up front."""

from __future__ import annotations

import pytest

from tritium.cli import UsageError
from tritium.dataplane.fetch import file_uri_path, parse_source
from tritium.dataplane.model_archive import archive_kind


@pytest.mark.parametrize(
    ("uri", "protocol", "path"),
    [
        ("/models/iris", "file", "/models/iris"),
        ("file:///models/iris", "file", "/models/iris"),
        ("file://localhost/models/iris", "file", "/models/iris"),
        ("file://./model", "file", "./model"),
        ("file://../shared/model", "file", "../shared/model"),
        ("file:///with%20space", "file", "/with space"),
        ("pvc://claim/team/iris", "file", "/mnt/pvc/claim/team/iris"),
        ("pvc://claim", "file", "/mnt/pvc/claim/"),
        ("s3://bucket/models/iris/", "s3", "bucket/models/iris"),
        ("gs://bucket", "gs", "bucket"),
        ("https://host/m/iris.tar.gz?sig=1", "https", "https://host/m/iris.tar.gz?sig=1"),
    ],
)
def test_parse_source(uri: str, protocol: str, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITIUM_PVC_ROOT", raising=False)
    source = parse_source(uri)
    assert (source.protocol, source.path) == (protocol, path)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("ftp://h/x", "unsupported scheme ftp://"),
        ("iris", "unsupported scheme (none)"),
        ("s3://", "no bucket"),
        ("http:///x.tgz", "no host"),
        ("https://host", "must name a file"),
        ("pvc:///x", "no claim name"),
        ("file://host/x", "not host 'host'"),
        ("file://", "no path"),
    ],
)
def test_refused(uri: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_source(uri)


def test_pvc_root_override() -> None:
    assert parse_source("pvc://c/m", pvc_root="/tmp/pvcs").path == "/tmp/pvcs/c/m"


def test_file_uri_path_rejects_other_schemes() -> None:
    with pytest.raises(UsageError):
        file_uri_path("s3://b/k")


@pytest.mark.parametrize(
    ("name", "kind"),
    [("m.tar.gz", ".tar.gz"), ("M.TGZ", ".tgz"), ("m.tar", ".tar"), ("m.zip", ".zip"), ("model.onnx", None)],
)
def test_archive_kind(name: str, kind: str | None) -> None:
    assert archive_kind(name) == kind
