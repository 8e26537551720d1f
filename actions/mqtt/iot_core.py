"""AWS IoT Core over the AWS IoT Device SDK v2 MQTT5 client, mutual TLS with the thing's certificate.

The SDK's builder talks to any MQTT 5 broker that does mutual TLS, which is how the tests run it
against a local mosquitto. awscrt is imported when the transport is built, not at import time.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import uuid

from actions.errors import ConfigError, MqttError
from actions.mqtt.base import (MessageCallback, MqttSettings, Transport, Will, closed_error, deliver,
                               failed_future, topic_matches)


class IotCoreTransport(Transport):
    """MQTT 5 to AWS IoT Core (or any MQTT 5 broker with mutual TLS) through awscrt.

    QoS 1 publishes that were not acknowledged when the connection dropped are re-queued by the
    client (offline queue behaviour FAIL_NON_QOS1_PUBLISH_ON_DISCONNECT) and re-sent after it comes back.
    """

    kind = "iot-core"

    def __init__(self, settings: MqttSettings, *, will: Will | None = None):
        super().__init__()
        from awscrt import mqtt5
        from awsiot import mqtt5_client_builder

        self._mqtt5 = mqtt5
        self.settings = settings
        endpoint = settings.iot_endpoint or settings.host
        if not endpoint:
            raise ConfigError("iot_endpoint is not set: use `aws iot describe-endpoint --endpoint-type "
                              "iot:Data-ATS` and set iot_endpoint (EDGE_CLIENT_IOT_ENDPOINT)")
        for key in ("cert_path", "key_path"):
            path = getattr(settings, key)
            if not path:
                raise ConfigError(f"AWS IoT Core needs the device certificate and key: set {key}")
            if not os.path.isfile(path):
                raise ConfigError(f"{key} {path} does not exist: point {key} at the device's PEM file")
        if settings.ca_path and not os.path.isfile(settings.ca_path):
            raise ConfigError(f"ca_path {settings.ca_path} does not exist: point it at AmazonRootCA1.pem")
        self._endpoint = endpoint
        self._port = settings.port or 8883
        self._lock = threading.Lock()
        self._subs: dict[str, tuple[MessageCallback, int]] = {}
        self._stopped = threading.Event()
        self._first_attempt = threading.Event()
        self._closed = False
        self._started = False
        self._pending: set[concurrent.futures.Future] = set()
        kwargs = {}
        if will:
            kwargs["will"] = mqtt5.PublishPacket(topic=will.topic, payload=will.payload,
                                                 qos=mqtt5.QoS(will.qos), retain=will.retain)
        self._client = mqtt5_client_builder.mtls_from_path(
            endpoint=endpoint, port=self._port,
            cert_filepath=settings.cert_path, pri_key_filepath=settings.key_path,
            ca_filepath=settings.ca_path,
            client_id=settings.client_id or f"edge-client-{uuid.uuid4().hex[:12]}",
            keep_alive_interval_sec=settings.keepalive,
            offline_queue_behavior=mqtt5.ClientOperationQueueBehaviorType.FAIL_NON_QOS1_PUBLISH_ON_DISCONNECT,
            min_reconnect_delay_ms=500, max_reconnect_delay_ms=30_000,
            enable_metrics_collection=False,  # no telemetry: keep the SDK version out of CONNECT
            on_publish_received=self._on_publish_received,
            on_lifecycle_connection_success=self._on_success,
            on_lifecycle_connection_failure=self._on_failure,
            on_lifecycle_disconnection=self._on_disconnection,
            on_lifecycle_stopped=lambda data: self._stopped.set(),
            **kwargs,
        )

    def describe(self) -> str:
        return f"mqtts://{self._endpoint}:{self._port} (MQTT5, mutual TLS)"

    # -- awscrt callbacks ----------------------------------------------------------------------
    def _on_success(self, data) -> None:
        self._set_connected(True)
        self._first_attempt.set()
        with self._lock:
            subs = list(self._subs.items())
        for topic_filter, (_cb, qos) in subs:
            self._send_subscribe(topic_filter, qos)

    def _on_failure(self, data) -> None:
        self.last_error = f"cannot connect to {self.describe()}: {data.exception}"
        self._first_attempt.set()

    def _on_disconnection(self, data) -> None:
        self._set_connected(False, f"lost connection to {self.describe()}: {data.exception}")

    def _on_publish_received(self, data) -> None:
        packet = data.publish_packet
        with self._lock:
            subs = list(self._subs.items())
        for topic_filter, (callback, _qos) in subs:
            if topic_matches(topic_filter, packet.topic):
                deliver(callback, packet.topic, bytes(packet.payload or b""))

    # -- Transport ------------------------------------------------------------------------------
    def connect(self, timeout: float | None = 10.0) -> None:
        if not self._started:
            self._started = True
            self._client.start()
        if timeout is not None and not self.wait_connected(timeout):
            raise MqttError(f"could not connect to {self.describe()} within {timeout:g} s"
                            + (f" ({self.last_error})" if self.last_error else "")
                            + ": check iot_endpoint, the certificate and its policy")

    def publish(self, topic: str, payload: bytes, qos: int = 1,
                retain: bool = False) -> concurrent.futures.Future:
        if self._closed:
            return failed_future(closed_error(self.kind))
        mqtt5 = self._mqtt5
        out: concurrent.futures.Future = concurrent.futures.Future()
        try:
            crt_future = self._client.publish(mqtt5.PublishPacket(
                topic=topic, payload=payload, qos=mqtt5.QoS(qos), retain=retain))
        except Exception as exc:  # awscrt raises on invalid packets (topic, size)
            return failed_future(MqttError(f"cannot publish to {topic}: {exc}"))
        with self._lock:
            self._pending.add(out)

        def done(f: concurrent.futures.Future) -> None:
            with self._lock:
                self._pending.discard(out)
            if out.done():
                return
            exc = f.exception()
            if exc is not None:
                out.set_exception(MqttError(f"publish to {topic} failed: {exc}"))
                return
            puback = getattr(f.result(), "puback", None)
            code = getattr(puback, "reason_code", None)
            if code is not None and int(code) >= 0x80:
                out.set_exception(MqttError(f"{self.describe()} refused the message: {code!r}"))
            else:
                out.set_result(None)

        crt_future.add_done_callback(done)
        return out

    def _send_subscribe(self, topic_filter: str, qos: int) -> None:
        mqtt5 = self._mqtt5
        self._client.subscribe(mqtt5.SubscribePacket(
            subscriptions=[mqtt5.Subscription(topic_filter=topic_filter, qos=mqtt5.QoS(qos))]))

    def subscribe(self, topic_filter: str, callback: MessageCallback, qos: int = 1) -> None:
        with self._lock:
            self._subs[topic_filter] = (callback, qos)
        if self.connected:
            self._send_subscribe(topic_filter, qos)

    def close(self, timeout: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        if self._started:
            # Without a DISCONNECT packet the client just drops the connection and the broker
            # publishes our last will ("offline") although we stopped cleanly.
            mqtt5 = self._mqtt5
            self._client.stop(mqtt5.DisconnectPacket(reason_code=mqtt5.DisconnectReasonCode.NORMAL_DISCONNECTION))
            self._stopped.wait(timeout)
        self._set_connected(False)
        with self._lock:
            pending, self._pending = list(self._pending), set()
        for fut in pending:
            if not fut.done():
                fut.set_exception(closed_error(self.kind))
