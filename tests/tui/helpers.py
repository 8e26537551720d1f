"""Helpers for the console tests: a real MQTT publisher and prediction payloads."""

from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from actions.messages.prediction import PREDICTION_TOPIC


def payload(device: str | None, labels: list[tuple[str, float]], seq: int = 1, **extra) -> bytes:
    """A prediction message in the wire format (runbook keys, plus ours when `device` is given)."""
    msg = {
        "timestamp": "2026-01-01 12:00:00.000000+00:00",
        "inference-type": "image-classification",
        "inference-description": "Top 5 predictions with score 0.3 or above ",
        "inference-results": [{"Label": label, "Score": repr(score)} for label, score in labels],
    }
    if device is not None:
        msg.update({"device": device, "model-name": "efficientnet-lite0", "model-version": "1.0.0",
                    "seq": seq, "source": "chelsea.jpg"})
    msg.update(extra)
    return json.dumps(msg).encode()


class Publisher:
    """A real paho publisher to the test broker (QoS 1, waits for each PUBACK)."""

    def __init__(self, host: str, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{time.monotonic_ns()}")
        self.client.connect(host, port)
        self.client.loop_start()

    def publish(self, data: bytes, topic: str = PREDICTION_TOPIC) -> None:
        self.client.publish(topic, data, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def sync(fn):
    """Run an async test body in its own event loop (no pytest-asyncio needed)."""
    import asyncio
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


def screen_text(app) -> str:
    """What the terminal shows now, as plain text lines (as a person would read it)."""
    from textual._compositor import visible_screen_stack

    compositor = app.screen._compositor
    visible_screen_stack.set(app._background_screens)
    chops = compositor._render_chops(compositor.size.region, lambda y: True)
    return "\n".join("".join(strip.text for strip in chop.values()) for chop in chops)


async def wait_for(pilot, predicate, timeout: float = 10.0) -> None:
    """Let the app run until `predicate()` is true (messages cross a real broker, calls a real server)."""
    import asyncio

    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("timed out waiting for the screen to update")
        await pilot.pause(0.05)
