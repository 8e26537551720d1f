"""The live MQTT aggregator: plain Python, fed by the MQTT thread, read by the UI at 10-20 Hz.

The MQTT thread calls `ingest()` once per message: it parses, counts and keeps the device's latest
prediction, under a short lock. The UI calls `drain()` on a timer and gets immutable rows for the
devices that changed since the last call, so the cost of drawing does not grow with the message
rate. Memory is bounded: at most `max_devices` devices (the least recently heard from is dropped,
because device names come from payloads and a broken publisher could invent any number of them)
and at most `max_malformed` malformed messages kept for viewing (all of them are counted).

Which device a prediction is from: on the runbook's shared topic
(`gg/sageMakerEdgeManager/image-classification`, the screen's default subscription) every device
publishes on the same topic, so the topic cannot say, and the row is keyed by the payload's
`device` field. That name is what the device says about itself: the IoT policy decides who may
publish on the topic, not what a message claims, so one device can show up under another's name
there. Rows keyed that way have `device_from_topic=False`. To have AWS vouch for it, an AWS IoT Core
topic rule could republish the messages with the sender's `clientid()` (with the thing policy's
`iot:Connect` on `client/${iot:Connection.Thing.ThingName}`, the thing name) stamped in; nothing
here sets that up.

A topic in a device's own namespace, `edge-console/<device>/...` (e.g. a subscription to
`edge-console/+/predictions`, with the devices' `topic` set to theirs), names the device: a thing
policy scoped to `edge-console/${iot:Connection.Thing.ThingName}/*` (as the sandbox's is) keeps
other devices off it. There the topic's device keys the row (`device_from_topic=True`), a payload
naming another device is malformed, and a payload without `device` takes the topic's.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from actions.errors import MessageError
from actions.messages.prediction import Prediction, parse_prediction

RAW_KEEP_BYTES = 8 * 1024  # of a malformed payload, enough to see what is wrong with it


DEVICE_TOPIC_PREFIX = "edge-console/"  # edge-console/<device>/...: the thing's own topics in its IoT policy


def topic_device(topic: str) -> str | None:
    """The device a per-device topic names (`edge-console/dev-a/predictions` -> "dev-a"), else None."""
    if not topic.startswith(DEVICE_TOPIC_PREFIX):
        return None
    levels = topic[len(DEVICE_TOPIC_PREFIX):].split("/")
    return levels[0] if len(levels) >= 2 and levels[0] else None


def unknown_device_key(topic: str) -> str:
    """The row key for runbook-era messages, which do not say which device sent them."""
    return f"unknown device @ {topic}"


@dataclass(frozen=True)
class DeviceRow:
    """What the UI shows for one device: an immutable copy taken at a flush."""

    key: str
    topic: str
    prediction: Prediction
    raw: bytes
    count: int
    first_seen: float  # monotonic seconds
    last_seen: float  # monotonic seconds
    last_wall: datetime
    buckets: tuple[tuple[int, int], ...]  # (whole monotonic second, messages in it)
    device_from_topic: bool = False  # True: the topic named the device; False: the payload said so

    def rate(self, now: float, window: float) -> float:
        """Messages per second over the last `window` seconds (or since first seen, if sooner)."""
        start = now - window
        n = sum(c for sec, c in self.buckets if sec >= start)
        span = min(window, max(1.0, now - self.first_seen))
        return n / span

    def searchable(self) -> str:
        """Lower-case text a search matches against: device, topic, model, labels."""
        p = self.prediction
        parts = [self.key, self.topic, p.model_name or "", p.model_version or ""]
        parts.extend(label for label, _ in p.results)
        return " ".join(parts).lower()


@dataclass(frozen=True)
class Malformed:
    """A message that did not parse: where it came from, why, and its first bytes."""

    topic: str
    error: str
    payload: bytes
    size: int
    wall: datetime


@dataclass
class _Device:
    key: str
    topic: str
    prediction: Prediction
    raw: bytes
    first_seen: float
    last_seen: float
    last_wall: datetime
    count: int = 0
    buckets: deque = field(default_factory=deque)
    from_topic: bool = False


@dataclass(frozen=True)
class Drained:
    """What changed since the last `drain()`."""

    changed: dict[str, DeviceRow]
    removed: tuple[str, ...]
    total: int
    malformed_total: int
    new_malformed: tuple[Malformed, ...]


class LiveAggregator:
    """Collects prediction messages per device; thread-safe.

    Args:
        now: monotonic seconds (injected so tests control time).
        wall: wall-clock datetime for display.
        max_devices: devices kept; the least recently heard from is dropped past it.
        max_malformed: malformed messages kept for viewing (all are counted).
        rate_window: seconds over which a device's message rate is measured.
    """

    def __init__(self, now: Callable[[], float], wall: Callable[[], datetime], *,
                 max_devices: int = 20_000, max_malformed: int = 500, rate_window: float = 10.0) -> None:
        self._now = now
        self._wall = wall
        self._lock = threading.Lock()
        self._devices: OrderedDict[str, _Device] = OrderedDict()
        self._dirty: set[str] = set()
        self._removed: set[str] = set()
        self._malformed: deque[Malformed] = deque(maxlen=max_malformed)
        self._new_malformed: list[Malformed] = []
        self.max_devices = max_devices
        self.rate_window = rate_window
        self.total = 0
        self.malformed_total = 0

    def ingest(self, topic: str, payload: bytes) -> None:
        """Take one MQTT message (any thread). Never raises for a bad payload: it is counted."""
        now = self._now()
        wall = self._wall()
        try:
            prediction = parse_prediction(payload)
            device = topic_device(topic)
            if device is not None and prediction.device not in (None, device):
                raise MessageError(f"device {prediction.device!r:.80} in the payload does not match "
                                   f"the topic's {device!r:.80}")
        except MessageError as exc:
            bad = Malformed(topic, str(exc), bytes(payload[:RAW_KEEP_BYTES]), len(payload), wall)
            with self._lock:
                self.total += 1
                self.malformed_total += 1
                self._malformed.append(bad)
                self._new_malformed.append(bad)
                if len(self._new_malformed) > self._malformed.maxlen:
                    del self._new_malformed[0]
            return
        key = device or prediction.device or unknown_device_key(topic)
        second = int(now)
        with self._lock:
            self.total += 1
            dev = self._devices.get(key)
            if dev is None:
                dev = _Device(key, topic, prediction, bytes(payload), now, now, wall)
                dev.from_topic = device is not None
                self._devices[key] = dev
                self._removed.discard(key)
                if len(self._devices) > self.max_devices:
                    old, _ = self._devices.popitem(last=False)
                    self._dirty.discard(old)
                    self._removed.add(old)
            else:
                self._devices.move_to_end(key)
                dev.topic, dev.prediction, dev.raw = topic, prediction, bytes(payload)
                dev.last_seen, dev.last_wall = now, wall
                dev.from_topic = device is not None
            dev.count += 1
            buckets = dev.buckets
            if buckets and buckets[-1][0] == second:
                buckets[-1][1] += 1
            else:
                buckets.append([second, 1])
                horizon = second - self.rate_window - 1
                while buckets and buckets[0][0] < horizon:
                    buckets.popleft()
            self._dirty.add(key)

    def drain(self) -> Drained:
        """The devices that changed since the last call, as immutable rows (UI thread)."""
        with self._lock:
            changed = {}
            for key in self._dirty:
                d = self._devices[key]
                changed[key] = DeviceRow(key, d.topic, d.prediction, d.raw, d.count, d.first_seen,
                                         d.last_seen, d.last_wall, tuple((s, c) for s, c in d.buckets),
                                         d.from_topic)
            self._dirty.clear()
            removed = tuple(self._removed)
            self._removed.clear()
            new_bad = tuple(self._new_malformed)
            self._new_malformed.clear()
            return Drained(changed, removed, self.total, self.malformed_total, new_bad)

    def malformed(self) -> list[Malformed]:
        """The malformed messages kept for viewing, oldest first."""
        with self._lock:
            return list(self._malformed)

    def clear(self) -> None:
        """Forget every device and counter (a new subscription)."""
        with self._lock:
            self._removed.update(self._devices)
            self._devices.clear()
            self._dirty.clear()
            self._malformed.clear()
            self._new_malformed.clear()
            self.total = 0
            self.malformed_total = 0
