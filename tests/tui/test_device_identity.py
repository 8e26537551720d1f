"""Which device a message is about: the topic's device where the topic names one, never a payload
that contradicts it (a device may write any name into its own messages)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from actions.fleet import Device
from actions.messages.status import build_status, encode, status_topic
from tests.tui.helpers import Publisher, payload, sync, wait_for
from tui.app import make_app
from tui.fleet_model import FleetModel
from tui.live_model import LiveAggregator, topic_device, unknown_device_key
from tui.mqtt_link import broker_subscriber
from tui.widgets.virtual_list import VirtualList

SHARED = "gg/sageMakerEdgeManager/image-classification"


def _status(device: str, **kw) -> bytes:
    return encode(build_status(device=device, state="running", **kw))


def _now() -> datetime:
    return datetime.now(timezone.utc)


# -- the fleet model, fed (topic, payload) pairs ---------------------------------------------------

def test_fleet_model_ignores_a_status_claiming_another_device():
    model = FleetModel(_now)
    model.set_devices([Device("dev-a"), Device("dev-b")])
    model.ingest_status(status_topic("dev-b"), _status("dev-b", model_version="1.0.0", images_per_s=3.0))
    assert model.apply_statuses() == {"dev-b"}
    model.ingest_status(status_topic("dev-a"), _status("dev-b", model_version="6.6.6", images_per_s=999.0))
    model.ingest_status(status_topic("dev-a"), _status("dev-z"))  # not a fleet device either
    assert model.apply_statuses() == set()
    assert model.statuses["dev-b"].model_version == "1.0.0" and "dev-a" not in model.statuses
    assert "dev-z" not in model.names()
    assert model.malformed_statuses == 2
    assert model.malformed()[0] == ("edge-console/dev-a/status",
                                        "device 'dev-b' in the payload does not match the topic's 'dev-a'")
    # The honest message on the same topic is applied.
    model.ingest_status(status_topic("dev-a"), _status("dev-a", model_version="2.0.0"))
    assert model.apply_statuses() == {"dev-a"}
    assert model.cells("dev-a")[4] == "2.0.0" and model.cells("dev-b")[4] == "1.0.0"


def test_fleet_model_a_topic_naming_no_device_is_malformed():
    model = FleetModel(_now)
    model.ingest_status("edge-console/status", _status("dev-a"))
    model.ingest_status("edge-console/dev-a/b/status", _status("dev-a"))
    assert model.apply_statuses() == set() and model.malformed_statuses == 2
    assert "does not name a device" in model.malformed()[0][1]


# -- the live aggregator ---------------------------------------------------------------------------

def _agg() -> LiveAggregator:
    return LiveAggregator(lambda: 100.0, _now)


def test_topic_device_is_the_per_device_namespace():
    assert topic_device("edge-console/dev-a/predictions") == "dev-a"
    assert topic_device("edge-console/dev-a/x/y") == "dev-a"
    assert topic_device(SHARED) is None
    assert topic_device("edge-console/dev-a") is None  # no level below the device
    assert topic_device("edge-console//predictions") is None


def test_live_on_the_shared_topic_keys_by_what_the_payload_says():
    agg = _agg()
    agg.ingest(SHARED, payload("cam-1", [("espresso", 90.0)]))
    agg.ingest(SHARED, payload(None, [("espresso", 90.0)]))
    rows = agg.drain().changed
    assert set(rows) == {"cam-1", unknown_device_key(SHARED)}
    assert rows["cam-1"].device_from_topic is False  # the device's word, nothing more


def test_live_on_a_per_device_topic_the_topic_decides():
    agg = _agg()
    agg.ingest("edge-console/dev-a/predictions", payload("dev-a", [("espresso", 90.0)], seq=1))
    agg.ingest("edge-console/dev-c/predictions", payload(None, [("tabby, tabby cat", 80.0)]))
    first = agg.drain()
    assert set(first.changed) == {"dev-a", "dev-c"}  # no device field: the topic's name
    assert first.changed["dev-a"].device_from_topic and first.changed["dev-c"].device_from_topic
    agg.ingest("edge-console/dev-a/predictions", payload("dev-b", [("mousetrap", 99.0)], seq=7))
    second = agg.drain()
    assert second.changed == {} and second.malformed_total == 1
    (bad,) = second.new_malformed
    assert bad.topic == "edge-console/dev-a/predictions"
    assert bad.error == "device 'dev-b' in the payload does not match the topic's 'dev-a'"
    agg.ingest("edge-console/dev-a/predictions", payload("dev-a", [("mousetrap", 60.0)], seq=2))
    third = agg.drain()
    assert set(third.changed) == {"dev-a"} and third.changed["dev-a"].prediction.seq == 2


# -- through the real broker and the real screens ---------------------------------------------------

@sync
async def test_fleet_screen_ignores_a_spoofed_status_from_the_broker(mqtt_broker):
    uid = uuid.uuid4().hex[:8]
    a, b = f"dev-a-{uid}", f"dev-b-{uid}"
    pub = Publisher(mqtt_broker.host, mqtt_broker.port)
    app = make_app(None, start="fleet", subscribe=broker_subscriber(mqtt_broker.host, mqtt_broker.port))
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            await wait_for(pilot, lambda: screen._subscription is not None
                           and "subscribed" in screen._subscription.status())
            pub.client.publish(status_topic(b), _status(b, model_version="1.0.0"), qos=1).wait_for_publish(5)
            await wait_for(pilot, lambda: b in screen.model.statuses)
            before = screen.model.malformed_statuses
            # dev-a, on its own status topic, claims to be dev-b, and to be a device nobody knows.
            pub.client.publish(status_topic(a), _status(b, model_version="6.6.6", images_per_s=999.0),
                               qos=1).wait_for_publish(5)
            pub.client.publish(status_topic(a), _status(f"ghost-{uid}"), qos=1).wait_for_publish(5)
            await wait_for(pilot, lambda: screen.model.malformed_statuses >= before + 2)
            # An honest message sent after them arrives after them (one publisher, QoS 1, in order).
            pub.client.publish(status_topic(a), _status(a, model_version="2.0.0"), qos=1).wait_for_publish(5)
            await wait_for(pilot, lambda: a in screen.model.statuses)
            assert screen.model.statuses[b].model_version == "1.0.0"
            assert screen.model.statuses[a].model_version == "2.0.0"
            assert f"ghost-{uid}" not in screen.model.names()
            reasons = [r for t, r in screen.model.malformed() if t == status_topic(a)]
            assert f"device '{b}' in the payload does not match the topic's '{a}'" in reasons
            await pilot.pause(0.6)
            keys = screen.query_one("#fleet-list", VirtualList).keys
            assert a in keys and b in keys and f"ghost-{uid}" not in keys
    finally:
        pub.close()


@sync
async def test_live_screen_on_a_per_device_topic_drops_a_spoofed_prediction(mqtt_broker):
    uid = uuid.uuid4().hex[:8]
    a, b = f"cam-a-{uid}", f"cam-b-{uid}"
    pub = Publisher(mqtt_broker.host, mqtt_broker.port)
    app = make_app(None, subscribe=broker_subscriber(mqtt_broker.host, mqtt_broker.port))
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = app.screen
            await wait_for(pilot, lambda: screen._subscription is not None
                           and "subscribed" in screen._subscription.status())
            await pilot.press("t")
            await pilot.press("home", "ctrl+k", *"edge-console/+/predictions", "enter")
            await wait_for(pilot, lambda: screen.topic == "edge-console/+/predictions"
                           and screen._subscription is not None
                           and "edge-console/+/predictions" in screen._subscription.status())
            pub.publish(payload(b, [("espresso", 91.0)], seq=1), topic=f"edge-console/{b}/predictions")
            await wait_for(pilot, lambda: b in screen.rows)
            pub.publish(payload(b, [("mousetrap", 99.0)], seq=66), topic=f"edge-console/{a}/predictions")
            await wait_for(pilot, lambda: screen.malformed_total >= 1)
            pub.publish(payload(a, [("tabby, tabby cat", 80.0)], seq=1), topic=f"edge-console/{a}/predictions")
            await wait_for(pilot, lambda: a in screen.rows)
            assert screen.rows[b].prediction.seq == 1 and screen.rows[b].prediction.top == ("espresso", 91.0)
            assert screen.rows[a].device_from_topic and screen.rows[b].device_from_topic
            bad = [m for m in screen.agg.malformed() if m.topic == f"edge-console/{a}/predictions"]
            assert [m.error for m in bad] == [f"device '{b}' in the payload does not match the topic's '{a}'"]
    finally:
        pub.close()
