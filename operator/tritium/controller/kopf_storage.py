"""kopf's diff base, switched off: the operator has no change handlers to compare it for.

kopf builds an object's "essence" on every event of every object it watches (children included)
before it looks at the handlers: a deep copy of the whole body, managedFields and status first,
then trimmed. It is only ever compared for change handlers (on.create/update/resume, or daemons'
idling); the operator is level-triggered and has none, so that copy was a tenth of its CPU
during a mass creation, thrown away each time. This storage builds an empty essence and stores
nothing; a test checks that no handler kopf would need a diff base for is registered.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kopf


class NoDiffBaseStorage(kopf.DiffBaseStorage):
    """An empty essence for every object, never stored, never found."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> Any:
        return {}

    def fetch(self, *, body: kopf.Body) -> Any:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        return None
