"""The MQTT transports against a real broker (mosquitto when installed, else amqtt)."""

from __future__ import annotations

import queue
import threading
import time
import uuid

import pytest

from actions.errors import ConfigError, MqttError
from actions.mqtt import MqttSettings, Will, open_transport, select_transport, topic_matches
from fixtures.broker import mosquitto_path

needs_mosquitto = pytest.mark.skipif(not mosquitto_path(), reason="mosquitto not installed (make broker)")


def _plain(broker, **kw) -> MqttSettings:
    return MqttSettings(transport="mqtt", host=broker.host, port=broker.port, **kw)


def _collector(transport, topic_filter):
    got: queue.Queue = queue.Queue()
    transport.subscribe(topic_filter, lambda t, p: got.put((t, p)))
    return got


def _drain(got: queue.Queue, n: int, timeout: float = 10.0, done=None) -> list:
    """Collect messages until `n` arrived (or `done(messages)` holds), or `timeout` passes."""
    out, deadline = [], time.monotonic() + timeout
    while (not done(out) if done else len(out) < n) and time.monotonic() < deadline:
        try:
            out.append(got.get(timeout=max(0.01, deadline - time.monotonic())))
        except queue.Empty:
            break
    return out


def test_paho_publish_is_acknowledged_and_delivered(mqtt_broker):
    topic = f"t/{uuid.uuid4().hex}"
    with open_transport(_plain(mqtt_broker)) as sub, open_transport(_plain(mqtt_broker)) as pub:
        sub.connect(timeout=5)
        got = _collector(sub, topic + "/#")
        time.sleep(0.3)  # the SUBACK; the subscription is restored on reconnect too
        pub.connect(timeout=5)
        futures = [pub.publish(f"{topic}/{i}", f"m{i}".encode()) for i in range(50)]
        for fut in futures:
            assert fut.result(5) is None
        msgs = _drain(got, 50)
    assert [p for _t, p in msgs] == [f"m{i}".encode() for i in range(50)]
    assert msgs[7][0] == f"{topic}/7"


def test_paho_mutual_tls(mqtt_broker):
    cert, key = mqtt_broker.client_cert("device-tls")
    settings = MqttSettings(transport="mqtt", host=mqtt_broker.host, port=mqtt_broker.tls_port, tls=True,
                            ca_path=str(mqtt_broker.ca_path), cert_path=str(cert), key_path=str(key))
    topic = f"t/{uuid.uuid4().hex}"
    with open_transport(settings) as t:
        t.connect(timeout=5)
        assert t.describe().startswith("mqtts://")
        got = _collector(t, topic)
        time.sleep(0.3)
        t.publish(topic, b"secure").result(5)
        assert _drain(got, 1) == [(topic, b"secure")]


def test_paho_tls_without_client_cert_does_not_connect(mqtt_broker):
    if mqtt_broker.kind != "mosquitto":
        pytest.skip("amqtt cannot insist on a client certificate (CERT_OPTIONAL)")
    settings = MqttSettings(transport="mqtt", host=mqtt_broker.host, port=mqtt_broker.tls_port, tls=True,
                            ca_path=str(mqtt_broker.ca_path))
    with open_transport(settings) as t:
        with pytest.raises(MqttError, match="could not connect"):
            t.connect(timeout=2)


@needs_mosquitto
@pytest.mark.parametrize("max_inflight", [100, 5])  # 5: most of them wait in the transport, not in paho
def test_paho_publishes_survive_a_broker_restart(fresh_broker, max_inflight):
    """Publishes made while the broker is down complete after it returns, in order, none lost."""
    topic = f"t/{uuid.uuid4().hex}"
    sub = open_transport(_plain(fresh_broker, client_id="persistent-sub"), clean_session=False)
    sub.connect(timeout=5)
    got = _collector(sub, topic)
    time.sleep(0.3)
    pub = open_transport(_plain(fresh_broker, max_inflight=max_inflight))
    pub.connect(timeout=5)
    try:
        first = [pub.publish(topic, f"{i}".encode()) for i in range(20)]
        for fut in first:
            fut.result(5)
        fresh_broker.stop()
        during = [pub.publish(topic, f"{i}".encode()) for i in range(20, 40)]
        time.sleep(0.5)
        assert not any(f.done() for f in during), "acknowledged while the broker was down"
        fresh_broker.start()
        for fut in during:
            fut.result(20)
        # At least once: the persistent session may hand some messages over twice after a restart.
        msgs = _drain(got, 40, timeout=20, done=lambda m: len({p for _t, p in m}) >= 40)
    finally:
        pub.close()
        sub.close()
    seqs = [int(p) for _t, p in msgs]
    assert sorted(set(seqs)) == list(range(40))
    first_seen = list(dict.fromkeys(seqs))
    assert first_seen == sorted(first_seen)


