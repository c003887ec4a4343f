"""Signed responses (spec.security.signResponses): an HMAC-SHA256 header on every non-streaming answer.

The key is the Secret key spec.security.signingKeySecretRef names, mounted as a file (the
variable below points at it), read at start and re-read every second (kubelet swaps the file on
an edit: the new key applies without a restart). What is signed is defined once, in the SDK
(tritium.client.signing), so that verify_response and the gateway cannot drift apart. Streams
(SSE) are not signed: their head, where the header goes, is sent before the body exists.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tritium.client.signing import SIGNATURE_HEADER, response_signature
from tritium.dataplane.mounted import MountedFile

SIGNING_KEY_FILE_ENV = "TRITIUM_SIGNING_KEY_FILE"
MIN_KEY_BYTES = 32  # HMAC-SHA256's own strength; a shorter key is a guessable one

log = logging.getLogger("tritium.gateway")

__all__ = ["MIN_KEY_BYTES", "SIGNATURE_HEADER", "SIGNING_KEY_FILE_ENV", "Signer"]


def _key(path: Path, raw: bytes) -> bytes:
    key = raw.strip()
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the signing key in {path} has {len(key)} bytes, fewer than {MIN_KEY_BYTES}")
    return key


class Signer(MountedFile[bytes]):
    """Signs answers with the key in ``path``; refuses to start without a usable key (never unsigned).

    The file is polled (dataplane/mounted.py); a missing or too short version keeps the last good
    key, logged once per distinct problem.
    """

    _log = log

    def __init__(self, path: str | None) -> None:
        if not path:
            raise ValueError(f"spec.security.signResponses is set but {SIGNING_KEY_FILE_ENV} is not")
        super().__init__(path, "signing key")
        try:
            raw = self._read()
        except OSError as exc:
            raise ValueError(f"the signing key {path}: {exc.strerror or exc}") from None
        self.key = _key(self.path, raw)
        self._raw = raw

    def sign(self, request_id: str, body: bytes) -> str:
        return response_signature(self.key, request_id, body)

    def _load(self, raw: bytes) -> str | None:
        try:
            key = _key(self.path, raw)
        except ValueError as exc:
            return str(exc)
        if key != self.key:
            self.key = key
            log.info("signing key reloaded from %s", self.path)
        return None

    def _warn(self, problem: str) -> None:
        log.warning("signing key not reloaded, the previous one is kept: %s", problem)
