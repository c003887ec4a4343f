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
