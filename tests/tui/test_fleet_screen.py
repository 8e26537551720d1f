"""Pilot tests of the fleet screen against the sandbox (real Greengrass API, real broker)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from actions.messages.status import build_status, encode, status_topic
from tests.tui.conftest import console_app
from tests.tui.helpers import Publisher, screen_text, sync, wait_for
from tui.fleet_model import FleetModel
from tui.widgets.virtual_list import VirtualList


@sync
async def test_fleet_lists_the_device_with_both_last_seen_sources(sandbox, console_stack, console_device):
    ctx, cfg = console_stack
    app = console_app(sandbox, ctx, cfg, start="fleet")
    pub = Publisher(sandbox.broker.host, sandbox.broker.port)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            await wait_for(pilot, lambda: console_device in screen.model.devices, timeout=20)
            await pilot.pause(0.1)
            assert screen.model.devices[console_device].core_status == "HEALTHY"
            text = screen_text(app)
            assert console_device[:18] in text and "HEALTHY" in text
            # A status message (retained, as the edge client sends it) fills the client columns.
            stamp = str(datetime.now(timezone.utc) - timedelta(seconds=3))
            msg = build_status(device=console_device, state="running", model_name="model", model_version="1.0.7",
                               images_per_s=4.5, inference_ms=(9.0, 12.5), outbox_depth=3, timestamp=stamp)
            pub.client.publish(status_topic(console_device), encode(msg), qos=1, retain=True).wait_for_publish(5)
            await wait_for(pilot, lambda: console_device in screen.model.statuses, timeout=10)
            await pilot.pause(0.6)
            text = screen_text(app)
            assert "1.0.7" in text and "4.5" in text and "12.5" in text
            # Detail: installed components and effective deployments come from Greengrass.
            await pilot.press("enter")
            await wait_for(pilot, lambda: "Effective deployments" in screen_text(app)
                           and "loading" not in screen_text(app), timeout=10)
            assert "last status message" in screen_text(app)
            await pilot.press("escape")
            assert app.screen is screen
    finally:
        pub.client.publish(status_topic(console_device), b"", qos=1, retain=True).wait_for_publish(5)
        pub.close()


@sync
async def test_sort_and_filter_ten_thousand_devices():
    from actions.fleet import Device
    from tui.app import make_app

    now = datetime.now(timezone.utc)
    devices = [Device(f"dev-{i:05d}", core_status="HEALTHY" if i % 3 else "UNHEALTHY",
                      core_last_seen=now - timedelta(seconds=i)) for i in range(10_000)]
    app = make_app(None, start="fleet")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        screen.show_devices(devices)
        await pilot.pause()
        lst = screen.query_one("#fleet-list", VirtualList)
        assert len(lst.keys) == 10_000 and lst.keys[0] == "dev-00000"
        await pilot.press("o")  # reverse
        assert lst.keys[0] == "dev-09999"
        await pilot.press("o", "s", "s")  # sort by "gg seen": most recent first
        assert screen.sort == "core_seen" and lst.keys[0] == "dev-00000"
        await pilot.press("slash")
        await pilot.press(*"unhealthy", "enter")
        assert len(lst.keys) == 3334 and all(int(k[4:]) % 3 == 0 for k in lst.keys)
        await pilot.press("end")
        assert lst.cursor == 3333
        assert "3334/10000 shown" in screen_text(app)


def test_model_keeps_unknown_values_last():
    model = FleetModel(lambda: datetime.now(timezone.utc))
    from actions.fleet import Device

    model.set_devices([Device("a"), Device("b")])
    model.ingest_status("edge-console/b/status", encode(build_status(device="b", state="running", images_per_s=2.0)))
    model.ingest_status("edge-console/x/status", b"{not json")
    assert model.apply_statuses() == {"b"}
    assert model.view("ips") == ["b", "a"] and model.view("ips", reverse=True) == ["b", "a"]
    assert model.malformed_statuses == 1


@sync
async def test_an_unreachable_endpoint_is_a_message_and_the_app_keeps_working(tmp_path):
    from actions.context import Context
    from fixtures.broker import free_port
    from tui.app import make_app

    # Nothing listens on this port: every AWS call fails the way a dead network does.
    ctx = Context.for_sandbox(f"http://127.0.0.1:{free_port()}", state_dir=tmp_path)
    app = make_app(ctx, start="fleet", defaults={"group": "mythinggroupname"})
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: "cannot be reached" in screen_text(app), timeout=20)
        assert "Could not" in screen_text(app)
        await pilot.press("2")
        await wait_for(pilot, lambda: "cannot be reached" in screen_text(app), timeout=20)
        await pilot.press("5")
        assert app.current_mode == "live"
