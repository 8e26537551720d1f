"""MQTT subscriptions for the console, on the shared `actions.mqtt` transports.

`subscriber(settings)` gives a `Subscribe` function (see tui.services): each call opens a
transport, subscribes, and connects in the background, re-subscribing after every reconnect. The
caller's `on_message(topic, payload)` runs on the transport's network thread and must be quick (the
live screen's aggregator takes a lock and returns). `status()` says where the connection is, for
the screen to poll: no callback ever touches a widget.
"""

from __future__ import annotations

import itertools
import os
import threading
from typing import Callable

from actions.mqtt import MqttSettings, open_transport

_ids = itertools.count(1)

OnMessage = Callable[[str, bytes], None]


class TransportSubscription:
    """One transport subscribed to one topic filter at QoS 1.

    Args:
        settings: where to connect (`actions.mqtt.MqttSettings`); a client id is made when missing.
        topic_filter: what to subscribe to (wildcards allowed).
        on_message: called with (topic, payload bytes) for each message, on the network thread.
        kind: the transport kind ("mqtt", "iot-core"); None lets `actions.mqtt` choose.
    """

    def __init__(self, settings: MqttSettings, topic_filter: str, on_message: OnMessage,
                 kind: str | None = None) -> None:
        if not settings.client_id:
            settings = MqttSettings(**{**settings.__dict__,
                                       "client_id": f"edge-console-{os.getpid()}-{next(_ids)}"})
        self.topic_filter = topic_filter
        self._on_message = on_message
        self._lock = threading.Lock()
        self._problem: str | None = None
        self.transport = open_transport(settings, kind=kind)
        self.transport.subscribe(topic_filter, self._message, qos=1)
        self.transport.connect(timeout=None)  # keeps trying in the background

    def _message(self, topic: str, payload: bytes) -> None:
        try:
            self._on_message(topic, payload)
        except Exception as exc:  # a consumer bug must not kill the network thread
            with self._lock:
                self._problem = f"message handling failed: {type(exc).__name__}: {exc}"

    def status(self) -> str:
        """Where the connection is, as a sentence ("subscribed to ..." when all is well)."""
        with self._lock:
            if self._problem:
                return self._problem
        where = self.transport.describe()
        if self.transport.connected:
            return f"subscribed to {self.topic_filter} on {where}"
        if self.transport.last_error:
            return f"disconnected: {self.transport.last_error}"
        return f"connecting to {where}"

    def close(self) -> None:
        """Disconnect and stop the network thread (idempotent)."""
        self.transport.close()


def subscriber(settings: MqttSettings, kind: str | None = None) -> Callable[[str, OnMessage], TransportSubscription]:
    """A `Subscribe` function that connects with `settings`."""

    def subscribe(topic_filter: str, on_message: OnMessage) -> TransportSubscription:
        return TransportSubscription(settings, topic_filter, on_message, kind=kind)

    return subscribe


def broker_subscriber(host: str, port: int) -> Callable[[str, OnMessage], TransportSubscription]:
    """A `Subscribe` function for a plain MQTT broker at host:port (the sandbox's, a local one)."""
    return subscriber(MqttSettings(transport="mqtt", host=host, port=port), kind="mqtt")
