"""Pilot test of the logs screen against a sandbox device running the deployed components."""

from __future__ import annotations

from actions import package as pk
from tests.tui.conftest import console_app
from tests.tui.helpers import screen_text, sync, wait_for
from tui.widgets.form import FormScreen


@sync
async def test_follow_the_component_log_and_the_nucleus_log(sandbox, console_stack, console_device, deployed):
    ctx, cfg = console_stack
    app = console_app(sandbox, ctx, cfg, device=console_device, start="logs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.received > 0, timeout=20)
        before = screen.received
        # The deployed edge client keeps classifying, so the log keeps growing while we follow it.
        await wait_for(pilot, lambda: screen.received > before, timeout=30)
        await pilot.pause(0.2)
        assert pk.APP_COMPONENT in screen_text(app)
        await pilot.press("g")
        await wait_for(pilot, lambda: screen.component == "greengrass" and screen.received > 0, timeout=20)
        # A bad name is refused in the form with a sentence, nothing followed.
        await pilot.press("o")
        assert isinstance(app.screen, FormScreen)
        app.screen.query_one("#field-component").value = "../../etc/passwd"
        await pilot.press("ctrl+s")
        assert "is not a valid name" in screen_text(app)
        await pilot.press("escape")
        assert screen.component == "greengrass"


@sync
async def test_a_missing_device_is_a_message_not_a_crash(sandbox, console_stack):
    ctx, cfg = console_stack
    app = console_app(sandbox, ctx, cfg, device="no-such-device", start="logs")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: "has no device no-such-device" in screen_text(app), timeout=10)
        await pilot.press("5")  # the app keeps working
        assert app.current_mode == "live"
