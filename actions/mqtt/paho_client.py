"""Plain MQTT over paho-mqtt 2: TCP or TLS with client certificates, MQTT 3.1.1 or 5."""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import logging
import os
import ssl
import threading
import uuid

import paho.mqtt.client as mqtt

from actions.errors import ConfigError, MqttError
from actions.mqtt.base import (DoneCallback, MessageCallback, MqttSettings, TokenCallback, Transport, Will,
                               closed_error, deliver, is_loopback, notify)


def _check_file(path: str | None, what: str, key: str) -> str | None:
    if path is None:
        return None
    if not os.path.isfile(path):
        raise ConfigError(f"{what} {path} does not exist: set {key} to a readable PEM file")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{what} {path} is not readable by this user: fix its owner or set {key}")
    return path


class PahoTransport(Transport):
    """MQTT through paho-mqtt's network thread, with automatic reconnects.

    paho keeps every unacknowledged QoS 1 message and re-sends it (DUP set) after a reconnect, in
    the order it was published, so a future here completes exactly when its PUBACK arrives.

    At most `max_inflight` messages are with paho at once; the rest wait here, in order, and each
    acknowledgement hands the next one to paho on the network thread. paho's own limit is off: it
    would look through every message it holds on each PUBACK to find the next one to send.
    """

    kind = "mqtt"

    def __init__(self, settings: MqttSettings, *, will: Will | None = None,
                 clean_session: bool = True):
        super().__init__()
        self.settings = settings
        tls = settings.use_tls()
        if not tls and not is_loopback(settings.host) and not settings.allow_plaintext:
            raise ConfigError(
                f"plain MQTT to {settings.host} would send device data unencrypted: set mqtt_tls "
                "true with ca_path (and cert_path/key_path), or allow_plaintext true on a trusted network")
        if bool(settings.cert_path) != bool(settings.key_path):
            raise ConfigError("mutual TLS needs both cert_path and key_path: set both or neither")
        ca = _check_file(settings.ca_path, "CA certificate", "ca_path")
        cert = _check_file(settings.cert_path, "client certificate", "cert_path")
        key = _check_file(settings.key_path, "client private key", "key_path")
        protocol = mqtt.MQTTv5 if settings.protocol == 5 else mqtt.MQTTv311
        client_id = settings.client_id or f"edge-client-{uuid.uuid4().hex[:12]}"
        kwargs = {} if protocol == mqtt.MQTTv5 else {"clean_session": clean_session}
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                   protocol=protocol, **kwargs)
        self._clean_start = clean_session
        self._client.max_inflight_messages_set(0)  # unlimited: `_feed` keeps the limit
        self._client.max_queued_messages_set(0)  # unbounded: the agent's outbox bounds what it hands us
        self._max_inflight = max(1, settings.max_inflight)
        self._client.reconnect_delay_set(1, 30)
        if settings.username:
            self._client.username_pw_set(settings.username, settings.password)
        if tls:
            try:
                self._client.tls_set(ca_certs=ca, certfile=cert, keyfile=key,
                                     cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            except (ssl.SSLError, ValueError) as exc:
                raise ConfigError(f"cannot use the TLS files for {settings.host}: {exc}; check ca_path, "
                                  "cert_path and key_path") from None
        if will:
            self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message
        self._lock = threading.Lock()
        # A message is an entry ((token, topic, payload, qos[, retain]), on_done) and on_done(token,
        # None or the failure) is called once for it: an outbox row and the sender's callback as they
        # are, without a Python object made per message.
        self._pending: dict[int, tuple] = {}  # mid -> entry, until its PUBACK
        self._early: dict[int, object] = {}  # acks that arrived before publish() registered the mid
        self._waiting: collections.deque = collections.deque()  # entries for paho, in order
        self._with_paho = 0  # messages handed to paho and not yet acknowledged (under _lock)
        self._feeding = threading.Lock()  # held by the one thread handing messages to paho
        self._subs: dict[str, tuple[MessageCallback, int]] = {}
        self._started = False
        self._closed = False

    def describe(self) -> str:
        s = self.settings
        scheme = "mqtts" if s.use_tls() else "mqtt"
        return f"{scheme}://{s.host}:{s.resolved_port()}"

    # -- paho callbacks (network thread) ------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            self._set_connected(False, f"{self.describe()} refused the connection: {reason_code}")
            return
        with self._lock:
            subs = list(self._subs.items())
        for topic_filter, (_cb, qos) in subs:
            client.subscribe(topic_filter, qos=qos)
        self._set_connected(True)

    def _on_connect_fail(self, client, userdata):
        self._set_connected(False, f"cannot connect to {self.describe()}; retrying")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        reason = None if reason_code == 0 else f"lost connection to {self.describe()}: {reason_code}"
        self._set_connected(False, reason)

    def _on_publish(self, client, userdata, mid, reason_code, properties=None):
        failure = None
        if reason_code is not None and getattr(reason_code, "is_failure", False):
            failure = MqttError(f"{self.describe()} refused the message: {reason_code}")
        with self._lock:
            self._with_paho -= 1
            entry = self._pending.pop(mid, None)
            if entry is None:
                self._early[mid] = failure
        if entry is not None:
            _done(entry, failure)
        if self._waiting:
            self._feed()

    def _on_message(self, client, userdata, message):
        with self._lock:
            subs = list(self._subs.items())
        for topic_filter, (callback, _qos) in subs:
            if mqtt.topic_matches_sub(topic_filter, message.topic):
                deliver(callback, message.topic, message.payload)

    # -- Transport ------------------------------------------------------------------------------
    def connect(self, timeout: float | None = 10.0) -> None:
        if not self._started:
            self._started = True
            self._client.connect_async(self.settings.host, self.settings.resolved_port(),
                                       keepalive=self.settings.keepalive,
                                       **({"clean_start": self._clean_start}
                                          if self.settings.protocol == 5 else {}))
            self._client.loop_start()
        if timeout is not None and not self.wait_connected(timeout):
            raise MqttError(f"could not connect to {self.describe()} within {timeout:g} s"
                            + (f" ({self.last_error})" if self.last_error else "")
                            + ": check the broker address, port and certificates")

    def publish(self, topic: str, payload: bytes, qos: int = 1,
                retain: bool = False) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self.publish_with_callback(topic, payload, qos, lambda failure: _complete(fut, failure), retain=retain)
        return fut

    def publish_with_callback(self, topic: str, payload: bytes, qos: int, on_done: DoneCallback,
                              retain: bool = False) -> None:
        # No future: `on_done` is called on the network thread when the PUBACK comes.
        if self._closed:
            notify(on_done, closed_error(self.kind))
            return
        self._waiting.append(((None, topic, payload, qos, retain), lambda _token, failure: on_done(failure)))
        self._feed()
        if self._closed:  # closed meanwhile: close() may have looked at the queue before this one came
            self._fail_waiting()

    def publish_batch(self, messages, on_done: TokenCallback) -> None:
        if self._closed:
            for message in messages:
                _done((message, on_done), closed_error(self.kind))
            return
        self._waiting.extend(zip(messages, itertools.repeat(on_done)))
        self._feed()
        if self._closed:
            self._fail_waiting()

    def _feed(self) -> None:
        """Hand waiting messages to paho, in order, while fewer than max_inflight are with it.

        One thread at a time (paho must get them in order). A thread that finds another one
        feeding leaves the work to it: that one looks again after it lets go, so a message never
        waits for an acknowledgement that will not come.
        """
        while self._waiting and self._with_paho < self._max_inflight and not self._closed:
            if not self._feeding.acquire(blocking=False):
                return
            try:
                while self._waiting and self._with_paho < self._max_inflight and not self._closed:
                    self._hand_to_paho(self._waiting.popleft())
            finally:
                self._feeding.release()

    def _hand_to_paho(self, entry: tuple) -> None:
        message = entry[0]
        topic, qos = message[1], message[3]
        try:
            info = self._client.publish(topic, message[2], qos=qos, retain=len(message) > 4 and message[4])
            rc = info.rc
            error = None
            if rc != mqtt.MQTT_ERR_SUCCESS and (rc != mqtt.MQTT_ERR_NO_CONN or qos == 0):
                # NO_CONN is fine at QoS 1: paho keeps the message and sends it after the reconnect.
                error = mqtt.error_string(rc)
        except Exception as exc:  # noqa: BLE001 - a bad topic or payload, or paho failing under us
            # Often on paho's network thread, inside its PUBACK callback: an exception escaping
            # there would end that thread. The message fails alone; its sender retries it.
            error = str(exc) or type(exc).__name__
        if error is not None:
            _done(entry, MqttError(f"cannot publish to {topic}: {error}"))
            return
        with self._lock:
            # Counted here, after paho has it: only the feeding thread adds, and it alone compares.
            self._with_paho += 1
            if info.mid not in self._early:
                self._pending[info.mid] = entry
                return
            failure = self._early.pop(info.mid)
        _done(entry, failure)

    def subscribe(self, topic_filter: str, callback: MessageCallback, qos: int = 1) -> None:
        with self._lock:
            self._subs[topic_filter] = (callback, qos)
        if self.connected:
            self._client.subscribe(topic_filter, qos=qos)

    def close(self, timeout: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()
        self._set_connected(False)
        with self._lock:
            pending, self._pending = list(self._pending.values()), {}
        for entry in pending:
            _done(entry, closed_error(self.kind))
        self._fail_waiting()

    def _fail_waiting(self) -> None:
        with self._feeding:
            failed = list(self._waiting)
            self._waiting.clear()
        for entry in failed:
            _done(entry, closed_error(self.kind))

    @property
    def in_flight(self) -> int:
        """Messages handed to paho and not yet acknowledged (at most `max_inflight`)."""
        return self._with_paho

    @property
    def waiting(self) -> int:
        """Messages waiting here for room among the ones in flight."""
        return len(self._waiting)


def _done(entry: tuple, failure: BaseException | None) -> None:
    """Tell a message's sender how it went; its bug is logged, never allowed to kill the network thread."""
    try:
        entry[1](entry[0][0], failure)
    except Exception:
        logging.getLogger("actions.mqtt").exception("publish callback failed")


def _complete(fut: concurrent.futures.Future, failure: BaseException | None) -> None:
    try:
        if failure is None:
            fut.set_result(None)
        else:
            fut.set_exception(failure)
    except concurrent.futures.InvalidStateError:
        pass  # close() failed it first; the PUBACK that raced it changes nothing
