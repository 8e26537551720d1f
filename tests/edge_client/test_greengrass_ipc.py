"""The Greengrass IPC transport with the real client (awsiotsdk over awscrt) against
`fixtures.greengrass_ipc`, a stand-in for the nucleus that speaks its event-stream RPC protocol on a
Unix socket and relays PublishToIoTCore to a real mosquitto (standing in for AWS IoT Core).

Checked by what reaches the broker: every message arrives, first arrivals in order, also across a
nucleus restart; refusals (an unauthorized topic, a wrong auth token) are clear one-line errors.
"""

from __future__ import annotations

import queue
import shutil
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest

from actions.errors import ConfigError, MqttError
from actions.mqtt import MqttSettings, open_transport, select_transport
from fixtures.broker import mosquitto_path
from fixtures.greengrass_ipc import decode_messages, encode_message, start_nucleus_ipc
from tests.edge_client.helpers import AgentProcess, Consumer, agent_env, write_config

needs_mosquitto = pytest.mark.skipif(not mosquitto_path(), reason="mosquitto not installed (make broker)")


@pytest.fixture
def nucleus(tmp_path, mqtt_broker, monkeypatch):
    """The stand-in nucleus; its socket and token in this process's environment, as for a component."""
    with start_nucleus_ipc(tmp_path / "ipc.socket", mqtt_broker, allowed=["gg/#", "edge-console/+/status"]) as n:
        for key, value in n.component_env().items():
            monkeypatch.setenv(key, value)
        yield n


class Received:
    """A plain MQTT subscriber on the broker: what AWS IoT Core would have received."""

    def __init__(self, broker, topic_filter: str):
        self.messages: queue.Queue = queue.Queue()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic_filter, qos=1)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload)))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert ready.wait(10)

    def take(self, n: int, timeout: float = 20.0) -> list:
        out, deadline = [], time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            try:
                out.append(self.messages.get(timeout=0.2))
            except queue.Empty:
                pass
        return out

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def test_the_event_stream_codec_round_trips_and_checks_its_crcs():
    message = encode_message({":message-type": 0, ":stream-id": 7, "operation": "aws.greengrass#X",
                              "flag": True, "blob": b"\x00\x01"}, b'{"a": 1}')
    buffer = bytearray(message + message[:10])  # one whole message and the start of another
    assert decode_messages(buffer) == [({":message-type": 0, ":stream-id": 7, "operation": "aws.greengrass#X",
                                         "flag": True, "blob": b"\x00\x01"}, b'{"a": 1}')]
    assert bytes(buffer) == message[:10]
    corrupt = bytearray(message)
    corrupt[-6] ^= 0xFF
    with pytest.raises(ValueError, match="CRC"):
        decode_messages(corrupt)


def test_running_as_a_component_selects_ipc(nucleus):
    assert select_transport(MqttSettings()) == "greengrass-ipc"


def test_publishes_reach_the_cloud_in_order(nucleus, mqtt_broker):
    topic = f"gg/{uuid.uuid4().hex}"
    received = Received(mqtt_broker, topic)
    t = open_transport(MqttSettings(transport="greengrass-ipc"))
    try:
        t.connect(timeout=10)
        assert t.connected and "ipc.socket" in t.describe()
        futures = [t.publish(topic, f"{i}".encode()) for i in range(100)]
        for fut in futures:
            assert fut.result(10) is None
        got = received.take(100)
    finally:
        t.close()
        received.close()
    assert [int(p) for _t, p in got] == list(range(100))


def test_subscriptions_deliver_from_the_cloud(nucleus, mqtt_broker):
    topic = f"gg/{uuid.uuid4().hex}"
    got: queue.Queue = queue.Queue()
    t = open_transport(MqttSettings(transport="greengrass-ipc"))
    cloud = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    try:
        t.connect(timeout=10)
        t.subscribe(topic + "/#", lambda tp, p: got.put((tp, p)))
        time.sleep(0.3)  # the nucleus subscribes on its broker link
        cloud.connect(mqtt_broker.host, mqtt_broker.port)
        cloud.loop_start()
        cloud.publish(topic + "/a", b"from the cloud", qos=1).wait_for_publish(5)
        assert got.get(timeout=10) == (topic + "/a", b"from the cloud")
    finally:
        cloud.loop_stop()
        t.close()


def test_an_unauthorized_topic_says_what_to_grant(nucleus):
    t = open_transport(MqttSettings(transport="greengrass-ipc"))
    try:
        t.connect(timeout=10)
        with pytest.raises(MqttError, match=r"may not publish to other/topic: add the topic to its recipe's "
                                            r"accessControl"):
            t.publish("other/topic", b"x").result(10)
        assert t.publish("gg/still-fine", b"x").result(10) is None  # the connection is unharmed
    finally:
        t.close()


