"""API keys: the key file's format, key creation, and the check of a presented key.

The Secret holds only hashes, one entry per line: ``ID:SHA256HEX`` (``#`` starts a comment, blank
lines are skipped). A leaked Secret then gives no usable key, and the gateway never holds a key it
could log. A key is high-entropy random text, so a plain SHA-256 is enough: a slow password hash
would only add CPU to every request, it protects guessable secrets, not 256-bit ones.

The file is the Secret's mounted key. Editing the Secret (adding a new key, then removing the
old one) rotates keys: kubelet swaps the mounted file and :class:`KeyFile` picks the change up
within a poll interval, without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from tritium.dataplane import mounted
from tritium.dataplane.mounted import MountedFile

log = logging.getLogger("tritium.gateway.keys")

KEY_PREFIX = "tk_"
POLL_SECONDS = mounted.POLL_SECONDS
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_HASH_PATTERN = re.compile(r"^[0-9a-f]{64}$")


class KeyFileError(ValueError):
    """A key file line that is not ``ID:SHA256HEX``."""


def hash_key(key: str) -> str:
    """The stored form of a key: SHA-256 of its UTF-8 bytes, lower-case hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A new random key (256 bits, URL-safe), recognisable by its prefix in a leaked log or config."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def entry(key_id: str, key: str) -> str:
    """The key file line that accepts ``key`` under ``key_id``."""
    if not ID_PATTERN.match(key_id):
        raise KeyFileError(f"key id {key_id!r} must be 1-63 letters, digits, '.', '_' or '-'")
    return f"{key_id}:{hash_key(key)}"


def parse_keys(text: str) -> dict[str, str]:
    """hash -> key id for every line; the first bad line raises KeyFileError naming its number."""
    keys: dict[str, str] = {}
    ids: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key_id, sep, digest = line.partition(":")
        key_id, digest = key_id.strip(), digest.strip().lower()
        if not sep or not ID_PATTERN.match(key_id) or not _HASH_PATTERN.match(digest):
            raise KeyFileError(f"line {number} is not ID:SHA256HEX (a raw key is never accepted here: "
                               "store `tritium keys create` output)")
        if key_id in ids:
            raise KeyFileError(f"line {number}: key id {key_id!r} appears twice")
        ids.add(key_id)
        keys[digest] = key_id
    return keys


@dataclass(frozen=True)
class KeySet:
    """The accepted keys, by hash; compared in constant time so timing tells nothing of a hash."""

    by_hash: dict[str, str]

    def identify(self, presented: str) -> str | None:
        """The id of the key presented, or None. Every stored hash is compared, with no early exit."""
        digest = hash_key(presented).encode()
        found: str | None = None
        for stored, key_id in self.by_hash.items():
            if hmac.compare_digest(stored.encode(), digest):
                found = key_id
        return found


def presented_key(headers: dict[str, str]) -> str | None:
    """The key a request carries: ``Authorization: Bearer KEY``, else ``X-API-Key: KEY``."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = (headers.get("x-api-key") or "").strip()
    return key or None


class KeyFile(MountedFile[bytes]):
    """Keeps a KeySet in step with the mounted key file, read at most once per poll.

    Read whole and compared with the last bytes seen, like traffic.py's file (see
    dataplane/mounted.py: kubelet swaps a `..data` symlink). Fails closed: a file that is
    missing or invalid at start accepts no key; a later bad version keeps the last good set
    (a half-edited Secret should not lock every client out), logged once per distinct problem.
    """

    _log = log

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, "API key file")
        self.keys = KeySet({})

    def _load(self, raw: bytes) -> str | None:
        try:
            keys = parse_keys(raw.decode("utf-8"))
        except (UnicodeDecodeError, KeyFileError) as exc:
            return f"{self.name} is invalid: {exc}"
        changed = keys != self.keys.by_hash
        self.keys = KeySet(keys)
        if changed:
            log.info("API keys: %d accepted (%s)", len(keys), ", ".join(sorted(keys.values())) or "none")
        return None

    def _warn(self, problem: str) -> None:
        kept = len(self.keys.by_hash)
        log.warning("%s; %s", problem, f"keeping the {kept} keys read before" if kept else "no key is accepted")

    async def watch(self, interval: float | None = None) -> None:
        """Poll (every POLL_SECONDS, read at each call, unless told) until cancelled."""
        await super().watch(interval or POLL_SECONDS)
