"""The one interface every MQTT transport implements, and what they share."""

from __future__ import annotations

import abc
import concurrent.futures
import functools
import ipaddress
import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

from actions.errors import MqttError

MessageCallback = Callable[[str, bytes], None]
"""Called with (topic, payload) for each message received on a subscription, on the transport's thread."""
DoneCallback = Callable[[BaseException | None], None]
"""Called once per published message, on the transport's thread: None when it was acknowledged
(QoS 1) or written (QoS 0), else the MqttError it failed with."""
TokenCallback = Callable[[object, BaseException | None], None]
"""`publish_batch`'s callback: called once per message with its token and what `DoneCallback` gets."""


@dataclass(frozen=True)
class Will:
    """A last-will message the broker publishes when the client vanishes without DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass
class MqttSettings:
    """Where and how to connect. Secrets (password, key files' contents) are never logged.

    Attributes:
        transport: "auto", "mqtt" (paho), "iot-core" (awsiotsdk MQTT5, mutual TLS) or
            "greengrass-ipc" (the nucleus's connection; see `select_transport`).
        host: broker host for "mqtt".
        port: broker port; None means 1883 without TLS, 8883 with TLS.
        tls: use TLS. None means "TLS unless the host is loopback".
        ca_path: CA certificate (PEM) that signed the broker's certificate; None uses the system store.
        cert_path: client certificate (PEM) for mutual TLS.
        key_path: client private key (PEM) for mutual TLS.
        client_id: MQTT client id (the device name by default).
        username: MQTT username, or None.
        password: MQTT password, or None.
        keepalive: seconds between pings.
        protocol: 3 (MQTT 3.1.1) or 5, for "mqtt".
        iot_endpoint: AWS IoT Core data endpoint (xxxx-ats.iot.<region>.amazonaws.com) for "iot-core".
        max_inflight: QoS 1 messages sent and not yet acknowledged at once.
        allow_plaintext: allow MQTT without TLS to a host that is not loopback (not recommended).
    """

    transport: str = "auto"
    host: str = "127.0.0.1"
    port: int | None = None
    tls: bool | None = None
    ca_path: str | None = None
    cert_path: str | None = None
    key_path: str | None = None
    client_id: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    keepalive: int = 30
    protocol: int = 3
    iot_endpoint: str | None = None
    max_inflight: int = 100
    allow_plaintext: bool = False

    def use_tls(self) -> bool:
        """Whether the connection uses TLS (explicit, or implied by a non-loopback host)."""
        return self.tls if self.tls is not None else not is_loopback(self.host)

    def resolved_port(self) -> int:
        """The port to use: the explicit one, or 8883 with TLS and 1883 without."""
        return self.port or (8883 if self.use_tls() else 1883)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (where plain MQTT does not leave the machine)."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic filter matching with `+` and `#` (for transports that dispatch themselves)."""
    fparts, tparts = topic_filter.split("/"), topic.split("/")
    if topic.startswith("$") and fparts[0] in ("+", "#"):
        return False  # wildcards never match $SYS-like topics at the first level
    for i, part in enumerate(fparts):
        if part == "#":
            return True
        if i >= len(tparts):
            return False
        if part != "+" and part != tparts[i]:
            return False
    return len(fparts) == len(tparts)


def deliver(callback: MessageCallback, topic: str, payload: bytes) -> None:
    """Call a subscriber; its bug is logged, never allowed to kill the network thread."""
    try:
        callback(topic, payload)
    except Exception:
        logging.getLogger("actions.mqtt").exception("subscriber callback failed for a message on %s", topic)


def notify(on_done: DoneCallback, failure: BaseException | None) -> None:
    """Call a publish's done callback; its bug is logged, never allowed to kill the network thread."""
    try:
        on_done(failure)
    except Exception:
        logging.getLogger("actions.mqtt").exception("publish callback failed")


def failed_future(exc: BaseException) -> concurrent.futures.Future:
    """A future that has already failed with `exc`."""
    fut: concurrent.futures.Future = concurrent.futures.Future()
    fut.set_exception(exc)
    return fut


class Transport(abc.ABC):
    """An MQTT connection that reconnects by itself.

    `publish` returns a `concurrent.futures.Future` that completes (result None) when the broker has
    acknowledged a QoS 1 message (PUBACK), or when a QoS 0 message has been written to the socket.
    While the connection is down, publishes wait in the transport and go out after it comes back;
    the future fails with `MqttError` only when the broker refuses the message or the transport is
    closed first. Subscriptions are restored after every reconnect.
    """

    kind: str = "?"

    def __init__(self) -> None:
        self._connected = threading.Event()
        self.on_connection_change: Callable[[bool, str | None], None] | None = None
        self.last_error: str | None = None

    @property
    def connected(self) -> bool:
        """True while the connection to the broker is up."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until connected or `timeout` seconds pass; return whether connected."""
        return self._connected.wait(timeout)

    def _set_connected(self, up: bool, reason: str | None = None) -> None:
        was = self._connected.is_set()
        news = False
        if up:
            self._connected.set()
            self._reported = None
        else:
            self._connected.clear()
            if reason:
                self.last_error = reason
                # A new reason for being down is worth one report; the same one on every retry is not.
                news = reason != getattr(self, "_reported", None)
                self._reported = reason
        if (was != up or news) and self.on_connection_change:
            try:
                self.on_connection_change(up, reason)
            except Exception:  # a listener's bug must not kill the network thread
                pass

    @abc.abstractmethod
    def describe(self) -> str:
        """Where this transport connects, for logs (never a secret)."""

    @abc.abstractmethod
    def connect(self, timeout: float | None = 10.0) -> None:
        """Start connecting and keep reconnecting in the background.

        Args:
            timeout: wait this long for the first connection and raise MqttError if it does not
                come; None returns at once (publishes wait for the connection).
        """

    @abc.abstractmethod
    def publish(self, topic: str, payload: bytes, qos: int = 1,
                retain: bool = False) -> concurrent.futures.Future:
        """Send a message; the future completes when it is acknowledged (see the class doc)."""

    def publish_with_callback(self, topic: str, payload: bytes, qos: int, on_done: DoneCallback,
                              retain: bool = False) -> None:
        """`publish` with a callback instead of a future: `on_done(None)` when the message is
        acknowledged, `on_done(error)` when it fails, on the transport's thread. A transport may
        implement it more cheaply than a future per message; this one goes through `publish`."""
        self.publish(topic, payload, qos=qos, retain=retain).add_done_callback(
            lambda fut: notify(on_done, fut.exception()))

    def publish_batch(self, messages, on_done: TokenCallback) -> None:
        """Send many messages at once, in order: each of `messages` is (token, topic, payload, qos),
        e.g. an outbox row (seq, topic, payload, qos), and `on_done(token, None or error)` is called
        for each as `publish_with_callback` would. A transport may do it without a Python object
        per message; this one goes through `publish_with_callback`."""
        for token, topic, payload, qos, *_ in messages:
            self.publish_with_callback(topic, payload, qos, functools.partial(on_done, token))

    @abc.abstractmethod
    def subscribe(self, topic_filter: str, callback: MessageCallback, qos: int = 1) -> None:
        """Receive messages matching `topic_filter`; `callback(topic, payload)` runs on the network thread."""

    @abc.abstractmethod
    def close(self, timeout: float = 5.0) -> None:
        """Disconnect cleanly (no last will). Unacknowledged publishes fail with MqttError."""

    def __enter__(self) -> "Transport":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def closed_error(kind: str) -> MqttError:
    """The error unacknowledged publishes fail with when their transport closes."""
    return MqttError(f"{kind} transport closed before the broker acknowledged the message; it stays in the outbox")
