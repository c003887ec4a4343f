"""The phases of a rollout and the transitions between them, as data.

A rollout is about one revision (the one the spec asks for) replacing the stable one:

    Pending -> Starting -> Canary -> Promoting -> Promoted
                  |          |  ^        |
                  |          v  |        |
                  |        Paused        |
                  v          v           v
               RollingBack -> RolledBack

Failed is the first revision of a service that never became ready: there is nothing to roll
back to, so it keeps trying and says so. Promoted, RolledBack and Failed end a rollout; Paused
waits for a person (``tritium promote|abort|resume``). Every transition the machine makes is
checked against TRANSITIONS by the tests.
"""

from __future__ import annotations

import enum


class Phase(enum.StrEnum):
    PENDING = "Pending"  # the new revision is decided; its Deployment is not seen yet
    STARTING = "Starting"  # its pods start; the progress deadline runs
    CANARY = "Canary"  # Ready: it gets the canary weight and is analysed
    PAUSED = "Paused"  # waiting for a person (paused, analysis inconclusive, or autoPromote false)
    PROMOTING = "Promoting"  # scaled to the stable revision's size; 100 % once all of it is Ready
    PROMOTED = "Promoted"  # the new revision is stable; the old one goes after scaleDownDelaySeconds
    ROLLING_BACK = "RollingBack"  # weight 0, the new revision is being removed
    ROLLED_BACK = "RolledBack"  # the stable revision serves; this spec is not retried until it changes
    FAILED = "Failed"  # a first revision past its deadline: nothing to roll back to


TERMINAL = frozenset({Phase.PROMOTED, Phase.ROLLED_BACK, Phase.FAILED})
WAITING_FOR_A_PERSON = frozenset({Phase.PAUSED})
# Phases in which the canary may receive traffic (only while it is Ready).
WEIGHTED = frozenset({Phase.CANARY, Phase.PAUSED, Phase.PROMOTING})
# Phases in which the canary is measured every analysis interval.
ANALYSED = frozenset({Phase.CANARY, Phase.PAUSED})

# From any phase, a new spec starts a new rollout (Pending; Starting or Promoted for a first revision)
# or, asking for the stable revision again, ends the one in flight (RolledBack).
_ANY_START = {Phase.PENDING, Phase.STARTING, Phase.PROMOTED, Phase.ROLLED_BACK}

TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.PENDING: frozenset({Phase.STARTING, Phase.CANARY, Phase.ROLLING_BACK, Phase.FAILED} | _ANY_START),
    Phase.STARTING: frozenset({Phase.CANARY, Phase.ROLLING_BACK, Phase.FAILED} | _ANY_START),
    Phase.CANARY: frozenset({Phase.PAUSED, Phase.PROMOTING, Phase.ROLLING_BACK} | _ANY_START),
    Phase.PAUSED: frozenset({Phase.CANARY, Phase.PROMOTING, Phase.ROLLING_BACK} | _ANY_START),
    Phase.PROMOTING: frozenset({Phase.PROMOTED, Phase.ROLLING_BACK} | _ANY_START),
    Phase.PROMOTED: frozenset(_ANY_START),
    Phase.ROLLING_BACK: frozenset({Phase.ROLLED_BACK} | _ANY_START),
    Phase.ROLLED_BACK: frozenset({Phase.ROLLED_BACK} | _ANY_START),
    Phase.FAILED: frozenset({Phase.PROMOTED} | _ANY_START),
}


def allowed(before: Phase, after: Phase) -> bool:
    """Whether the machine may go from ``before`` to ``after`` (staying is always allowed)."""
    return before == after or after in TRANSITIONS[before]
