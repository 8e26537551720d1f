"""What every message kind shares on the wire: the size limit and decoding a payload to a JSON object."""

from __future__ import annotations

import json
from typing import Any

from actions.errors import MessageError

MAX_PAYLOAD_BYTES = 128 * 1024  # AWS IoT Core's limit; anything larger is not ours.


def decode_object(payload: bytes | bytearray | str | dict) -> dict[str, Any]:
    """Decode an MQTT payload (or an already decoded dict) to a JSON object.

    Raises:
        MessageError: too large, not UTF-8, not JSON, or not an object; the text says which.
    """
    if isinstance(payload, (bytes, bytearray)):
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise MessageError(f"payload is {len(payload)} bytes, more than the {MAX_PAYLOAD_BYTES} a message may have")
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise MessageError("payload is not UTF-8 text") from None
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise MessageError(f"payload is not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(payload, dict):
        raise MessageError("payload must be a JSON object")
    return payload
