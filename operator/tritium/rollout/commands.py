"""A person's rollout commands, written as annotations on the InferenceService.

Annotations, not a side channel: ``kubectl annotate``, ``tritium promote`` and a commit in Git
all do the same thing, and what was asked stays visible on the object. ``promote`` and ``abort``
name the revision they are meant for, so one left behind never acts on a later rollout; pausing
holds while the annotation says "true". Annotations do not change the spec's generation, so a
command never starts a new revision.
"""

from __future__ import annotations

from collections.abc import Mapping

from tritium.rollout.machine import Commands

PROMOTE = "serving.tritium.dev/promote"  # value: the canary revision to promote now
ABORT = "serving.tritium.dev/abort"  # value: the canary revision to roll back now
PAUSED = "serving.tritium.dev/paused"  # "true": hold the canary where it is
ANNOTATIONS = (PROMOTE, ABORT, PAUSED)


def commands_from(annotations: Mapping[str, str] | None) -> Commands:
    found = annotations or {}
    return Commands(
        promote=(found.get(PROMOTE) or "").strip() or None,
        abort=(found.get(ABORT) or "").strip() or None,
        paused=(found.get(PAUSED) or "").strip().lower() == "true",
    )
