"""`tritium fetch-model URI DIR`: copy one model into a Triton model repository.

The pod's init container runs it (render/commands.py fetch_command) and local mode runs the very
same command, so what Triton finds in its repository does not depend on where it runs.

Layouts a storageUri may point at:

- a model directory (version subdirectories, e.g. ``1/model.py``) — file://, pvc://, a bare
  absolute path, s3:// and gs:// prefixes: copied recursively;
- a single archive (.tar.gz, .tgz, .tar, .zip) of that directory — any scheme, and the only
  directory-like layout for http(s)://, because an HTTP server has no portable directory
  listing: unpacked (one wrapping top-level directory is dropped);
- a single model file (e.g. model.onnx) — any scheme: placed as ``DIR/1/<name>``.

``--config`` writes the rendered config.pbtxt over whatever the source carried: the spec, not
the bucket, decides how Triton schedules the model. ``--sha256`` checks a single-object source
before it is unpacked. Exit codes: 2 for bad input (unsupported scheme, malformed URI, unusable
flags), 1 when the fetch itself fails (missing object, denied access, checksum mismatch).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from tritium import pod_layout
from tritium.cli import UsageError
from tritium.dataplane.model_archive import ArchiveError, install_file

EXIT_FETCH_FAILED = 1
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
# Tests and local mode may mount claims elsewhere than the pod does.
PVC_ROOT_ENV = "TRITIUM_PVC_ROOT"
# Optional bearer token for http(s) sources (a key of spec.model.storageSecretName).
HTTP_TOKEN_ENV = "TRITIUM_HTTP_TOKEN"
_REMOTE_DRIVERS = {"s3": "s3fs", "gs": "gcsfs", "http": "aiohttp", "https": "aiohttp"}


class FetchError(Exception):
    """The source could not be fetched (exit 1): the message names the URI and the reason."""


@dataclass(frozen=True)
class Source:
    """Where a model comes from, resolved: a local path, or a remote fsspec protocol + path."""

    uri: str
    protocol: str  # "file", "s3", "gs", "http" or "https"
    path: str  # local path; "bucket/key" for s3/gs; the full URL for http(s)

    @property
    def is_local(self) -> bool:
        return self.protocol == "file"


def file_uri_path(uri: str) -> str:
    """The filesystem path of a file:// URI or bare path; relative paths stay relative.

    ``file:///abs``, ``file://localhost/abs`` and ``/abs`` are absolute; ``file://./rel`` and
    ``file://../rel`` are relative (to the working directory here; local mode resolves them
    against the manifest's directory before it runs anything).
    """
    if uri.startswith("/"):
        return uri
    parsed = urlparse(uri)
    if parsed.scheme.lower() != "file":
        raise UsageError(f"{uri!r} is not a file:// URI")
    if parsed.netloc in ("", "localhost"):
        path = unquote(parsed.path)
    elif parsed.netloc in (".", ".."):
        path = parsed.netloc + unquote(parsed.path)
    else:
        raise UsageError(
            f"{uri!r}: file:// names a path on this machine, not host {parsed.netloc!r}; "
            "use file:///absolute/path or file://./relative/path"
        )
    if not path:
        raise UsageError(f"{uri!r} has no path")
    return path


def parse_source(uri: str, pvc_root: str | None = None) -> Source:
    """Resolve a storageUri; raise UsageError for what no fetch could ever use."""
    if uri.startswith("/"):
        return Source(uri, "file", uri)
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme == "file":
        return Source(uri, "file", file_uri_path(uri))
    if scheme == "pvc":
        if not parsed.netloc:
            raise UsageError(f"{uri!r} has no claim name (pvc://CLAIM/path)")
        root = pvc_root or os.environ.get(PVC_ROOT_ENV) or pod_layout.PVC_ROOT
        return Source(uri, "file", os.path.join(root, parsed.netloc, unquote(parsed.path).lstrip("/")))
    if scheme in ("s3", "gs"):
        if not parsed.netloc:
            raise UsageError(f"{uri!r} has no bucket")
        key = parsed.path.strip("/")
        return Source(uri, scheme, f"{parsed.netloc}/{key}" if key else parsed.netloc)
    if scheme in ("http", "https"):
        if not parsed.netloc:
            raise UsageError(f"{uri!r} has no host")
        if not parsed.path.strip("/"):
            raise UsageError(f"{uri!r}: an http(s) source must name a file (an archive or a model file)")
        return Source(uri, scheme, uri)
    shown = f"{scheme}://" if scheme else "(none)"
    raise UsageError(f"unsupported scheme {shown} in {uri!r}; use s3://, gs://, http(s)://, file:// or pvc://")


def _filesystem(source: Source) -> Any:
    """The fsspec filesystem of a remote source, with credentials from the environment."""
    import fsspec

    options: dict[str, Any] = {}
    if source.protocol == "s3":
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("S3_ENDPOINT_URL")
        if endpoint:
            options["client_kwargs"] = {"endpoint_url": endpoint}
    elif source.protocol == "gs":
        raw = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS_JSON")
        if raw:
            try:
                options["token"] = json.loads(raw)
            except ValueError:
                raise FetchError("GOOGLE_APPLICATION_CREDENTIALS_JSON is not valid JSON") from None
    else:
        token = os.environ.get(HTTP_TOKEN_ENV)
        if token:
            options["client_kwargs"] = {"headers": {"Authorization": f"Bearer {token}"}}
    try:
        return fsspec.filesystem(source.protocol, **options)
    except ImportError:
        driver = _REMOTE_DRIVERS[source.protocol]
        raise FetchError(f"{source.protocol}:// needs the {driver} package in this image") from None


def _explain(exc: BaseException, uri: str) -> str:
    """One line saying why a fetch failed, in the user's terms rather than the library's."""
    status = getattr(exc, "status", None) or getattr(exc, "code", None)
    name = type(exc).__name__
    if isinstance(exc, FileNotFoundError) or status == 404:
        return f"{uri}: no such object"
    if (isinstance(exc, PermissionError) or status in (401, 403)
            or name in {"NoCredentialsError", "PartialCredentialsError", "RefreshError", "DefaultCredentialsError"}):
        return f"{uri}: access denied ({name}); check the credentials (spec.model.storageSecretName)"
    if isinstance(exc, IsADirectoryError | NotADirectoryError):
        return f"{uri}: {exc.strerror or exc}"
    detail = str(exc).splitlines()[0] if str(exc) else name
    return f"{uri}: {detail}"


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_sha256(path: Path, expected: str | None, uri: str) -> None:
    if expected is None:
        return
    actual = _sha256_of(path)
    if actual != expected:
        raise FetchError(f"{uri}: sha256 mismatch: expected {expected}, got {actual}")


def _object_name(source: Source) -> str:
    name = os.path.basename(urlparse(source.path).path if source.protocol.startswith("http") else source.path)
    return unquote(name.rstrip("/")) or "model"


def _fetch_local(source: Source, staged: Path, work: Path, sha256: str | None) -> None:
    src = Path(source.path)
    if src.is_dir():
        if sha256:
            raise UsageError(f"--sha256 (spec.model.sha256) checks a single-file model, but {source.uri} is a "
                             "directory")
        shutil.copytree(src, staged, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    elif src.is_file():
        _check_sha256(src, sha256, source.uri)
        install_file(src, staged, src.name)
    else:
        raise FileNotFoundError(source.path)


def _fetch_remote(source: Source, staged: Path, work: Path, sha256: str | None) -> None:
    fs = _filesystem(source)
    is_dir = source.protocol in ("s3", "gs") and fs.isdir(source.path)
    if is_dir:
        if sha256:
            raise UsageError(f"--sha256 (spec.model.sha256) checks a single-file model, but {source.uri} is a "
                             "prefix (directory)")
        # Compare in the filesystem's own path form (some add a root marker).
        prefix = fs._strip_protocol(source.path).rstrip("/") + "/"
        files = [f for f in fs.find(source.path) if f.startswith(prefix)]
        if not files:
            raise FileNotFoundError(source.path)
        for remote in files:
            local = staged / remote[len(prefix):]
            local.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(remote, str(local))
        return
    name = _object_name(source)
    download = work / "download" / name
    download.parent.mkdir()
    fs.get_file(source.path, str(download))
    _check_sha256(download, sha256, source.uri)
    install_file(download, staged, name)


def _replace_contents(staged: Path, dest: Path) -> None:
    """Put the staged model in place; a previous (partial) fetch of a restarted pod is replaced.

    ``dest`` is emptied rather than removed, so that a mount point works as a target too.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.iterdir():
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()
    for child in staged.iterdir():
        child.rename(dest / child.name)


