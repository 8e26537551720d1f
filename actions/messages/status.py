"""The device status message: how an edge-client agent is doing, for the console's fleet view.

Topic `edge-console/<device>/status` (configurable), published retained at QoS 1 every N seconds
and whenever something changes (model swapped, error, outbox dropping). The agent also registers a
retained MQTT last will with `"state": "offline"` on the same topic, so a device that dies shows as
offline without waiting for a timeout.

    {"type": "status", "timestamp": "2026-11-24 20:30:00.123456+00:00", "device": "edge-1",
     "state": "running", "model-name": "efficientnet-lite0", "model-version": "1",
     "runtime": "onnxruntime", "images-per-s": 41.7,
     "latency-ms": {"preprocess": {"p50": 2.1, "p95": 3.0}, "inference": {"p50": 18.2, "p95": 21.9}},
     "outbox-depth": 0, "dropped": 0, "seq": 1234, "images": 1235, "errors": 1,
     "uptime-s": 3600.5, "last-error": "corrupt.jpg: cannot identify image file", "connected": true,
     "agent-version": "0.1.0"}

`state` is one of STATES. Numbers may be null when unknown (no image classified yet).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from actions.errors import MessageError
from actions.messages.wire import decode_object

STATUS_TOPIC_TEMPLATE = "edge-console/{device}/status"
STATUS_TYPE = "status"
STATES = ("starting", "running", "idle", "degraded", "stopping", "stopped", "offline", "error")
MAX_ERROR_CHARS = 500  # a status is a summary; a long traceback belongs in the log


def status_topic(device: str, template: str = STATUS_TOPIC_TEMPLATE) -> str:
    """Return the status topic for `device` (`{device}` in the template is replaced)."""
    return template.replace("{device}", device)


def _num(value: Any, ndigits: int = 3) -> float | None:
    if value is None:
        return None
    value = float(value)
    return round(value, ndigits) if math.isfinite(value) else None


def build_status(*, device: str, state: str, model_name: str | None = None,
                 model_version: str | None = None, runtime: str | None = None,
                 images_per_s: float | None = None,
                 preprocess_ms: tuple[float | None, float | None] = (None, None),
                 inference_ms: tuple[float | None, float | None] = (None, None),
                 outbox_depth: int = 0, dropped: int = 0, seq: int | None = None,
                 images: int = 0, errors: int = 0, uptime_s: float = 0.0,
                 last_error: str | None = None, connected: bool | None = None,
                 agent_version: str | None = None, timestamp: str | None = None) -> dict:
    """Build a status message.

    Args:
        device: the device (thing) name.
        state: one of STATES.
        model_name: the running model's name, or None before one is loaded.
        model_version: the running model's version.
        runtime: "onnxruntime" or "dlr".
        images_per_s: classification rate over the last status interval.
        preprocess_ms: (p50, p95) preprocessing latency in milliseconds.
        inference_ms: (p50, p95) inference latency in milliseconds.
        outbox_depth: predictions stored and not yet acknowledged by the broker.
        dropped: predictions dropped because the outbox was full, since the outbox was created.
        seq: the last prediction sequence number assigned.
        images: images classified since the agent started.
        errors: images or operations that failed since the agent started.
        uptime_s: seconds since the agent started.
        last_error: the last error's one-line text, or None.
        connected: whether the transport is connected right now.
        agent_version: the edge-client version.
        timestamp: override (tests); defaults to now, UTC.

    Returns:
        The message as a dict.

    Raises:
        MessageError: `state` is not one of STATES.
    """
    if state not in STATES:
        raise MessageError(f"state {state!r} is not one of {', '.join(STATES)}")
    if last_error is not None:
        last_error = " ".join(str(last_error).split())[:MAX_ERROR_CHARS]
    return {
        "type": STATUS_TYPE,
        "timestamp": timestamp or str(datetime.now(timezone.utc)),
        "device": device,
        "state": state,
        "model-name": model_name,
        "model-version": model_version,
        "runtime": runtime,
        "images-per-s": _num(images_per_s),
        "latency-ms": {
            "preprocess": {"p50": _num(preprocess_ms[0]), "p95": _num(preprocess_ms[1])},
            "inference": {"p50": _num(inference_ms[0]), "p95": _num(inference_ms[1])},
        },
        "outbox-depth": int(outbox_depth),
        "dropped": int(dropped),
        "seq": seq,
        "images": int(images),
        "errors": int(errors),
        "uptime-s": _num(uptime_s, 1),
        "last-error": last_error,
        "connected": connected,
        "agent-version": agent_version,
    }


def build_offline(device: str) -> dict:
    """The last-will status: the broker publishes it when the agent vanishes."""
    return {"type": STATUS_TYPE, "timestamp": None, "device": device, "state": "offline"}


def encode(msg: dict) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class Status:
    """A parsed status message. Latencies are (p50, p95) in milliseconds, None when unknown."""

    device: str
    state: str
    timestamp: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    runtime: str | None = None
    images_per_s: float | None = None
    preprocess_ms: tuple[float | None, float | None] = (None, None)
    inference_ms: tuple[float | None, float | None] = (None, None)
    outbox_depth: int = 0
    dropped: int = 0
    seq: int | None = None
    images: int = 0
    errors: int = 0
    uptime_s: float | None = None
    last_error: str | None = None
    connected: bool | None = None
    agent_version: str | None = None

    @property
    def online(self) -> bool:
        """False when the device said it stopped or the broker published its last will."""
        return self.state not in ("offline", "stopped")


def _str(data: dict, key: str, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise MessageError(f"missing '{key}'")
        return None
    if not isinstance(value, str):
        raise MessageError(f"'{key}' must be a string, got {type(value).__name__}")
    return value


def _float(data: dict, key: str, where: str | None = None) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise MessageError(f"'{where or key}' must be a non-negative number")
    return float(value)


def _int(data: dict, key: str, default: int | None = 0) -> int | None:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MessageError(f"'{key}' must be a non-negative integer")
    return value


def _pair(latency: dict, key: str) -> tuple[float | None, float | None]:
    item = latency.get(key) or {}
    if not isinstance(item, dict):
        raise MessageError(f"'latency-ms'.{key} must be an object with p50 and p95")
    return (_float(item, "p50", f"latency-ms.{key}.p50"), _float(item, "p95", f"latency-ms.{key}.p95"))


def parse_status(payload: bytes | str | dict) -> Status:
    """Parse and validate a status message.

    Args:
        payload: the raw MQTT payload, or an already decoded dict.

    Returns:
        The Status.

    Raises:
        MessageError: the payload is not a status message; the text says which part is wrong.
    """
    data = decode_object(payload)
    if data.get("type") != STATUS_TYPE:
        raise MessageError(f"'type' is {data.get('type')!r:.40}, expected {STATUS_TYPE!r}")
    state = _str(data, "state", required=True)
    if state not in STATES:
        raise MessageError(f"'state' is {state!r:.40}, expected one of {', '.join(STATES)}")
    latency = data.get("latency-ms") or {}
    if not isinstance(latency, dict):
        raise MessageError("'latency-ms' must be an object")
    connected = data.get("connected")
    if connected is not None and not isinstance(connected, bool):
        raise MessageError("'connected' must be true, false or null")
    return Status(
        device=_str(data, "device", required=True),
        state=state,
        timestamp=_str(data, "timestamp"),
        model_name=_str(data, "model-name"),
        model_version=_str(data, "model-version"),
        runtime=_str(data, "runtime"),
        images_per_s=_float(data, "images-per-s"),
        preprocess_ms=_pair(latency, "preprocess"),
        inference_ms=_pair(latency, "inference"),
        outbox_depth=_int(data, "outbox-depth"),
        dropped=_int(data, "dropped"),
        seq=_int(data, "seq", None),
        images=_int(data, "images"),
        errors=_int(data, "errors"),
        uptime_s=_float(data, "uptime-s"),
        last_error=_str(data, "last-error"),
        connected=connected,
        agent_version=_str(data, "agent-version"),
    )
