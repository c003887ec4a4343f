"""The canary split: which inference requests a stable gateway sends to the canary revision.

During a blue-green rollout the Service selects only the stable revision's pods, so pod ratios
cannot give "5 %" (two stable pods can only split in halves). Instead each stable gateway sends
exactly canaryWeight percent of its inference requests to the canary's own Service. The operator
says who is stable, who the canary is and the weight in a JSON file (a ConfigMap mounted at
pod_layout.TRAFFIC_DIR); this module reads it, decides per request, and knows nothing of HTTP.

The decision is deterministic, not random: a counter forwards request i iff
floor((i+1)*w/100) > floor(i*w/100), so over any N consecutive requests one gateway forwards
within one request of N*w/100, and a fleet of gateways, each exact, is exact in total.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from tritium.dataplane import mounted
from tritium.dataplane.mounted import MountedFile

log = logging.getLogger("tritium.traffic")

# Set on every forwarded request (value: the forwarding revision). A gateway never forwards a
# request that carries it, so two gateways whose files disagree cannot bounce a request around.
ROUTED_HEADER = "X-Tritium-Routed"
ROUTED_KEY = ROUTED_HEADER.lower()  # the HTTP server lower-cases header names
POLL_SECONDS = mounted.POLL_SECONDS  # how often TrafficFile reads the file


class TrafficError(ValueError):
    """The traffic file is not what the operator writes: no forwarding until it is fixed."""


@dataclass(frozen=True)
class Traffic:
    """The traffic file, parsed: {"stable", "canary", "canaryWeight", "canaryUrl"}."""

    stable: str | None
    canary: str | None
    canary_weight: int
    canary_url: str | None


@dataclass(frozen=True)
class Target:
    """Where forwarded requests go: the canary revision (a metrics label) and its Service URL."""

    revision: str
    url: str


def _optional_str(doc: dict[str, object], key: str) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TrafficError(f"{key} must be a string or null, not {type(value).__name__}")
    return value or None


def parse_traffic(raw: bytes) -> Traffic:
    """Parse and check the file. Unknown keys are ignored: a newer operator may add some."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise TrafficError(f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise TrafficError(f"expected a JSON object, not {type(doc).__name__}")
    weight = doc.get("canaryWeight", 0)
    if weight is None:
        weight = 0
    if isinstance(weight, bool) or not isinstance(weight, int):
        raise TrafficError(f"canaryWeight must be an integer, not {weight!r}")
    if not 0 <= weight <= 100:
        raise TrafficError(f"canaryWeight must be within 0 and 100, not {weight}")
    url = _optional_str(doc, "canaryUrl")
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TrafficError(f"canaryUrl must be an http:// or https:// URL with a host, not {url!r}")
        if parts.query or parts.fragment:
            raise TrafficError(f"canaryUrl must not carry a query or fragment: {url!r}")
        url = url.rstrip("/")
    return Traffic(_optional_str(doc, "stable"), _optional_str(doc, "canary"), weight, url)


def forward_target(traffic: Traffic | None, revision: str) -> tuple[Target, int] | None:
    """(target, weight) when this revision's gateway forwards at all, else None.

    Only the stable revision forwards: a canary gateway reading the same file serves everything
    itself, and a revision that is neither (an old one still draining) does too.
    """
    if traffic is None or not revision or traffic.stable != revision:
        return None
    if traffic.canary is None or traffic.canary_url is None or traffic.canary_weight <= 0:
        return None
    if traffic.canary == revision:
        return None
    return Target(traffic.canary, traffic.canary_url), traffic.canary_weight


class SplitCounter:
    """Bresenham's line over requests: exactly floor(N*w/100) of the first N are picked.

    The pattern repeats every 100 requests (100*w/100 is whole), so the index wraps there and
    never grows.
    """

    __slots__ = ("_i", "weight")

    def __init__(self, weight: int) -> None:
        self.weight = weight
        self._i = 0

    def take(self) -> bool:
        """Whether the next request is picked."""
        i, w = self._i, self.weight
        self._i = i + 1 if i < 99 else 0
        return (i + 1) * w // 100 > i * w // 100


class TrafficSplit:
    """The per-process decision. `weight` is 0 whenever nothing is forwarded, so the gateway's
    hot path tests one attribute and goes on.

    `on_change(canary_revision, weight)` is called after each change (the gateway sets its canary
    weight gauge there), so the split is reported where it changes, not on the request path.
    """

    __slots__ = ("_counter", "_on_change", "revision", "target", "weight")

    def __init__(self, revision: str, on_change: Callable[[str | None, int], None] | None = None) -> None:
        self.revision = revision
        self.weight = 0
        self.target: Target | None = None
        self._counter = SplitCounter(0)
        self._on_change = on_change

    def update(self, traffic: Traffic | None) -> bool:
        """Apply a (re)read file; True when what this gateway does changed.

        The counter starts over on a new weight or target, so the first N requests after a
        change are exact for the new weight, not skewed by the old one's position.
        """
        chosen = forward_target(traffic, self.revision)
        target, weight = chosen if chosen is not None else (None, 0)
        if target == self.target and weight == self.weight:
            return False
        self._counter = SplitCounter(weight)
        self.target, self.weight = target, weight
        if self._on_change is not None:
            self._on_change(target.revision if target is not None else None, weight)
        return True

    def route(self, headers: Mapping[str, str]) -> Target | None:
        """The target for this inference request, or None to serve it here."""
        if self.weight == 0 or ROUTED_KEY in headers:
            return None
        return self.target if self._counter.take() else None

    def describe(self) -> str:
        if self.target is None:
            return f"revision {self.revision or '(unnamed)'} serves every request itself"
        return (f"revision {self.revision} forwards {self.weight} % of inference requests to canary "
                f"{self.target.revision} at {self.target.url}")


class TrafficFile(MountedFile[bytes]):
    """Keeps a TrafficSplit in step with the file, read at most once per POLL_SECONDS.

    Read whole and compared with the last bytes seen (see dataplane/mounted.py: kubelet swaps a
    `..data` symlink). A missing, unreadable or invalid file stops the forwarding, never raised.
    An unreadable or invalid one is a warning, once per distinct problem; a missing one only a
    debug line: it is the normal state while no rollout is in flight (the ConfigMap is mounted
    optional, and `tritium up` writes the file only for a rollout).
    """

    _log = log

    def __init__(self, path: str | Path, split: TrafficSplit) -> None:
        super().__init__(path, "traffic file")
        self.split = split
        self._missing = f"{self.name} does not exist"

    def _unreadable(self, exc: OSError) -> str:
        return self._missing if isinstance(exc, FileNotFoundError) else super()._unreadable(exc)

    def _load(self, raw: bytes) -> str | None:
        try:
            traffic = parse_traffic(raw)
        except TrafficError as exc:
            return f"{self.name} is invalid: {exc}"
        self._apply(traffic)
        return None

    def _warn(self, problem: str) -> None:
        log.log(logging.DEBUG if problem == self._missing else logging.WARNING, "%s: no canary forwarding", problem)
        self._apply(None)

    def _apply(self, traffic: Traffic | None) -> None:
        if self.split.update(traffic):
            log.info("traffic: %s", self.split.describe())
