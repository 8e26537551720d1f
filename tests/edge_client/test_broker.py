"""The broker fixture: a real mosquitto (or amqtt) that speaks MQTT, with TLS and restarts."""

from __future__ import annotations

import queue
import ssl
import stat
import uuid

import paho.mqtt.client as mqtt
import pytest

from fixtures.broker import BrokerError, mosquitto_path, start_broker


def _client(broker, *, tls: bool = False, cert=None, protocol=mqtt.MQTTv311, client_id=None):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or uuid.uuid4().hex,
                         protocol=protocol)
    if tls:
        client.tls_set(ca_certs=str(broker.ca_path), certfile=cert and str(cert[0]),
                       keyfile=cert and str(cert[1]), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    return client


def _roundtrip(broker, port, **kw) -> bytes:
    got: queue.Queue = queue.Queue()
    sub = _client(broker, **kw)
    subscribed = queue.Queue()
    sub.on_message = lambda c, u, m: got.put(m.payload)
    sub.on_subscribe = lambda *a: subscribed.put(True)
    topic = f"test/{uuid.uuid4().hex}"
    sub.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
    sub.connect(broker.host, port)
    sub.loop_start()
    try:
        subscribed.get(timeout=5)
        pub = _client(broker, **kw)
        pub.connect(broker.host, port)
        pub.loop_start()
        pub.publish(topic, b"hello", qos=1).wait_for_publish(5)
        pub.loop_stop()
        pub.disconnect()
        return got.get(timeout=5)
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_plain_roundtrip(mqtt_broker):
    assert _roundtrip(mqtt_broker, mqtt_broker.port) == b"hello"


def test_tls_with_client_certificate(mqtt_broker):
    cert = mqtt_broker.client_cert("device-a")
    assert stat.S_IMODE(cert[1].stat().st_mode) == 0o600
    assert _roundtrip(mqtt_broker, mqtt_broker.tls_port, tls=True, cert=cert) == b"hello"


def test_tls_without_client_certificate_is_refused(mqtt_broker):
    if mqtt_broker.kind != "mosquitto":
        pytest.skip("amqtt cannot insist on a client certificate (CERT_OPTIONAL)")
    client = _client(mqtt_broker, tls=True)
    with pytest.raises((ssl.SSLError, OSError)):
        client.connect(mqtt_broker.host, mqtt_broker.tls_port)
        # TLS 1.3 reports a missing client certificate only on the first read.
        for _ in range(20):
            rc = client.loop(0.2)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                raise OSError(f"connection dropped: {rc}")
            if client.is_connected():
                break
    assert not client.is_connected()


@pytest.mark.skipif(not mosquitto_path(), reason="mosquitto not installed (make broker)")
def test_restart_keeps_port_and_retained(fresh_broker):
    pub = _client(fresh_broker)
    pub.connect(fresh_broker.host, fresh_broker.port)
    pub.loop_start()
    pub.publish("test/retained", b"kept", qos=1, retain=True).wait_for_publish(5)
    pub.loop_stop()
    pub.disconnect()
    old_port = fresh_broker.port
    fresh_broker.restart()
    assert fresh_broker.port == old_port and fresh_broker.running
    got: queue.Queue = queue.Queue()
    sub = _client(fresh_broker)
    sub.on_message = lambda c, u, m: got.put(m.payload)
    sub.on_connect = lambda c, u, f, rc, p=None: c.subscribe("test/retained", qos=1)
    sub.connect(fresh_broker.host, fresh_broker.port)
    sub.loop_start()
    try:
        assert got.get(timeout=5) == b"kept"
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_amqtt_fallback(tmp_path):
    with start_broker(tmp_path, kind="amqtt") as broker:
        assert broker.kind == "amqtt"
        assert _roundtrip(broker, broker.port) == b"hello"
    assert not broker.running


def test_client_cert_without_tls_says_what_to_do(tmp_path):
    with start_broker(tmp_path) as broker:
        with pytest.raises(BrokerError, match="tls=True"):
            broker.client_cert("x")
