"""Files kubelet mounts from a ConfigMap or Secret, re-read while the gateway runs.

kubelet updates such a mount by writing the new version into a fresh directory and swapping a
``..data`` symlink onto it; the file names the container sees are links through ``..data``. So a
watcher reads the whole file through its path, which follows the swap, and compares the bytes
with those it saw last (a stat of the link name would not see the swap: the link itself never
changes). The files are small (a ConfigMap key, a certificate), so reading them every second is
cheap; parsing only happens when the bytes changed.

:class:`MountedFile` is that loop: ``poll()`` reads, compares and hands new bytes to ``_load``;
a problem (an unreadable file, or new bytes ``_load`` refuses) goes to ``_warn`` once per
distinct problem, not every poll; ``watch()`` polls until cancelled, and an unexpected error is
logged and polling goes on. What a problem means (serve nothing, keep the last good version) is
each subclass's own.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

POLL_SECONDS = 1.0

Raw = TypeVar("Raw")  # what one read gives: bytes, or a tuple of them for files read together


class MountedFile(Generic[Raw]):
    """One mounted file (or a set read together, see ``_read``) kept in step by polling.

    Subclasses set ``_log``, name the kind of file (messages say "KIND PATH") and implement ``_load``
    (the new bytes: apply them, or return the problem with them) and ``_warn`` (a new problem).
    """

    _log: ClassVar[logging.Logger] = logging.getLogger("tritium.mounted")
    #: False: every version read counts as seen, so bytes that failed to load are not parsed again
    #: until they change, and an unreadable file forgets them (the same bytes back are loaded again).
    #: True: only bytes that loaded cleanly count, and a version that failed is tried on every poll.
    retry_failed: ClassVar[bool] = False

    def __init__(self, path: str | Path, kind: str) -> None:
        self.path = Path(path)
        self.name = f"{kind} {self.path}"  # "traffic file /etc/...", the subject of every message
        self._raw: Raw | None = None
        self._problem: str | None = None

    def _read(self) -> Raw:
        """The file's current content; OSError when it cannot be read."""
        return self.path.read_bytes()  # type: ignore[return-value]  # Raw is bytes unless overridden

    def _load(self, raw: Raw) -> str | None:
        """Take new content: None once applied, else the problem with it (the subclass decides what stays)."""
        raise NotImplementedError

    def _warn(self, problem: str) -> None:
        """A problem not reported since the file was last fine (or since a different problem)."""
        self._log.warning("%s", problem)

    def _unreadable(self, exc: OSError) -> str:
        return f"{self.name} cannot be read ({exc.strerror or exc})"

    def poll(self) -> bool:
        """Read once; True when a new version was loaded."""
        try:
            raw = self._read()
        except OSError as exc:
            if not self.retry_failed:
                self._raw = None
            self._fail(self._unreadable(exc))
            return False
        if raw == self._raw:
            return False
        problem = self._load(raw)  # should it raise, nothing counts as seen: the next poll tries again
        if problem is None:
            self._raw, self._problem = raw, None
            return True
        if not self.retry_failed:
            self._raw = raw
        self._fail(problem)
        return False

    def _fail(self, problem: str) -> None:
        if problem != self._problem:
            self._problem = problem
            self._warn(problem)

    async def watch(self, interval: float = POLL_SECONDS) -> None:
        """Poll every ``interval`` seconds until cancelled; an unexpected error is logged, polling goes on."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.poll()
            except Exception:
                self._log.exception("reading the %s failed", self.name)
