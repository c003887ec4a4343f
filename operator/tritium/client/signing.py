"""Verify a signed gateway response (spec.security.signResponses): provenance, not watermarking.

The gateway signs each non-streaming answer with HMAC-SHA256 under a key both sides hold (the
Secret spec.security.signingKeySecretRef names): over the request id, a newline, then the
response body exactly as sent. A valid signature proves the body came from a gateway holding the
key, unaltered, as the answer to that request id (so a body cannot be replayed as the answer to
another request). It says nothing about the model's weights; it is no watermark in the output.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

SIGNATURE_HEADER = "X-Tritium-Signature"
REQUEST_ID_HEADER = "X-Request-Id"
SCHEME = "v1="


def response_signature(key: bytes, request_id: str, body: bytes) -> str:
    """The header value: ``v1=`` and the hex HMAC-SHA256 of ``request_id + "\\n" + body``.

    A header value cannot hold a newline, so the separator makes the message unambiguous.
    """
    mac = hmac.new(key, request_id.encode() + b"\n" + body, hashlib.sha256)
    return SCHEME + mac.hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # a plain dict; httpx's and aiohttp's headers are case-insensitive already
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def verify_response(key: bytes | str, body: bytes, headers: Mapping[str, str] | None = None, *,
                    request_id: str | None = None, signature: str | None = None) -> bool:
    """True when ``signature`` (else the response's X-Tritium-Signature) signs ``body`` for ``request_id``
    (else its X-Request-Id) under ``key``. False for a missing or malformed signature: an unsigned
    answer (a stream, a gateway without signResponses) is not a verified one.

    Example with httpx: ``verify_response(key, r.content, r.headers)``.
    """
    headers = headers or {}
    signature = signature if signature is not None else _header(headers, SIGNATURE_HEADER)
    request_id = request_id if request_id is not None else _header(headers, REQUEST_ID_HEADER)
    if not signature or request_id is None or not signature.startswith(SCHEME):
        return False
    secret = key.encode() if isinstance(key, str) else key
    return hmac.compare_digest(signature, response_signature(secret.strip(), request_id, body))