def test_publishes_beyond_max_inflight_wait_their_turn(mqtt_broker):
    """Four threads publish 400 messages each with room for 8 in flight: never more than 8 are with
    paho, every message is acknowledged, and each thread's messages arrive in its order."""
    topic = f"t/{uuid.uuid4().hex}"
    threads, per_thread, limit = 4, 400, 8
    with open_transport(_plain(mqtt_broker)) as sub, \
            open_transport(_plain(mqtt_broker, max_inflight=limit)) as pub:
        sub.connect(timeout=5)
        got = _collector(sub, topic + "/#")
        time.sleep(0.3)
        pub.connect(timeout=5)
        futures: list = []
        seen = {"most": 0, "waited": 0}
        publishing = threading.Event()

        def watch():
            while publishing.is_set():
                seen["most"] = max(seen["most"], pub.in_flight)
                seen["waited"] = max(seen["waited"], pub.waiting)

        def publish(k: int):
            futures.extend(pub.publish(f"{topic}/{k}", f"{i}".encode()) for i in range(per_thread))

        publishing.set()
        watcher = threading.Thread(target=watch)
        watcher.start()
        workers = [threading.Thread(target=publish, args=(k,)) for k in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        try:
            for fut in futures:
                assert fut.result(20) is None
        finally:
            publishing.clear()
            watcher.join()
        msgs = _drain(got, threads * per_thread, timeout=20)
    assert 0 < seen["most"] <= limit
    assert seen["waited"] > 0, "the burst never outran the window: the limit was not exercised"
    for k in range(threads):
        assert [int(p) for t, p in msgs if t == f"{topic}/{k}"] == list(range(per_thread))
    assert pub.in_flight == 0 and pub.waiting == 0


def test_a_message_paho_refuses_fails_alone(mqtt_broker):
    """A topic paho refuses (a wildcard) fails that message's future; the ones after it still go."""
    topic = f"t/{uuid.uuid4().hex}"
    with open_transport(_plain(mqtt_broker, max_inflight=1)) as t:
        t.connect(timeout=5)
        futures = [t.publish(topic, b"1"), t.publish(topic + "/#", b"bad"), t.publish(topic, b"2")]
        assert futures[0].result(5) is None
        with pytest.raises(MqttError, match="cannot publish to .*/#"):
            futures[1].result(5)
        assert futures[2].result(5) is None
        assert t.in_flight == 0


def test_close_fails_unacknowledged_publishes(tmp_path):
    # Nothing listens on this port, so no publish can ever be acknowledged.
    from fixtures.broker import free_port

    t = open_transport(MqttSettings(transport="mqtt", host="127.0.0.1", port=free_port()))
    t.connect(timeout=None)
    fut = t.publish("t/x", b"never")
    assert not fut.done()
    t.close()
    with pytest.raises(MqttError, match="outbox"):
        fut.result(1)


def test_plaintext_beyond_loopback_is_refused():
    with pytest.raises(ConfigError, match="unencrypted"):
        open_transport(MqttSettings(transport="mqtt", host="broker.example.com", tls=False))


def test_missing_certificate_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="cert_path"):
        open_transport(MqttSettings(transport="mqtt", host="127.0.0.1", tls=True,
                                    cert_path=str(tmp_path / "nope.pem"), key_path=str(tmp_path / "k")))


