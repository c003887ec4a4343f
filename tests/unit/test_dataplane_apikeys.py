"""API key file format, key creation, presented-key parsing and the constant-time check."""

from __future__ import annotations

import hashlib
import hmac
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tritium.dataplane.security import apikeys
from tritium.dataplane.security.apikeys import (
    KeyFile,
    KeyFileError,
    KeySet,
    entry,
    hash_key,
    new_key,
    parse_keys,
    presented_key,
)


def test_the_stored_form_is_id_colon_sha256_hex() -> None:
    key = new_key()
    assert re.fullmatch(r"tk_[A-Za-z0-9_-]{43}", key)
    assert entry("team-a", key) == f"team-a:{hashlib.sha256(key.encode()).hexdigest()}"
    assert new_key() != key


def test_parser_skips_comments_and_blanks_and_reads_every_entry() -> None:
    a, b = new_key(), new_key()
    text = f"# rotated 2024-05\n\n  {entry('a', a)}  \n{entry('b.2', b).upper().replace('B.2:', 'b.2:')}\n"
    assert parse_keys(text) == {hash_key(a): "a", hash_key(b): "b.2"}


@pytest.mark.parametrize(("text", "why"), [
    ("tk_rawkeyinthefile", "line 1 is not ID:SHA256HEX"),
    ("a:" + "0" * 63, "line 1"),
    ("bad id:" + "0" * 64, "line 1"),
    ("\n:" + "0" * 64, "line 2"),
    (f"a:{'0' * 64}\na:{'1' * 64}", "appears twice"),
])
def test_parser_names_the_bad_line(text: str, why: str) -> None:
    with pytest.raises(KeyFileError, match=why):
        parse_keys(text)


def test_ids_are_checked_when_an_entry_is_made() -> None:
    with pytest.raises(KeyFileError):
        entry("", new_key())
    with pytest.raises(KeyFileError):
        entry("has:colon", new_key())


@pytest.mark.parametrize(("headers", "key"), [
    ({"authorization": "Bearer k1"}, "k1"),
    ({"authorization": "bearer   k1 "}, "k1"),
    ({"x-api-key": " k2"}, "k2"),
    ({"authorization": "Basic dXNlcjpw", "x-api-key": "k3"}, "k3"),
    ({"authorization": "Bearer "}, None),
    ({"x-api-key": ""}, None),
    ({}, None),
])
def test_presented_key(headers: dict[str, str], key: str | None) -> None:
    assert presented_key(headers) == key


def test_identify_compares_every_hash_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [new_key() for _ in range(3)]
    keyset = KeySet({hash_key(k): f"id{i}" for i, k in enumerate(keys)})
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(apikeys.hmac, "compare_digest", spy)
    assert keyset.identify(keys[0]) == "id0"  # found first, and still every hash is compared
    assert len(calls) == 3
    assert keyset.identify(keys[2]) == "id2"
    assert keyset.identify("tk_guess") is None
    assert len(calls) == 9


def test_key_file_fails_closed_then_keeps_the_last_good_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    keys = KeyFile(path)
    keys.poll()
    assert keys.keys.by_hash == {}  # missing at start: nothing is accepted
    key = new_key()
    path.write_text(entry("a", key))
    keys.poll()
    assert keys.keys.identify(key) == "a"
    path.write_text("garbage")
    keys.poll()
    assert keys.keys.identify(key) == "a"
    path.unlink()
    keys.poll()
    assert keys.keys.identify(key) == "a"
    path.write_text("")
    keys.poll()
    assert keys.keys.identify(key) is None  # an emptied Secret revokes every key


def test_keys_create_prints_the_key_then_its_entry() -> None:
    out = subprocess.run([sys.executable, "-m", "tritium.cli", "keys", "create", "--id", "ci-bot"],
                         capture_output=True, text=True, check=True)
    key, line = out.stdout.splitlines()
    assert parse_keys(line) == {hash_key(key): "ci-bot"}
    assert key not in out.stderr
    bad = subprocess.run([sys.executable, "-m", "tritium.cli", "keys", "create", "--id", "no spaces"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == ""