def test_outside_a_component_it_is_a_configuration_error(monkeypatch):
    monkeypatch.delenv("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT", raising=False)
    monkeypatch.delenv("SVCUID", raising=False)
    with pytest.raises(ConfigError, match="run edge-client as a Greengrass component, or set transport"):
        open_transport(MqttSettings(transport="greengrass-ipc"))


def test_a_nucleus_not_there_yet_is_waited_for(tmp_path, mqtt_broker, monkeypatch):
    """connect(timeout=None), as the agent calls it: the socket is not there at first; the
    transport says so, keeps trying, and publishes made meanwhile go out once the nucleus is up."""
    from fixtures.greengrass_ipc import NucleusIpc

    nucleus = NucleusIpc(tmp_path / "ipc.socket", mqtt_broker)
    for key, value in nucleus.component_env().items():
        monkeypatch.setenv(key, value)
    topic = f"gg/{uuid.uuid4().hex}"
    received = Received(mqtt_broker, topic)
    t = open_transport(MqttSettings(transport="greengrass-ipc"))
    try:
        t.connect(timeout=None)
        assert not t.connected and "cannot reach the Greengrass nucleus" in t.last_error
        fut = t.publish(topic, b"early")
        nucleus.start()
        assert fut.result(20) is None
        assert received.take(1) == [(topic, b"early")]
    finally:
        t.close()
        nucleus.close()
        received.close()


def test_a_wrong_auth_token_is_a_clear_error(nucleus, monkeypatch):
    monkeypatch.setenv("SVCUID", "not-the-token")
    t = open_transport(MqttSettings(transport="greengrass-ipc"))
    with pytest.raises(MqttError, match="auth token was refused") as err:
        t.connect(timeout=5)
    assert "\n" not in str(err.value)


def test_a_nucleus_restart_loses_nothing(nucleus, mqtt_broker):
    """Publishing all along while the nucleus restarts twice: the transport reports the drop,
    reconnects, and every message reaches the cloud, first arrivals in order."""
    topic = f"gg/{uuid.uuid4().hex}"
    received = Received(mqtt_broker, topic)
    t = open_transport(MqttSettings(transport="greengrass-ipc"))
    changes: list[bool] = []
    t.on_connection_change = lambda up, reason: changes.append(up)
    futures = []
    try:
        t.connect(timeout=10)
        for i in range(300):
            futures.append(t.publish(topic, f"{i}".encode()))
            if i in (100, 200):
                nucleus.restart()
            time.sleep(0.002)
        for fut in futures:
            assert fut.result(30) is None
        got = received.take(300, timeout=30)
        got += received.take(10_000, timeout=0.5)  # duplicates of messages in flight at a drop
        before_close = list(changes)
    finally:
        t.close()
        received.close()
    seqs = [int(p) for _t, p in got]
    assert set(seqs) == set(range(300))
    first = list(dict.fromkeys(seqs))
    assert first == sorted(first), "first arrivals out of order"
    # Up at connect, down at each drop, up again after each reconnect.
    assert before_close.count(False) >= 2 and before_close[-1] is True, before_close


@pytest.mark.slow
@needs_mosquitto
def test_the_agent_as_a_component_publishes_through_the_nucleus(tmp_path, nucleus, mqtt_broker, model_dir,
                                                                sample_images):
    """`edge-client run` with the nucleus's environment (no broker settings): it picks Greengrass
    IPC and every prediction reaches the cloud, across a nucleus restart."""
    images = tmp_path / "images"
    images.mkdir()
    for name, path in sample_images.items():
        shutil.copy(path, images / f"{name}.jpg")
    topic = f"gg/{uuid.uuid4().hex}/image-classification"
    cfg = write_config(tmp_path / "edge-client.json", device=f"gg-{uuid.uuid4().hex[:6]}",
                       model_dir=str(model_dir), source=str(images), loop=True, interval=0.01, max_images=150,
                       exit_when_done=True, topic=topic, status_interval=1,
                       outbox_path=str(tmp_path / "outbox.sqlite"), log_predictions=False, drain_timeout=20)
    consumer = Consumer(mqtt_broker, topic)
    agent = AgentProcess(cfg, tmp_path / "agent.log", env=agent_env(**nucleus.component_env()))
    try:
        assert consumer.wait_for(lambda c: len(c.seqs()) >= 30, 60), agent.output()
        nucleus.restart()
        assert agent.wait(120) == 0, agent.output()
        assert consumer.wait_seqs(range(1, 151), 30), f"missing {sorted(set(range(1, 151)) - consumer.seqs())[:20]}"
    finally:
        agent.stop()
        consumer.close()
    order = consumer.first_seen_order()
    assert order == sorted(order)
    log = agent.output()
    assert "via Greengrass IPC" in log and "lost the Greengrass IPC connection" in log, log
    # interval 0.01 s is 100 images/s; AWS IoT Core's per-connection quota: published at 90/s at most.
    assert "publishes at most 90 per second" in log and "set max_rate to 90 or less" in log
    assert "Traceback" not in log
