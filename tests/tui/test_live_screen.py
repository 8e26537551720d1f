"""Pilot tests of the live MQTT screen against a real broker."""

from __future__ import annotations

import pytest

from tests.tui.helpers import Publisher, payload, screen_text, sync, wait_for
from tui.app import make_app
from tui.mqtt_link import broker_subscriber
from tui.widgets.virtual_list import VirtualList


@pytest.fixture
def publisher(mqtt_broker):
    pub = Publisher(mqtt_broker.host, mqtt_broker.port)
    yield pub
    pub.close()


@sync
async def test_rows_per_device_with_top5(mqtt_broker, publisher):
    app = make_app(None, subscribe=broker_subscriber(mqtt_broker.host, mqtt_broker.port))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen._subscription is not None and "subscribed" in screen._subscription.status())
        publisher.publish(payload("cam-1", [("tabby, tabby cat", 83.4), ("tiger cat", 10.2)]))
        publisher.publish(payload("cam-2", [("espresso", 91.0)]))
        publisher.publish(payload(None, [("slot, one-armed bandit", 83.41295623779297)]))  # runbook era
        await wait_for(pilot, lambda: len(screen.rows) == 3)
        await pilot.pause(0.2)
        keys = list(screen.query_one("#live-list", VirtualList).keys)
        assert keys[:2] == ["cam-1", "cam-2"]
        assert keys[2].startswith("unknown device @ gg/sageMakerEdgeManager")
        assert screen.rows["cam-1"].prediction.results[0] == ("tabby, tabby cat", 83.4)
        text = screen_text(app)
        assert "cam-1" in text and "tabby, tabby cat" in text and "83.4%" in text


@sync
async def test_markup_and_escapes_are_shown_as_text(mqtt_broker, publisher):
    app = make_app(None, subscribe=broker_subscriber(mqtt_broker.host, mqtt_broker.port))
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen._subscription is not None and "subscribed" in screen._subscription.status())
        publisher.publish(payload("[bold red]evil[/]", [("\x1b[2J\x1b]0;pwned\x07cls", 50.0)]))
        publisher.publish(b"not json at all \x1b[31m")
        publisher.publish(b'{"timestamp": "x", "inference-type": "image-classification"}')
        await wait_for(pilot, lambda: screen.malformed_total == 2 and len(screen.rows) == 1)
        await pilot.pause(0.2)
        text = screen_text(app)
        assert "[bold red]evil[/]" in text  # shown literally, not interpreted
        assert "\\x1b[2J" in text and "\x1b[2J" not in text
        assert "2 malformed" in text
        await pilot.press("m")
        await pilot.pause(0.1)
        text = screen_text(app)
        assert "missing 'inference-results'" in text
        await pilot.press("down")
        await pilot.pause(0.1)
        assert "payload is not JSON" in screen_text(app)
        await pilot.press("escape")
        assert app.screen is screen


@sync
async def test_pause_search_and_raw_detail(mqtt_broker, publisher):
    app = make_app(None, subscribe=broker_subscriber(mqtt_broker.host, mqtt_broker.port))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen._subscription is not None and "subscribed" in screen._subscription.status())
        for i in range(3):
            publisher.publish(payload(f"dev-{i}", [("espresso" if i else "tabby, tabby cat", 70.0)], seq=1))
        await wait_for(pilot, lambda: len(screen.rows) == 3)
        await pilot.press("p")
        assert screen.paused
        publisher.publish(payload("dev-0", [("mousetrap", 60.0)], seq=2))
        await wait_for(pilot, lambda: screen.total == 4)
        assert screen.rows["dev-0"].prediction.seq == 1  # frozen while paused
        await pilot.press("p")
        await pilot.pause(0.2)
        assert screen.rows["dev-0"].prediction.seq == 2  # nothing lost on resume
        await pilot.press("slash")
        await pilot.press(*"espresso")
        await pilot.press("enter")
        assert list(screen.query_one("#live-list", VirtualList).keys) == ["dev-1", "dev-2"]
        await pilot.press("enter")  # raw JSON of the row under the cursor
        await wait_for(pilot, lambda: '"inference-results": [' in screen_text(app))
        assert "dev-1  1 msgs" in screen_text(app)


@sync
async def test_predictions_from_a_deployed_sandbox_device(sandbox, console_stack, console_device, deployed):
    from tests.tui.conftest import console_app

    ctx, cfg = console_stack
    app = console_app(sandbox, ctx, cfg, start="live")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        # The edge client deployed by the fixture classifies the sample images and publishes top-5.
        await wait_for(pilot, lambda: console_device in screen.rows, timeout=60)
        row = screen.rows[console_device]
        # Top 5 at most; none when no class reaches the threshold (the rocket photo can fall under 0.3).
        assert len(row.prediction.results) <= 5 and row.prediction.model_version
        await wait_for(pilot, lambda: screen.rows[console_device].count >= 2, timeout=30)
        await pilot.press("slash")
        await pilot.press(*console_device, "enter")
        await wait_for(pilot, lambda: list(screen.query_one("#live-list", VirtualList).keys) == [console_device])
        # The list repaints on the next flush tick; on a busy machine that can take a while.
        await wait_for(pilot, lambda: console_device in screen_text(app) and "%" in screen_text(app), timeout=15)