def _summary(dest: Path) -> str:
    files = [p for p in dest.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    return f"{len(files)} files, {size / 1e6:.1f} MB"


def fetch_model(uri: str, dest: str | Path, config_text: str | None = None, sha256: str | None = None,
                pvc_root: str | None = None) -> Path:
    """Fetch the model at ``uri`` into ``dest``; raise UsageError (bad input) or FetchError."""
    if sha256 is not None and not SHA256_PATTERN.match(sha256):
        raise UsageError(f"--sha256 must be 64 lowercase hex digits, got {sha256!r}")
    source = parse_source(uri, pvc_root)
    dest = Path(dest).absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Stage beside the target: same filesystem, so the final move is a rename.
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.fetch-", dir=dest.parent))
    try:
        staged = work / "model"
        staged.mkdir()
        try:
            if source.is_local:
                _fetch_local(source, staged, work, sha256)
            else:
                _fetch_remote(source, staged, work, sha256)
        except (FetchError, UsageError):
            raise
        except ArchiveError as exc:
            raise FetchError(f"{uri}: {exc}") from None
        except Exception as exc:  # any driver's error becomes one clear line
            raise FetchError(_explain(exc, uri)) from None
        if config_text is not None:
            (staged / "config.pbtxt").write_text(config_text)
        if not any(staged.iterdir()):
            raise FetchError(f"{uri}: the model directory is empty")
        _replace_contents(staged, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def cmd_fetch_model(args: argparse.Namespace) -> int:
    config_text = None
    if args.config:
        try:
            config_text = Path(args.config).read_text()
        except OSError as exc:
            raise UsageError(f"--config {args.config}: {exc.strerror or exc}") from None
    try:
        dest = fetch_model(args.uri, args.dir, config_text, args.sha256)
    except FetchError as exc:
        print(f"tritium fetch-model: {exc}", file=sys.stderr)
        return EXIT_FETCH_FAILED
    print(f"fetched {args.uri} -> {dest} ({_summary(dest)})", flush=True)
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "fetch-model", help="copy a model (directory, archive or file) into a Triton model repository",
        description=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("uri", help="s3://, gs://, http(s)://, file://, pvc://CLAIM/path or an absolute path")
    p.add_argument("dir", help="target model directory (REPOSITORY/MODEL_NAME)")
    p.add_argument("--config", help="config.pbtxt to write into the model directory")
    p.add_argument("--sha256", help="expected sha256 of a single-file source (archive or model file)")
    p.set_defaults(func=cmd_fetch_model)
