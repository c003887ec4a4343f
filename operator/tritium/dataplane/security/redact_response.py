"""Redaction of personal data in answers (spec.security.redactResponses), after the post stage.

A model that echoes or generates text (an LLM, an OCR, an extractor) can hand personal data back
to whoever calls it; the same patterns as the logs' (redact.py) then apply to what the answer
carries as text, and only to that, so no number of a tensor is ever touched:

- BYTES tensors, element by element: an element that is UTF-8 is redacted and encoded again;
  other bytes (an image, a serialized protobuf) are left as they are;
- the post stage's JSON values and the answer's text (invoke, stream), every string within;
- a body the post stage rendered itself: text/* and XML as text, JSON parsed and its strings
  redacted (a regular expression over JSON text could take a number for a card and break the
  document); other media types (application/octet-stream, images) pass unchanged.

Numeric tensors and headers are never changed. Everything here is pure: the gateway applies
``redact_result`` to each Result of the pipeline (Pipeline.finish), so v2, invoke, stream and
the cache all see the redacted answer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from tritium.dataplane.pipeline import Result

Redact = Callable[[str], str]


def redact_value(value: Any, redact: Redact) -> Any:
    """Strings within a JSON-like value redacted (dict keys too: a key can be a name); the rest as it is."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact_value(v, redact) for v in value]
    if isinstance(value, dict):
        return {redact(k) if isinstance(k, str) else k: redact_value(v, redact) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return redact_tensor(value, redact)
    return value


def _element(item: Any, redact: Redact) -> Any:
    if isinstance(item, str):
        return redact(item)
    if isinstance(item, bytes):
        try:
            text = item.decode()
        except UnicodeDecodeError:
            return item  # not text: nothing to read in it
        done = redact(text)
        return item if done == text else done.encode()
    return item


def redact_tensor(tensor: np.ndarray, redact: Redact) -> np.ndarray:
    """A BYTES (object or bytes_) tensor with each UTF-8 element redacted; any other dtype unchanged."""
    if tensor.dtype.kind == "O":
        flat = [_element(x, redact) for x in tensor.ravel().tolist()]
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(tensor.shape)
    if tensor.dtype.kind in ("S", "U"):
        return redact_tensor(tensor.astype(object), redact)
    return tensor


def _media(content_type: str) -> str:
    """The media type alone (no parameters), lower-case."""
    return content_type.split(";", 1)[0].strip().lower()


def _is_text(media: str) -> bool:
    return media.startswith("text/") or media == "application/xml" or media.endswith("+xml")


def _is_json(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


def redact_body(body: bytes, content_type: str, redact: Redact) -> bytes:
    """A rendered body redacted by its media type; binary ones (and text that is not UTF-8) unchanged."""
    media = _media(content_type)
    if _is_json(media):
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        return orjson.dumps(redact_value(doc, redact))
    if _is_text(media):
        try:
            text = body.decode()
        except UnicodeDecodeError:
            return body
        return redact(text).encode()
    return body


def redact_result(result: Result, redact: Redact) -> Result:
    """The same answer with the text it carries redacted (a new Result; the input is not changed)."""
    body = result.body
    if body is not None and result.content_type:
        body = redact_body(body, result.content_type, redact)
    return dataclasses.replace(
        result,
        tensors={name: redact_tensor(t, redact) for name, t in result.tensors.items()},
        values=redact_value(result.values, redact),
        text=redact(result.text) if result.text is not None else None,
        body=body,
    )