@needs_mosquitto
def test_iot_core_mqtt5_mutual_tls_against_mosquitto(mqtt_broker):
    """awsiotsdk's MQTT5 builder with the thing's certificate, against mosquitto's mTLS listener."""
    cert, key = mqtt_broker.client_cert("thing-iot")
    settings = MqttSettings(transport="iot-core", iot_endpoint="localhost", port=mqtt_broker.tls_port,
                            ca_path=str(mqtt_broker.ca_path), cert_path=str(cert), key_path=str(key),
                            client_id=f"thing-{uuid.uuid4().hex[:8]}")
    topic = f"t/{uuid.uuid4().hex}"
    observer = open_transport(_plain(mqtt_broker))
    observer.connect(timeout=5)
    got = _collector(observer, topic + "/+")
    time.sleep(0.3)
    t = open_transport(settings, will=Will(f"{topic}/will", b"gone"))
    try:
        assert type(t).__name__ == "IotCoreTransport"
        t.connect(timeout=10)
        own = _collector(t, topic + "/echo")
        time.sleep(0.5)
        for i in range(10):
            t.publish(f"{topic}/data", f"{i}".encode()).result(5)
        t.publish(f"{topic}/echo", b"back").result(5)
        assert _drain(own, 1) == [(f"{topic}/echo", b"back")]
    finally:
        t.close()
        msgs = _drain(got, 12, timeout=3)  # 10 data, 1 echo, and a will if close() were unclean
        observer.close()
    assert [p for tp, p in msgs if tp.endswith("/data")] == [f"{i}".encode() for i in range(10)]
    assert (f"{topic}/will", b"gone") not in msgs  # a clean close sends no will


def test_iot_core_needs_certificate(tmp_path):
    with pytest.raises(ConfigError, match="cert_path"):
        open_transport(MqttSettings(transport="iot-core", iot_endpoint="x-ats.iot.eu-west-1.amazonaws.com"))


@pytest.mark.parametrize("settings, env, host_given, expected", [
    (MqttSettings(), {}, False, "mqtt"),
    (MqttSettings(), {"AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": "/gg/ipc.socket"}, False,
     "greengrass-ipc"),
    # The sandbox's core device gives the broker address: use it even under a nucleus socket.
    (MqttSettings(), {"AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": "/gg/ipc.socket"}, True, "mqtt"),
    (MqttSettings(iot_endpoint="a-ats.iot.us-east-1.amazonaws.com"), {}, False, "iot-core"),
    (MqttSettings(transport="mqtt"), {"AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": "/s"}, False, "mqtt"),
    (MqttSettings(transport="Greengrass-IPC"), {}, False, "greengrass-ipc"),
])
def test_transport_selection(settings, env, host_given, expected):
    assert select_transport(settings, env, host_given=host_given) == expected


def test_unknown_transport_is_refused():
    with pytest.raises(ConfigError, match="EDGE_CLIENT_TRANSPORT"):
        select_transport(MqttSettings(transport="carrier-pigeon"), {})


def test_greengrass_ipc_without_nucleus_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT", str(tmp_path / "no.socket"))
    monkeypatch.setenv("SVCUID", "test")
    t = open_transport(MqttSettings(transport="greengrass-ipc"))
    with pytest.raises(MqttError, match="Greengrass nucleus"):
        t.connect()


@pytest.mark.parametrize("flt, topic, ok", [
    ("a/+/c", "a/b/c", True), ("a/#", "a/b/c", True), ("a/#", "a", True), ("a/+", "a/b/c", False),
    ("#", "$SYS/x", False), ("a/b", "a/b", True), ("a/b", "a/c", False),
])
def test_topic_matches(flt, topic, ok):
    assert topic_matches(flt, topic) is ok


def test_a_failing_subscriber_does_not_kill_the_connection(mqtt_broker):
    topic = f"t/{uuid.uuid4().hex}"
    got: queue.Queue = queue.Queue()

    def flaky(t, payload):
        if payload == b"boom":
            raise ValueError("a bug in the subscriber")
        got.put(payload)

    with open_transport(_plain(mqtt_broker)) as t:
        t.connect(timeout=5)
        t.subscribe(topic, flaky)
        time.sleep(0.3)
        t.publish(topic, b"boom").result(5)
        t.publish(topic, b"after").result(5)
        assert _drain(got, 1) == [b"after"]
        assert t.connected
