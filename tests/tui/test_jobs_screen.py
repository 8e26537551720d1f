"""Pilot tests of the jobs screen against the sandbox: a real (local) Neo compile, a failed one
with its reason, and packaging the result into published Greengrass components."""

from __future__ import annotations

import io
import tarfile

from tests.tui.conftest import UID, console_app
from tests.tui.helpers import screen_text, sync, wait_for
from tui.widgets.form import FormScreen
from tui.widgets.virtual_list import VirtualList


async def _fill(pilot, app, **values) -> None:
    form = app.screen
    assert isinstance(form, FormScreen)
    for key, value in values.items():
        form.query_one(f"#field-{key}").value = value
    await pilot.press("ctrl+s")


@sync
async def test_compile_then_package_from_the_jobs_screen(sandbox, console_stack, model_tar, sample_images):
    ctx, cfg = console_stack
    images = str(next(iter(sample_images.values())).parent)
    app = console_app(sandbox, ctx, cfg, start="jobs", defaults={"model_tar": str(model_tar), "images": images})
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await pilot.press("n")
        await _fill(pilot, app, job_name=f"tui-ok-{UID}")
        key = f"compile:tui-ok-{UID}"
        await wait_for(pilot, lambda: key in screen.jobs, timeout=10)
        await wait_for(pilot, lambda: screen.jobs[key].status == "COMPLETED", timeout=180)
        # The job list, refreshed from SageMaker, can show COMPLETED a moment before compile's final
        # event brings the artifact (packaging copes with either: see JobsScreen.run_package).
        await wait_for(pilot, lambda: screen.jobs[key].artifact, timeout=10)
        assert screen.jobs[key].artifact.startswith(f"s3://{cfg.bucket}/compiled/tui-ok-{UID}/")
        lst = screen.query_one("#jobs-list", VirtualList)
        lst.cursor = list(lst.keys).index(key)
        await pilot.pause()
        assert "COMPLETED" in screen_text(app)
        await pilot.press("p")
        await _fill(pilot, app, version="7.0.0")
        await wait_for(pilot, lambda: any(j.kind == "package" and j.status in ("PUBLISHED", "FAILED")
                                          for j in screen.jobs.values()), timeout=120)
        run = next(j for j in screen.jobs.values() if j.kind == "package")
        assert run.status == "PUBLISHED", run.reason
        assert any("7.0.0" in m for m in run.messages)
        from actions import package as pk

        assert "7.0.0" in pk.versions(ctx, pk.MODEL_COMPONENT)


@sync
async def test_failed_compile_shows_neos_reason_and_bad_input_is_refused(sandbox, console_stack, tmp_path):
    ctx, cfg = console_stack
    bad = tmp_path / "model.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        data = b"not a TorchScript model"
        info = tarfile.TarInfo("model.pth")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    app = console_app(sandbox, ctx, cfg, start="jobs", defaults={"model_tar": str(bad)})
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await pilot.press("n")
        await _fill(pilot, app, shape="1,3,abc")  # an operator's typo: refused in the form
        assert isinstance(app.screen, FormScreen)
        assert "input shape '1,3,abc'" in screen_text(app)
        await _fill(pilot, app, shape="1,3,224,224", job_name=f"tui-bad-{UID}")
        key = f"compile:tui-bad-{UID}"
        await wait_for(pilot, lambda: key in screen.jobs and screen.jobs[key].status == "FAILED"
                       and screen.jobs[key].reason, timeout=120)
        reason = ctx.client("sagemaker").describe_compilation_job(CompilationJobName=f"tui-bad-{UID}")["FailureReason"]
        assert reason and screen.jobs[key].reason == reason
        await pilot.pause(0.2)
        assert "FAILED" in screen_text(app)
