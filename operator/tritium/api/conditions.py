"""Kubernetes-convention conditions: one entry per type, transition time kept while status holds."""

from __future__ import annotations

from typing import Any


def set_condition(
    conditions: list[dict[str, Any]], *, type: str, status: str, reason: str, message: str,
    generation: int | None, now: str,
) -> list[dict[str, Any]]:
    """A new list with the condition set; lastTransitionTime changes only when status does."""
    previous = next((c for c in conditions if c.get("type") == type), None)
    changed = previous is None or previous.get("status") != status
    condition: dict[str, Any] = {
        "type": type,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now if changed else previous.get("lastTransitionTime", now),  # type: ignore[union-attr]
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    others = [c for c in conditions if c.get("type") != type]
    return sorted([*others, condition], key=lambda c: str(c.get("type")))


def get_condition(conditions: list[dict[str, Any]] | None, type: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == type), None)
