"""The console's clock, injected so tests and snapshots see a fixed time.

Screens never call `time` or `datetime.now()` directly: they ask `app.clock`. A snapshot taken
with a `FixedClock` shows the same "last seen 12 s ago" on every run.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone


class Clock:
    """Wall time (aware UTC) and a monotonic time in seconds."""

    def now(self) -> datetime:
        """The current wall time, an aware UTC datetime."""
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        """Seconds from an arbitrary start; only differences mean anything."""
        return time.monotonic()


class FixedClock(Clock):
    """A clock that moves only when told to (tests, snapshots)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both times forward by `seconds`."""
        self._now += timedelta(seconds=seconds)
        self._mono += seconds


def ago(seconds: float | None) -> str:
    """A short human age: '3s', '4m', '2h', '5d', or '-' when unknown."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h"
    return f"{seconds // 86400:.0f}d"
