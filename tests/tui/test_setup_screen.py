"""Pilot test of the setup wizard against the sandbox: the wizard's pages, the plan before anything
is created, apply with per-step progress, a real failure and the resume, teardown behind the
stack's name."""

from __future__ import annotations

import uuid

from actions.context import Context
from tests.tui.conftest import console_app
from tests.tui.helpers import screen_text, sync, wait_for
from tui.widgets.form import ConfirmScreen, FormScreen


async def _page(pilot, app, **values) -> None:
    form = app.screen
    assert isinstance(form, FormScreen), type(form)
    for key, value in values.items():
        form.query_one(f"#field-{key}").value = value
    await pilot.press("ctrl+s")
    await pilot.pause()


@sync
async def test_wizard_plan_apply_fail_resume_teardown(sandbox, tmp_path):
    uid = uuid.uuid4().hex[:6]
    ctx = Context.for_sandbox(sandbox.endpoint_url, sandbox.region, stack=f"wiz{uid}", state_dir=tmp_path,
                              sandbox_state_dir=sandbox.state_dir)
    taken = f"taken-{uid}"
    sandbox.client("s3").create_bucket(Bucket=taken)  # exists and is not this stack's: apply must stop there

    class Cfg:
        thing_group_name, bucket, role_name = f"wiz-grp-{uid}", taken, f"WizRole{uid}"
        compile_role = f"WizRole{uid}-NeoCompilation"

    app = console_app(sandbox, ctx, Cfg, start="setup")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.changes, timeout=15)
        await pilot.press("w")
        await _page(pilot, app, role_name=f"WizRole{uid}", tes_role_name=f"WizTes{uid}",
                    tes_role_alias_name=f"WizAlias{uid}")
        await _page(pilot, app, bucket=taken)
        await _page(pilot, app, instance_name=f"wiz-edge-{uid}", volume_gib="twenty")  # refused
        assert isinstance(app.screen, FormScreen) and "volume_gib 'twenty'" in screen_text(app)
        await _page(pilot, app, volume_gib="20")
        await _page(pilot, app, thing_name=f"wiz-core-{uid}", thing_group_name=f"wiz-grp-{uid}")
        await wait_for(pilot, lambda: screen.changes and screen.cfg.thing_name == f"wiz-core-{uid}"
                       and "instance" in screen.changes and "conflict" in {c.action for c in screen.changes.values()},
                       timeout=15)
        # The plan is on screen before anything exists: policies, the instance and its cost, the env file.
        iam = ctx.client("iam")
        assert not [r for r in iam.list_roles()["Roles"] if r["RoleName"] == f"WizRole{uid}"]
        assert screen.changes["iam-role"].action == "create" and screen.changes["iam-role"].documents
        assert any("USD" in line for line in screen.changes["instance"].details)
        text = screen_text(app)
        assert "create" in text and "c5.large" in text

        await pilot.press("a")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press(*"apply", "enter")
        await wait_for(pilot, lambda: not screen.running and screen.failed, timeout=60)
        assert screen.progress["bucket"][0] == "failed"
        assert screen.progress["iam-role"][0] == "done"
        assert "[FAIL]" in screen_text(app)

        # Fix the bucket in the wizard, apply again: done steps are skipped, the rest is created.
        await pilot.press("w")
        await _page(pilot, app)
        await _page(pilot, app, bucket=f"wiz-bucket-{uid}")
        await _page(pilot, app)
        await _page(pilot, app)
        await wait_for(pilot, lambda: screen.cfg.bucket == f"wiz-bucket-{uid}" and screen.changes.get("bucket")
                       and screen.changes["bucket"].action == "create", timeout=15)
        await pilot.press("a")
        await pilot.press(*"apply", "enter")
        # What the failed run finished is skipped now (the role is updated: its policy names the new bucket).
        await wait_for(pilot, lambda: screen.progress.get("role-alias", ("",))[0] == "skipped", timeout=30)
        await wait_for(pilot, lambda: not screen.running and screen.changes
                       and all(c.action == "none" for c in screen.changes.values()), timeout=90)
        assert not screen.failed and screen.progress["instance"][0] == "done"
        assert "[done]" in screen_text(app)
        assert ctx.client("s3").head_bucket(Bucket=f"wiz-bucket-{uid}")

        # Teardown: first the plan of what goes, then the stack's name typed.
        await pilot.press("t")
        await wait_for(pilot, lambda: screen.teardown_plan, timeout=15)
        assert "TEARDOWN PLAN" in screen_text(app)
        await pilot.press("t")
        await pilot.press(*"wrong", "enter")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        await pilot.press("t")
        await pilot.press(*f"wiz{uid}", "enter")
        await wait_for(pilot, lambda: not screen.running and not screen.teardown_plan and screen.changes
                       and screen.changes["bucket"].action == "create", timeout=90)
        assert not [r for r in iam.list_roles()["Roles"] if r["RoleName"] == f"WizRole{uid}"]
        assert ctx.client("s3").head_bucket(Bucket=taken)  # not ours: left alone
