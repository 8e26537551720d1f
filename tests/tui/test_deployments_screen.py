"""Pilot test of the deployments screen against the sandbox: create with a configuration merge,
follow per device, roll back, cancel; bad input refused in the form."""

from __future__ import annotations

import json

from actions import deploy
from actions import package as pk
from tests.tui.conftest import console_app
from tests.tui.helpers import screen_text, sync, wait_for
from tui.widgets.form import ConfirmScreen, FormScreen


@sync
async def test_create_follow_rollback_cancel(sandbox, console_stack, console_device, deployed):
    ctx, cfg = console_stack
    versions, first = deployed
    app = console_app(sandbox, ctx, cfg, start="deployments")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: first in screen.rows, timeout=15)
        await pilot.press("n")
        form = app.screen
        assert isinstance(form, FormScreen)
        form.query_one("#field-model_version").value = versions[pk.MODEL_COMPONENT]
        form.query_one("#field-app_version").value = versions[pk.APP_COMPONENT]
        form.query_one("#field-merge").value = '{"threshold": 0.25'  # a typo: refused, form stays
        await pilot.press("ctrl+s")
        assert app.screen is form and "configuration is not JSON" in screen_text(app)
        form.query_one("#field-merge").value = '{"threshold": 0.25}'
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen.following not in (None, first), timeout=15)
        second = screen.following
        await wait_for(pilot, lambda: screen.devices.get(second, {}).get(console_device, ("",))[0] == "SUCCEEDED",
                       timeout=120)
        sent = deploy.get(ctx, second)["components"][pk.APP_COMPONENT]["configurationUpdate"]["merge"]
        assert json.loads(sent) == {"threshold": 0.25}
        await wait_for(pilot, lambda: second in screen.rows, timeout=10)
        await pilot.pause(0.2)
        assert "SUCCEEDED" in screen_text(app)

        await pilot.press("b")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press(*"rollback", "enter")
        await wait_for(pilot, lambda: screen.following not in (second,), timeout=15)
        third = screen.following
        assert deploy.get(ctx, third)["deploymentName"].endswith("-rollback")
        await wait_for(pilot, lambda: screen.devices.get(third, {}).get(console_device, ("",))[0] == "SUCCEEDED",
                       timeout=120)

        # Cancel the newest: it asks for the word, and a wrong word does nothing.
        await wait_for(pilot, lambda: third in screen.rows, timeout=10)
        lst = screen.query_one("#dep-list")
        lst.cursor = list(lst.keys).index(third)
        await pilot.press("c")
        await pilot.press(*"nope", "enter")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        await pilot.press("c")
        await pilot.press(*"cancel", "enter")
        await wait_for(pilot, lambda: screen.rows.get(third, {}).get("deploymentStatus") == "CANCELED", timeout=15)
