"""A status message is about the device its topic names, not the one its payload claims.

The thing policy keeps a device off `edge-console/<other>/status`, but not from writing
`{"device": "other"}` on its own topic; `edge-console fleet --mqtt-host` must not believe it.
"""

from __future__ import annotations

import uuid

import pytest

from actions import fleet
from actions.errors import MessageError
from actions.messages.status import build_status, encode, status_topic
from actions.mqtt import open_transport
from actions.mqtt.base import MqttSettings


def _status(device: str, **kw) -> bytes:
    return encode(build_status(device=device, state="running", **kw))


def test_the_device_is_the_topic_level_at_the_filters_plus():
    assert fleet.topic_device("edge-console/dev-a/status") == "dev-a"
    assert fleet.topic_device("edge-console/dev-a/other") is None
    assert fleet.topic_device("edge-console//status") is None
    assert fleet.topic_device("edge-console/a/b/status") is None
    assert fleet.status_template("fleet/+/health") == "fleet/{device}/health"
    assert fleet.topic_device("fleet/d7/health", "fleet/+/health") == "d7"
    # A literal topic or a multi-level filter is read with the default template.
    assert fleet.topic_device("edge-console/dev-a/status", "edge-console/#") == "dev-a"
    assert fleet.topic_device("edge-console/dev-a/status", "edge-console/dev-a/status") == "dev-a"


def test_a_payload_claiming_another_device_is_malformed():
    status = fleet.status_from_message("edge-console/dev-a/status", _status("dev-a", model_version="2"))
    assert status.device == "dev-a" and status.model_version == "2"
    with pytest.raises(MessageError, match="device 'dev-b' in the payload does not match the topic's 'dev-a'"):
        fleet.status_from_message("edge-console/dev-a/status", _status("dev-b"))
    with pytest.raises(MessageError, match="does not name a device"):
        fleet.status_from_message("somewhere/else", _status("dev-a"))
    with pytest.raises(MessageError):
        fleet.status_from_message("edge-console/dev-a/status", b"{not json")


def test_collect_statuses_keys_by_topic_through_a_real_broker(mqtt_broker):
    uid = uuid.uuid4().hex[:8]
    a, b = f"dev-a-{uid}", f"dev-b-{uid}"
    topic = status_topic  # edge-console/<device>/status, as the edge client publishes it
    settings = MqttSettings(host=mqtt_broker.host, port=mqtt_broker.port, client_id=f"pub-{uid}")
    with open_transport(settings, kind="mqtt") as pub:
        pub.connect()
        pub.publish(topic(b), _status(b, model_version="1.0.0"), qos=1, retain=True).result(10)
        # dev-a, on its own topic, says it is dev-b with another model version.
        pub.publish(topic(a), _status(b, model_version="6.6.6", images_per_s=999.0), qos=1, retain=True).result(10)
        pub.publish(topic(f"dev-c-{uid}"), _status(f"dev-c-{uid}", model_version="3"), qos=1, retain=True).result(10)
    try:
        bad: list[tuple[str, str]] = []
        sub_settings = MqttSettings(host=mqtt_broker.host, port=mqtt_broker.port, client_id=f"sub-{uid}")
        with open_transport(sub_settings, kind="mqtt") as sub:
            sub.connect()
            statuses = fleet.collect_statuses(sub, wait=1.5, malformed=bad)
        statuses = {k: v for k, v in statuses.items() if k.endswith(uid)}  # the broker is shared
        assert set(statuses) == {b, f"dev-c-{uid}"}  # dev-a's lie created no row and changed none
        assert statuses[b].model_version == "1.0.0" and statuses[b].images_per_s is None
        assert statuses[f"dev-c-{uid}"].model_version == "3"  # an honest message still counts
        assert [m for m in bad if uid in m[0]] == [
            (topic(a), f"device '{b}' in the payload does not match the topic's '{a}'")]
        devices = {d.name: d for d in fleet.merge_statuses([fleet.Device(b)], statuses)}
        assert devices[b].client.model_version == "1.0.0" and a not in devices
    finally:
        with open_transport(MqttSettings(host=mqtt_broker.host, port=mqtt_broker.port,
                                         client_id=f"clean-{uid}"), kind="mqtt") as pub:
            pub.connect()
            for device in (a, b, f"dev-c-{uid}"):
                pub.publish(topic(device), b"", qos=1, retain=True).result(10)


def test_collect_statuses_with_another_filter_reads_the_device_at_its_plus(mqtt_broker):
    uid = uuid.uuid4().hex[:8]
    template = f"fleet-{uid}/{{device}}/health"
    settings = MqttSettings(host=mqtt_broker.host, port=mqtt_broker.port, client_id=f"pub2-{uid}")
    with open_transport(settings, kind="mqtt") as pub:
        pub.connect()
        pub.publish(status_topic("d1", template), _status("d1"), qos=1, retain=True).result(10)
        pub.publish(status_topic("d2", template), _status("d1", model_version="9"), qos=1, retain=True).result(10)
    try:
        bad: list[tuple[str, str]] = []
        with open_transport(MqttSettings(host=mqtt_broker.host, port=mqtt_broker.port,
                                         client_id=f"sub2-{uid}"), kind="mqtt") as sub:
            sub.connect()
            statuses = fleet.collect_statuses(sub, wait=1.0, topic_filter=f"fleet-{uid}/+/health", malformed=bad)
        assert set(statuses) == {"d1"} and statuses["d1"].model_version is None
        assert bad == [(status_topic("d2", template), "device 'd1' in the payload does not match the topic's 'd2'")]
    finally:
        with open_transport(MqttSettings(host=mqtt_broker.host, port=mqtt_broker.port,
                                         client_id=f"clean2-{uid}"), kind="mqtt") as pub:
            pub.connect()
            for device in ("d1", "d2"):
                pub.publish(status_topic(device, template), b"", qos=1, retain=True).result(10)
