"""Snapshot tests of every screen's layout at 80x24 (pytest-textual-snapshot).

Each screen gets fixed inputs (messages, device lists, job rows shaped like the AWS responses) and
a fixed clock, so the SVGs are the same on every run; input cursors do not blink. Update them with
`pytest tests/tui/test_snapshots.py --snapshot-update` after looking at the report.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


from actions.messages.prediction import PREDICTION_TOPIC
from actions.messages.status import build_status, encode, status_topic
from tests.tui.helpers import payload
from tui.app import make_app
from tui.clock import FixedClock

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
SIZE = (80, 24)


def _app(start: str, **defaults):
    return make_app(None, clock=FixedClock(T0), start=start, defaults=defaults or None)


def _no_blink(app) -> None:
    from textual.widgets import Input

    for screen in app.screen_stack:
        for box in screen.query(Input):
            box.cursor_blink = False


async def _live(pilot) -> None:
    app = pilot.app
    screen = app.screen
    clock = app.clock
    screen.agg.ingest(PREDICTION_TOPIC, payload("cam-entrance", [("tabby, tabby cat", 83.41), ("tiger cat", 10.2),
                                                                ("Egyptian cat", 4.5)], seq=17))
    clock.advance(2)
    screen.agg.ingest(PREDICTION_TOPIC, payload("[bold]dock-7[/]", [("espresso", 91.0), ("cup", 3.1)], seq=3))
    screen.agg.ingest(PREDICTION_TOPIC, b"\x1b[31mnot json")
    screen.agg.ingest(PREDICTION_TOPIC, payload(None, [("slot, one-armed bandit", 83.41295623779297),
                                                       ("mousetrap", 75.826416015625)]))
    clock.advance(1.5)
    screen.flush()
    screen.query_one("#live-list").refresh()
    await pilot.pause()


def test_live(snap_compare):
    assert snap_compare(_app("live"), terminal_size=SIZE, run_before=_live)


def test_live_raw_json_detail(snap_compare):
    async def run_before(pilot):
        await _live(pilot)
        await pilot.press("down", "enter")
        await pilot.pause()

    assert snap_compare(_app("live"), terminal_size=SIZE, run_before=run_before)


def test_live_malformed_viewer(snap_compare):
    async def run_before(pilot):
        await _live(pilot)
        await pilot.press("m")
        await pilot.pause()

    assert snap_compare(_app("live"), terminal_size=SIZE, run_before=run_before)


def test_live_monochrome(snap_compare, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")  # read (and removed) by the App when it is built
    assert snap_compare(_app("live"), terminal_size=SIZE, run_before=_live)


def _fleet_devices():
    from actions.fleet import Device

    return [Device(f"line-{i:02d}-camera", core_status="UNHEALTHY" if i % 5 == 0 else "HEALTHY",
                   core_last_seen=T0 - timedelta(seconds=7 * i), platform="linux", architecture="amd64")
            for i in range(30)]


async def _fleet(pilot) -> None:
    screen = pilot.app.screen
    screen.show_devices(_fleet_devices())
    for i in range(0, 30, 3):
        msg = build_status(device=f"line-{i:02d}-camera", state="running", model_name="efficientnet-lite0",
                           model_version="1.0.3", images_per_s=2.0 + i / 10, inference_ms=(9.0, 11.0 + i / 4),
                           outbox_depth=i % 4, timestamp=str(T0 - timedelta(seconds=i)))
        screen.model.ingest_status(status_topic(f"line-{i:02d}-camera"), encode(msg))
    screen._merge_statuses()
    await pilot.pause()


def test_fleet(snap_compare):
    assert snap_compare(_app("fleet", group="mythinggroupname"), terminal_size=SIZE, run_before=_fleet)


def test_fleet_sorted_and_filtered(snap_compare):
    async def run_before(pilot):
        await _fleet(pilot)
        await pilot.press("s", "s", "s", "s", "s", "o", "slash", *"healthy", "enter")
        _no_blink(pilot.app)
        await pilot.pause()

    assert snap_compare(_app("fleet", group="mythinggroupname"), terminal_size=SIZE, run_before=run_before)


async def _jobs(pilot) -> None:
    from tui.screens.jobs import JobEvent, JobsListed

    screen = pilot.app.screen
    rows = [
        {"CompilationJobName": "edge-console-model-20260101115500", "CompilationJobStatus": "COMPLETED",
         "CreationTime": T0 - timedelta(minutes=5), "CompilationEndTime": T0 - timedelta(minutes=3),
         "CompilationTargetPlatformOs": "LINUX", "CompilationTargetPlatformArch": "X86_64"},
        {"CompilationJobName": "edge-console-model-20260101115800", "CompilationJobStatus": "FAILED",
         "CreationTime": T0 - timedelta(minutes=2), "CompilationEndTime": T0 - timedelta(minutes=1),
         "CompilationTargetPlatformOs": "LINUX", "CompilationTargetPlatformArch": "X86_64"},
        {"CompilationJobName": "edge-console-model-20260101115930", "CompilationJobStatus": "INPROGRESS",
         "CreationTime": T0 - timedelta(seconds=30), "CompilationTargetDevice": "jetson_nano"},
    ]
    screen.on_jobs_listed(JobsListed(rows))
    screen.on_job_event(JobEvent("compile:edge-console-model-20260101115800", "FAILED", "",
                                 reason="ClientError: InputConfiguration: Unable to load the PyTorch model."))
    await pilot.press("down")
    await pilot.pause()


def test_jobs(snap_compare):
    assert snap_compare(_app("jobs"), terminal_size=SIZE, run_before=_jobs)


def test_jobs_new_compile_form(snap_compare):
    async def run_before(pilot):
        await pilot.pause()
        # The form needs an AWS context to open; this one is never called.
        pilot.app.services.ctx = object()
        await pilot.press("n")
        _no_blink(pilot.app)
        await pilot.pause()

    assert snap_compare(_app("jobs", model_tar="/srv/models/model.tar.gz", bucket="ec2-scripts-us-east-1-123456789012"),
                        terminal_size=SIZE, run_before=run_before)


async def _deployments(pilot) -> None:
    from tui.screens.deployments import APP_COMPONENT, MODEL_COMPONENT, DeviceProgress, HistoryLoaded

    screen = pilot.app.screen
    comps = {MODEL_COMPONENT: {"componentVersion": "1.0.1"}, APP_COMPONENT: {"componentVersion": "1.0.1"}}
    rows = [
        {"deploymentId": "5f1d2c3b-0000-4000-8000-000000000003", "deploymentName": "edge-console-mythinggroupname",
         "deploymentStatus": "ACTIVE", "creationTimestamp": T0, "isLatestForTarget": True, "components": comps},
        {"deploymentId": "9a8b7c6d-0000-4000-8000-000000000002", "deploymentName": "edge-console-mythinggroupname",
         "deploymentStatus": "COMPLETED", "creationTimestamp": T0 - timedelta(hours=1)},
        {"deploymentId": "1b2c3d4e-0000-4000-8000-000000000001", "deploymentName": "edge-console-mythinggroupname",
         "deploymentStatus": "CANCELED", "creationTimestamp": T0 - timedelta(days=1)},
    ]
    screen.on_history_loaded(HistoryLoaded("mythinggroupname", rows))
    dep = rows[0]["deploymentId"]
    screen.on_device_progress(DeviceProgress(dep, "mything", "SUCCEEDED", "SUCCEEDED: SUCCESSFUL"))
    screen.on_device_progress(DeviceProgress(dep, "line-02-camera", "IN_PROGRESS", "IN_PROGRESS"))
    screen.on_device_progress(DeviceProgress(dep, "line-03-camera", "FAILED",
                                             "FAILED: Run script exited with code 1"))
    await pilot.pause()


def test_deployments(snap_compare):
    assert snap_compare(_app("deployments", group="mythinggroupname"), terminal_size=SIZE, run_before=_deployments)


async def _setup(pilot) -> None:
    from actions.setup import Change
    from tui.screens.setup import PlanReady

    screen = pilot.app.screen
    changes = [
        Change("iam-role", "edge server IAM role", "create", "create role SageMakerGreenGrassV2MinimalResourceRole",
               ("preset least-privilege",), {"trust policy": {"Version": "2012-10-17", "Statement": [
                   {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}}),
        Change("bucket", "S3 bucket", "create", "create bucket ec2-scripts-us-east-1-123456789012"),
        Change("thing-group", "IoT thing group", "none", "thing group mythinggroupname exists"),
        Change("instance", "EC2 edge server", "create", "launch c5.large edge-server",
               ("root volume 20 GiB gp3, encrypted",
                "costs about USD 0.085/hour on demand (us-east-1, Linux, price of 2026-11-24) while it runs")),
    ]
    screen.on_plan_ready(PlanReady(changes, "GGC_ROOT_PATH=/greengrass/v2\nAWS_REGION=us-east-1\n"))
    await pilot.pause()


def test_setup_plan(snap_compare):
    assert snap_compare(_app("setup"), terminal_size=SIZE, run_before=_setup)


def test_logs(snap_compare):
    async def run_before(pilot):
        screen = pilot.app.screen
        with screen._lock:
            screen._lines.extend([
                "2022-08-15T03:38:45.437Z [INFO] (Copier) com.greengrass.SageMakerEdgeManager.ImageClassification: "
                'stdout. {"timestamp": "2022-08-15 03:38:45.282879+00:00", "inference-type": "image-classification", '
                '"inference-results": [{"Label": "slot, one-armed bandit", "Score": "83.41295623779297"}]}',
                "a line with \x1b[2J a control sequence and [bold]markup[/bold], both shown as text",
            ])
        screen._flush()
        await pilot.pause()

    assert snap_compare(_app("logs"), terminal_size=SIZE, run_before=run_before)


def test_command_palette_lists_every_screen(snap_compare):
    async def run_before(pilot):
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        _no_blink(pilot.app)
        await pilot.press(*"screen")
        await pilot.pause(0.5)

    assert snap_compare(_app("live"), terminal_size=SIZE, run_before=run_before)
