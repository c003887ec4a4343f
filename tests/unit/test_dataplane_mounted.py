"""MountedFile: read, compare, load on change, one warning per distinct problem, a watch that goes on."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from tritium.dataplane.mounted import MountedFile

LOGGER = "tritium.test.mounted"


class Numbers(MountedFile[bytes]):
    """A file holding one integer; anything else is a problem and the last good number stays."""

    _log = logging.getLogger(LOGGER)

    def __init__(self, path: Path) -> None:
        super().__init__(path, "numbers file")
        self.value: int | None = None
        self.loads: list[bytes] = []

    def _load(self, raw: bytes) -> str | None:
        self.loads.append(raw)
        try:
            self.value = int(raw)
        except ValueError:
            return f"{self.name} is not a number: {raw!r}"
        return None


class Retrying(Numbers):
    retry_failed = True


def _kubelet_write(directory: Path, content: bytes, version: int) -> Path:
    """What kubelet does: the new version in a fresh directory, then `..data` swapped onto it."""
    data = directory / f"..v{version}"
    data.mkdir()
    (data / "n").write_bytes(content)
    tmp = directory / "..data_tmp"
    tmp.symlink_to(data.name)
    os.replace(tmp, directory / "..data")
    visible = directory / "n"
    if not visible.is_symlink():
        visible.symlink_to("..data/n")
    return visible


def test_unchanged_bytes_are_not_parsed_again_and_a_symlink_swap_is_seen(tmp_path: Path) -> None:
    path = _kubelet_write(tmp_path, b"1", 1)
    numbers = Numbers(path)
    assert numbers.poll() is True and numbers.value == 1
    assert numbers.poll() is False and numbers.poll() is False
    assert numbers.loads == [b"1"]
    _kubelet_write(tmp_path, b"2", 2)
    assert numbers.poll() is True and numbers.value == 2
    assert numbers.loads == [b"1", b"2"]


def test_a_problem_is_logged_once_per_distinct_problem(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "n"
    numbers = Numbers(path)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(3):
            assert numbers.poll() is False
        assert [r.getMessage() for r in caplog.records] == [
            f"numbers file {path} cannot be read (No such file or directory)"]
        path.write_bytes(b"x")
        for _ in range(3):
            numbers.poll()
        assert numbers.loads == [b"x"]  # bad bytes are not parsed again either
        path.write_bytes(b"y")
        numbers.poll()
        assert len(caplog.records) == 3 and caplog.records[2].getMessage().endswith("b'y'")
        path.write_bytes(b"7")
        numbers.poll()
        assert numbers.value == 7 and len(caplog.records) == 3
        path.unlink()
        numbers.poll()
        assert len(caplog.records) == 4  # the same problem again after being fine: told again
        path.write_bytes(b"7")
        assert numbers.poll() is True  # an unreadable spell forgets the bytes: the same ones load again


def test_retry_failed_tries_a_failed_version_again_and_keeps_the_last_loaded(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "n"
    path.write_bytes(b"1")
    numbers = Retrying(path)
    numbers.poll()
    path.write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        numbers.poll()
        numbers.poll()
    assert numbers.loads == [b"1", b"x", b"x"] and len(caplog.records) == 1
    path.unlink()
    numbers.poll()
    path.write_bytes(b"1")
    assert numbers.poll() is False  # still the version last loaded: nothing to do
    assert numbers.loads == [b"1", b"x", b"x"]


async def test_watch_survives_an_unexpected_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "n"
    path.write_bytes(b"1")
    numbers = Numbers(path)
    calls = 0
    load = numbers._load

    def flaky(raw: bytes) -> str | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return load(raw)

    numbers._load = flaky  # type: ignore[method-assign]
    watch = asyncio.create_task(numbers.watch(0.01))
    try:
        with caplog.at_level(logging.ERROR, logger=LOGGER):
            for _ in range(200):
                if numbers.value == 1:
                    break
                await asyncio.sleep(0.01)
        assert numbers.value == 1
        assert [r.getMessage() for r in caplog.records] == [f"reading the numbers file {path} failed"]
    finally:
        watch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watch
