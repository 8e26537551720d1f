"""MQTT subscriptions for the live screen.

A plain MQTT 3.1.1 subscriber on paho for a broker given as host:port (the sandbox's broker, a
local mosquitto). It connects in the background and re-subscribes after every reconnect; the
caller's `on_message(topic, payload)` runs on paho's network thread and must be quick (the live
screen's aggregator takes a lock and returns). `status()` says where the connection is, for the
screen to poll: no callback ever touches a widget.
"""

from __future__ import annotations

import itertools
import os
import threading
from typing import Callable

_ids = itertools.count(1)


class BrokerSubscription:
    """One paho client subscribed to one topic filter at QoS 1.

    Args:
        host: broker host.
        port: broker port.
        topic_filter: what to subscribe to (wildcards allowed).
        on_message: called with (topic, payload bytes) for each message, on paho's thread.
    """

    def __init__(self, host: str, port: int, topic_filter: str,
                 on_message: Callable[[str, bytes], None]) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.host, self.port, self.topic_filter = host, port, topic_filter
        self._on_message = on_message
        self._status = f"connecting to {host}:{port}"
        self._lock = threading.Lock()
        client_id = f"edge-console-{os.getpid()}-{next(_ids)}"
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        self._client.on_connect = self._connected
        self._client.on_disconnect = self._disconnected
        self._client.on_message = self._message
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        self._client.connect_async(host, port, keepalive=30)
        self._client.loop_start()
        self._closed = False

    def _set(self, status: str) -> None:
        with self._lock:
            self._status = status

    def _connected(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            self._set(f"broker {self.host}:{self.port} refused the connection: {reason_code}")
            return
        client.subscribe(self.topic_filter, qos=1)
        self._set(f"subscribed to {self.topic_filter} on {self.host}:{self.port}")

    def _disconnected(self, client, userdata, flags, reason_code, properties=None) -> None:
        if not self._closed:
            self._set(f"disconnected from {self.host}:{self.port} ({reason_code}); reconnecting")

    def _message(self, client, userdata, msg) -> None:
        try:
            self._on_message(msg.topic, msg.payload)
        except Exception as exc:  # a consumer bug must not kill paho's network thread
            self._set(f"message handling failed: {type(exc).__name__}: {exc}")

    def status(self) -> str:
        """Where the connection is, as a sentence."""
        with self._lock:
            return self._status

    def close(self) -> None:
        """Disconnect and stop the network thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()


def broker_subscriber(host: str, port: int) -> Callable[[str, Callable[[str, bytes], None]], BrokerSubscription]:
    """A `Subscribe` function for the broker at host:port."""

    def subscribe(topic_filter: str, on_message: Callable[[str, bytes], None]) -> BrokerSubscription:
        return BrokerSubscription(host, port, topic_filter, on_message)

    return subscribe
