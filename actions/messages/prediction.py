"""The prediction message, as the runbook's inference component published it.

The four runbook keys are kept exactly (existing subscribers and IoT rules match on them):

    {"timestamp": "2022-08-15 03:38:45.282879+00:00",
     "inference-type": "image-classification",
     "inference-description": "Top 5 predictions with score 0.3 or above ",
     "inference-results": [{"Label": "slot, one-armed bandit", "Score": "83.41295623779297"}, ...]}

`Score` is a string holding a percentage, as in the runbook. Beside those keys we add our own:
`device`, `model-name`, `model-version`, `seq` (per device, monotonic, survives restarts, so a
consumer can drop duplicates), `source` (the image) and `latency-ms` (`preprocess`, `inference`).
A runbook-era message without our keys still parses; the extra fields are then None.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

from actions.errors import MessageError
from actions.messages.wire import decode_object

PREDICTION_TOPIC = "gg/sageMakerEdgeManager/image-classification"
INFERENCE_TYPE = "image-classification"


def description(top_k: int, threshold: float) -> str:
    """The runbook's `inference-description`, trailing space included."""
    return f"Top {top_k} predictions with score {threshold:g} or above "


def timestamp_now() -> str:
    """The runbook's timestamp form: `str()` of an aware UTC datetime."""
    return str(datetime.now(timezone.utc))


def build_prediction(classification: Any, *, device: str | None, model_name: str | None,
                     model_version: str | None, seq: int | None, top_k: int, threshold: float,
                     source: str | None = None, timestamp: str | None = None) -> dict:
    """Build a prediction message from a classification.

    Args:
        classification: an `actions.inference.Classification` (its `results` are labels with a
            probability `score` in 0..1, best first; `preprocess_ms` and `inference_ms`).
        device: the device (thing) name.
        model_name: the model's name from its manifest.
        model_version: the model's version from its manifest.
        seq: this device's sequence number for the message.
        top_k: how many results were asked for (goes into the description).
        threshold: the minimum probability asked for (goes into the description).
        source: where the image came from (a file name), or None.
        timestamp: override the timestamp (tests); defaults to now, UTC.

    Returns:
        The message as a dict, keys in wire order.
    """
    msg: dict[str, Any] = {
        "timestamp": timestamp or timestamp_now(),
        "inference-type": INFERENCE_TYPE,
        "inference-description": description(top_k, threshold),
        "inference-results": [
            {"Label": r.label, "Score": repr(float(r.score) * 100.0)} for r in classification.results
        ],
        "device": device,
        "model-name": model_name,
        "model-version": model_version,
        "seq": seq,
        "source": source,
        "latency-ms": {
            "preprocess": round(float(classification.preprocess_ms), 3),
            "inference": round(float(classification.inference_ms), 3),
        },
    }
    return msg


def encode(msg: dict) -> bytes:
    """Compact UTF-8 JSON, non-ASCII kept as is."""
    return json.dumps(msg, ensure_ascii=False, separators=(", ", ": ")).encode("utf-8")


@dataclass(frozen=True)
class Prediction:
    """A parsed prediction message. `results` holds (label, score in percent), best first."""

    timestamp: str
    results: tuple[tuple[str, float], ...]
    description: str
    device: str | None = None
    seq: int | None = None
    model_name: str | None = None
    model_version: str | None = None
    source: str | None = None
    preprocess_ms: float | None = None
    inference_ms: float | None = None

    @property
    def top(self) -> tuple[str, float] | None:
        """The best (label, score percent), or None when no class passed the threshold."""
        return self.results[0] if self.results else None


def _optional_str(data: dict, key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MessageError(f"'{key}' must be a string, got {type(value).__name__}")
    return value


def _parse_results(items: Any) -> tuple[tuple[str, float], ...]:
    if not isinstance(items, list):
        raise MessageError("'inference-results' must be a list of {\"Label\", \"Score\"} objects")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "Label" not in item or "Score" not in item:
            raise MessageError(f"'inference-results'[{i}] must have 'Label' and 'Score'")
        label = item["Label"]
        if not isinstance(label, str):
            raise MessageError(f"'inference-results'[{i}].Label must be a string")
        try:
            score = float(item["Score"])  # the runbook sends it as a string
        except (TypeError, ValueError):
            raise MessageError(f"'inference-results'[{i}].Score is not a number: {item['Score']!r:.40}") from None
        if not math.isfinite(score) or not 0.0 <= score <= 100.0:
            raise MessageError(f"'inference-results'[{i}].Score must be a percentage 0..100, got {score:g}")
        out.append((label, score))
    return tuple(out)


def parse_prediction(payload: bytes | str | dict) -> Prediction:
    """Parse and validate a prediction message.

    Args:
        payload: the raw MQTT payload, or an already decoded dict.

    Returns:
        The Prediction.

    Raises:
        MessageError: the payload is not a prediction message; the text says which part is wrong.
    """
    data = decode_object(payload)
    for key in ("timestamp", "inference-type", "inference-results"):
        if key not in data:
            raise MessageError(f"missing '{key}'")
    if data["inference-type"] != INFERENCE_TYPE:
        raise MessageError(f"'inference-type' is {data['inference-type']!r:.40}, expected {INFERENCE_TYPE!r}")
    timestamp = _optional_str(data, "timestamp") or ""
    seq = data.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0):
        raise MessageError("'seq' must be a non-negative integer")
    latency = data.get("latency-ms") or {}
    if not isinstance(latency, dict):
        raise MessageError("'latency-ms' must be an object")

    def _ms(key: str) -> float | None:
        value = latency.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MessageError(f"'latency-ms'.{key} must be a number")
        return float(value)

    return Prediction(
        timestamp=timestamp,
        results=_parse_results(data["inference-results"]),
        description=_optional_str(data, "inference-description") or "",
        device=_optional_str(data, "device"),
        seq=seq,
        model_name=_optional_str(data, "model-name"),
        model_version=_optional_str(data, "model-version"),
        source=_optional_str(data, "source"),
        preprocess_ms=_ms("preprocess"),
        inference_ms=_ms("inference"),
    )


def iter_json_lines(lines: Iterable[str]) -> Iterable[Prediction]:
    """Parse JSON lines (as `edge-client classify` prints them), skipping blank lines."""
    for line in lines:
        if line.strip():
            yield parse_prediction(line)
