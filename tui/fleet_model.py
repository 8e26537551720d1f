"""The fleet screen's data: devices from Greengrass, status messages from MQTT, sort and filter.

Plain Python, no Textual: the screen asks `view()` for the names to show and `row()` for the few
rows on screen. Both "last seen" sources stay separate columns: the Greengrass core device status
time, and the time of the device's last edge-client status message.

A status message is about the device its topic names (`edge-console/<device>/status`), not the one
its payload's `device` field names: the IoT policy keeps a device off other devices' topics but not
from writing any name into its own messages. A payload that names another device than its topic is
counted as malformed and not applied (`actions.fleet.status_from_message`).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from actions.errors import MessageError
from actions.fleet import STATUS_FILTER, status_from_message

MALFORMED_KEEP = 100  # (topic, reason) of the latest malformed statuses, for a look at what is wrong


@dataclass(frozen=True)
class Column:
    """A fleet column: its title, width, and how to sort by it."""

    key: str
    title: str
    width: int
    right: bool = False


COLUMNS = (
    Column("name", "device", 16),
    Column("core", "gg status", 9),
    Column("core_seen", "gg seen", 7, True),
    Column("client_seen", "msg seen", 8, True),
    Column("version", "model", 8),
    Column("ips", "img/s", 6, True),
    Column("p95", "p95 ms", 7, True),
    Column("outbox", "outbox", 6, True),
)


class FleetModel:
    """Devices by name, with their latest edge-client status merged in; thread-safe for statuses.

    Args:
        now: the current wall time (aware UTC), for ages.
        topic_filter: the status subscription; its `+` level is the device (see
            `actions.fleet.status_template`).
    """

    def __init__(self, now: Callable[[], datetime], topic_filter: str = STATUS_FILTER) -> None:
        self._now = now
        self.topic_filter = topic_filter
        self.devices: dict[str, Any] = {}  # name -> actions.fleet.Device
        self.statuses: dict[str, Any] = {}  # name -> actions.messages.status.Status
        self.status_times: dict[str, datetime | None] = {}
        self._pending: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._search: dict[str, str] = {}
        self.malformed_statuses = 0
        self._malformed: deque[tuple[str, str]] = deque(maxlen=MALFORMED_KEEP)  # (topic, reason)

    # -- input -----------------------------------------------------------------------------------

    def set_devices(self, devices: list[Any]) -> None:
        """Replace the devices (a fresh `actions.fleet.list_fleet` result)."""
        self.devices = {d.name: d for d in devices}
        self._search.clear()

    def ingest_status(self, topic: str, payload: bytes) -> None:
        """A status message from MQTT (any thread); the newest per device is kept.

        The device is the one the topic names; a payload that does not parse, or that claims another
        device, is counted in `malformed_statuses` (its reason kept, see `malformed()`) and not applied.
        """
        try:
            status = status_from_message(topic, payload, self.topic_filter)
        except MessageError as exc:
            with self._lock:
                self.malformed_statuses += 1
                self._malformed.append((topic, str(exc)))
            return
        with self._lock:
            self._pending[status.device] = status

    def apply_statuses(self) -> set[str]:
        """Merge the statuses received since the last call (UI thread); return the changed names."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for name, status in pending.items():
            self.statuses[name] = status
            self.status_times[name] = _parse_time(status.timestamp)
            self._search.pop(name, None)
        return set(pending)

    def malformed(self) -> list[tuple[str, str]]:
        """(topic, reason) of the latest malformed statuses, oldest first (any thread)."""
        with self._lock:
            return list(self._malformed)

    # -- output ----------------------------------------------------------------------------------

    def names(self) -> set[str]:
        """Every device known from Greengrass or from status messages."""
        return set(self.devices) | set(self.statuses)

    def _searchable(self, name: str) -> str:
        text = self._search.get(name)
        if text is None:
            d, s = self.devices.get(name), self.statuses.get(name)
            parts = [name]
            if d is not None:
                parts += [d.core_status or "", d.platform or ""]
            if s is not None:
                parts += [s.state, s.model_name or "", s.model_version or ""]
            text = self._search[name] = " ".join(parts).lower()
        return text

    def sort_value(self, name: str, column: str) -> Any:
        """A comparable value of `column` for a device; unknowns sort last."""
        d, s = self.devices.get(name), self.statuses.get(name)
        if column == "name":
            return (0, name)
        if column == "core":
            return (0, d.core_status) if d is not None and d.core_status else (1, "")
        if column == "core_seen":
            t = d.core_last_seen if d is not None else None
            return (0, -t.timestamp()) if t else (1, 0)
        if column == "client_seen":
            t = self.status_times.get(name)
            return (0, -t.timestamp()) if t else (1, 0)
        if s is None:
            return (1, 0)
        if column == "version":
            return (0, s.model_version or "")
        if column == "ips":
            return (0, s.images_per_s or 0.0)
        if column == "p95":
            return (0, s.inference_ms[1] or 0.0)
        if column == "outbox":
            return (0, s.outbox_depth)
        raise KeyError(column)

    def view(self, sort: str = "name", reverse: bool = False, query: str = "") -> list[str]:
        """Names to show: filtered by `query` (case-insensitive substring), sorted by `sort`."""
        names = self.names()
        if query:
            q = query.lower()
            names = [n for n in names if q in self._searchable(n)]
        if sort == "name":
            return sorted(names, reverse=reverse)
        values = {n: self.sort_value(n, sort) for n in names}
        known = [n for n in names if values[n][0] == 0]
        unknown = sorted(n for n in names if values[n][0] != 0)
        known.sort(key=lambda n: (values[n][1], n), reverse=reverse)
        return known + unknown  # devices without a value stay at the end either way

    def cells(self, name: str) -> list[str]:
        """The row's cells as strings, in COLUMNS order."""
        from tui.clock import ago

        now = self._now()
        d, s = self.devices.get(name), self.statuses.get(name)
        core = (d.core_status or "-") if d is not None else "-"
        if d is not None and not d.in_group:
            core += "*"
        core_seen = ago((now - d.core_last_seen).total_seconds()) if d is not None and d.core_last_seen else "-"
        t = self.status_times.get(name)
        client_seen = ago((now - t).total_seconds()) if t else "-"
        if s is None:
            return [name, core, core_seen, client_seen, "-", "-", "-", "-"]
        offline = "" if s.online else " (off)"
        return [name, core, core_seen, client_seen + offline, s.model_version or "-",
                f"{s.images_per_s:.1f}" if s.images_per_s is not None else "-",
                f"{s.inference_ms[1]:.1f}" if s.inference_ms[1] is not None else "-",
                str(s.outbox_depth)]


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    if t.tzinfo is None:
        from datetime import timezone

        t = t.replace(tzinfo=timezone.utc)
    return t
