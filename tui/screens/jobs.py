"""Jobs: Neo compilation jobs and packaging runs, with live status, elapsed time and failure reasons.

Compilation jobs are listed from SageMaker (`actions.compile.list_jobs`) and re-read every two
seconds while one is running. Packaging (building and publishing the two Greengrass components,
which replaced Edge Manager packaging jobs) runs in this console through `actions.package`, so its
runs are tracked here. `n` starts a compile from a model file, `p` packages a completed job.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Static

from actions.errors import ConfigError
from tui.clock import ago
from tui.safe_text import plain
from tui.screens.base import ConsoleScreen
from tui.widgets.form import Field, FormScreen
from tui.widgets.virtual_list import VirtualList

TERMINAL = ("COMPLETED", "FAILED", "STOPPED", "PUBLISHED")
_run_ids = itertools.count(1)


@dataclass(frozen=True)
class JobRow:
    """One line of the jobs list."""

    key: str
    kind: str  # "compile", "package" (a run from this console) or "publish" (a published component)
    name: str
    status: str
    created: datetime | None
    ended: datetime | None
    detail: str = ""
    reason: str = ""
    messages: tuple[str, ...] = ()
    artifact: str = ""


class JobsListed(Message):
    """Compilation jobs came back from SageMaker."""

    def __init__(self, rows: list[dict]) -> None:
        super().__init__()
        self.rows = rows


class ComponentsListed(Message):
    """Our published Greengrass components (the packaging results) came back."""

    def __init__(self, rows: list[dict]) -> None:
        super().__init__()
        self.rows = rows


class JobEvent(Message):
    """A progress event of a job run from this console."""

    def __init__(self, key: str, status: str | None, message: str, reason: str = "", artifact: str = "",
                 name: str | None = None) -> None:
        super().__init__()
        self.key, self.status, self.message, self.reason, self.artifact, self.name = \
            key, status, message, reason, artifact, name


def parse_shape(text: str) -> list[int]:
    """'1,3,224,224' -> [1, 3, 224, 224]."""
    try:
        shape = [int(x) for x in text.replace("x", ",").split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"input shape {text!r} must be numbers separated by commas, e.g. 1,3,224,224.") from None
    if not shape:
        raise ConfigError("input shape is empty; the runbook's model takes 1,3,224,224.")
    return shape


class JobsScreen(ConsoleScreen):
    """Compilation and packaging jobs."""

    MODE = "jobs"
    CSS_PATH = "jobs.tcss"
    BINDINGS = [
        Binding("n", "new_compile", "New compile"),
        Binding("p", "package", "Package"),
        Binding("x", "stop", "Stop job"),
        Binding("r", "refresh", "Refresh"),
        Binding("enter", "detail", "Detail"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[str, JobRow] = {}
        self._asked: set[str] = set()

    def compose_body(self) -> ComposeResult:
        yield Static(Text(" kind     name                               status     elapsed  detail", style="bold"),
                     id="jobs-header")
        yield VirtualList(self._render_row, id="jobs-list", empty="No jobs yet: press n to compile a model.")
        with VerticalScroll(id="jobs-detail"):
            yield Static(id="jobs-detail-body")

    def on_mount(self) -> None:
        self.query_one("#jobs-list").focus()
        self.action_refresh()
        self.set_interval(2.0, self._tick)

    # -- listing ---------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="jobs-list", description="list compilation jobs")
    def list_jobs(self) -> None:
        from actions import compile as comp
        from actions import package as pk

        ctx = self.services.ctx
        self.post_message(JobsListed(comp.list_jobs(ctx, limit=50)))
        # Packages published earlier (by the CLI, or another session) are their own history.
        prefix = pk.MODEL_COMPONENT.rsplit(".", 1)[0]
        self.post_message(ComponentsListed(pk.list_components(ctx, prefix=prefix)))

    def on_components_listed(self, event: "ComponentsListed") -> None:
        for c in event.rows:
            key = f"published:{c['name']}"
            self.jobs[key] = JobRow(key, "publish", c["name"], "PUBLISHED", c.get("created"), c.get("created"),
                                    detail=f"latest {c.get('latest_version')}")
            self.services.defaults.setdefault(f"version:{c['name']}", c.get("latest_version") or "")
        self._relist()

    def on_jobs_listed(self, event: JobsListed) -> None:
        for j in event.rows:
            key = f"compile:{j['CompilationJobName']}"
            old = self.jobs.get(key)
            status = j["CompilationJobStatus"]
            ended = j.get("CompilationEndTime") or (j.get("LastModifiedTime") if status in TERMINAL else None)
            target = j.get("CompilationTargetDevice") or "/".join(
                x for x in (j.get("CompilationTargetPlatformOs"), j.get("CompilationTargetPlatformArch")) if x)
            row = JobRow(key, "compile", j["CompilationJobName"], status, j.get("CreationTime"), ended,
                         detail=target or "", reason=old.reason if old else "",
                         messages=old.messages if old else (), artifact=old.artifact if old else "")
            self.jobs[key] = row
            if status in ("FAILED", "STOPPED") and not row.reason and key not in self._asked \
                    and len(self._asked) < 20 and self.services.ctx is not None:
                # The list does not carry FailureReason: read it once per job, off the UI thread.
                self._asked.add(key)
                self.follow_compile(key, row.name)
        self._relist()

    def _tick(self) -> None:
        running = [j for j in self.jobs.values() if j.kind == "compile" and j.status not in TERMINAL]
        if running and self.services.ctx is not None:
            self.list_jobs()
        self.query_one("#jobs-list", VirtualList).refresh()  # elapsed times move
        self._show_detail()

    def _relist(self) -> None:
        epoch = datetime.min.replace(tzinfo=self.services.clock.now().tzinfo)
        keys = sorted(self.jobs, key=lambda k: self.jobs[k].created or epoch, reverse=True)
        self.query_one("#jobs-list", VirtualList).set_keys(keys)
        self._show_detail()

    def _elapsed(self, row: JobRow) -> str:
        if row.created is None:
            return "-"
        end = row.ended or self.services.clock.now()
        return ago((end - row.created).total_seconds())

    def _render_row(self, key, line: int, width: int, selected: bool) -> Text:
        row = self.jobs[key]
        text = Text(f" {row.kind:<8} ")
        name = plain(row.name, 80)
        name.truncate(34, overflow="ellipsis", pad=True)
        text.append_text(name)
        style = "bold reverse" if row.status in ("FAILED", "STOPPED") else "bold" if row.status not in TERMINAL else ""
        text.append(f" {row.status:<10}", style=style)
        text.append(f" {self._elapsed(row):>7}  ")
        text.append_text(plain(row.reason or row.detail, 120))
        return text

    # -- detail ----------------------------------------------------------------------------------

    @on(VirtualList.Highlighted, "#jobs-list")
    def _moved(self) -> None:
        self._show_detail()

    def _selected_row(self) -> JobRow | None:
        key = self.query_one("#jobs-list", VirtualList).cursor_key
        return self.jobs.get(key) if key else None

    def _show_detail(self) -> None:
        row = self._selected_row()
        body = self.query_one("#jobs-detail-body", Static)
        if row is None:
            body.update(Text("Select a job to see its progress and failure reason.", style="dim"))
            return
        text = Text()
        text.append_text(plain(f"{row.kind} {row.name}: {row.status}, elapsed {self._elapsed(row)}", 200,
                               style="bold"))
        if row.reason:
            text.append("\nreason: ", style="bold")
            text.append_text(plain(row.reason, 600))
        if row.artifact:
            text.append("\nartifact: ")
            text.append_text(plain(row.artifact, 300))
        for message in row.messages[-6:]:
            text.append("\n  ")
            text.append_text(plain(message, 300))
        body.update(text)

    def action_detail(self) -> None:
        """Read a compilation job's outcome (failure reason or artifact) from SageMaker."""
        row = self._selected_row()
        if row is not None and row.kind == "compile" and self.need_ctx():
            self.follow_compile(row.key, row.name)

    @on(VirtualList.Selected, "#jobs-list")
    def _enter(self) -> None:
        self.action_detail()

    # -- runs from this console --------------------------------------------------------------------

    def on_job_event(self, event: JobEvent) -> None:
        now = self.services.clock.now()
        old = self.jobs.get(event.key) or JobRow(event.key, event.key.split(":")[0], event.name or event.key,
                                                 "STARTING", now, None)
        status = event.status or old.status
        self.jobs[event.key] = replace(
            old, name=event.name or old.name, status=status,
            ended=old.ended or (now if status in TERMINAL else None),
            reason=event.reason or old.reason, artifact=event.artifact or old.artifact,
            messages=(old.messages + (event.message,))[-20:] if event.message else old.messages)
        self._relist()
        if status in TERMINAL and event.key.startswith("compile:") and self.services.ctx is not None:
            self.list_jobs()

    @work(thread=True, exit_on_error=False, group="compile", description="compile the model")
    def run_compile(self, key: str, job) -> None:
        from actions import compile as comp
        from actions.progress import DONE, FAILED

        name = job.job_name
        for event in comp.compile_with_neo(self.services.ctx, job):
            data = event.data or {}
            status = data.get("status") or ("UPLOADING" if event.step == "upload" else None)
            self.post_message(JobEvent(key, status, event.message, reason=data.get("reason", "") if
                                       event.state == FAILED else "", artifact=data.get("artifact", "") if
                                       event.state == DONE else "", name=name))

    @work(thread=True, exit_on_error=False, group="compile", description="read the compilation job")
    def follow_compile(self, key: str, name: str) -> None:
        from actions import compile as comp
        from actions.errors import CompileError
        from actions.progress import DONE, FAILED

        try:
            for event in comp.follow_job(self.services.ctx, name):
                data = event.data or {}
                self.post_message(JobEvent(key, data.get("status"), event.message,
                                           reason=data.get("reason", "") if event.state == FAILED else "",
                                           artifact=data.get("artifact", "") if event.state == DONE else ""))
        except CompileError:
            pass  # the FAILED event above carried the reason; this is not the console's failure

    @work(thread=True, exit_on_error=False, group="package", description="package the model")
    def run_package(self, key: str, job_name: str, artifact: str, spec_values: dict) -> None:
        from actions import compile as comp
        from actions import package as pk
        from actions.progress import DONE

        ctx = self.services.ctx
        try:
            if not artifact:
                for event in comp.follow_job(ctx, job_name):
                    if event.state == DONE:
                        artifact = event.data["artifact"]
            self.post_message(JobEvent(key, "DOWNLOAD", f"downloading {artifact}"))
            out = comp.download_artifact(ctx, artifact, ctx.stack_dir / "compiled" / job_name)
            spec = pk.PackageSpec(out, bucket=spec_values.get("bucket") or None,
                                  images_dir=Path(spec_values["images"]) if spec_values.get("images") else None,
                                  python=spec_values.get("python") or "python3",
                                  version=spec_values.get("version") or None)
            for event in pk.package(ctx, spec):
                status = "PUBLISHED" if event.state == DONE and event.step == "publish" else event.step.upper()
                detail = ""
                if event.state == DONE and event.step == "publish":
                    data = event.data
                    detail = f"{data['model']['name']} {data['model']['version']}, {data['app']['name']} {data['app']['version']}"
                    self.services.defaults["version:" + data["model"]["name"]] = data["model"]["version"]
                    self.services.defaults["version:" + data["app"]["name"]] = data["app"]["version"]
                self.post_message(JobEvent(key, status, event.message + (f" ({detail})" if detail else "")))
        except Exception as exc:
            from tui.errors import describe

            self.post_message(JobEvent(key, "FAILED", "", reason=describe(exc)))
            raise

    # -- actions ---------------------------------------------------------------------------------

    def action_refresh(self) -> None:
        if self.need_ctx():
            self.list_jobs()

    def action_new_compile(self) -> None:
        """Start a Neo compilation from a model file (a form with the runbook's defaults)."""
        if not self.need_ctx():
            return
        from actions import compile as comp

        d = self.services.defaults
        ctx = self.services.ctx

        def check(v: dict[str, str]):
            os_, _, arch = v["target"].partition("/")
            job = comp.NeoJob(data_input_config={v["input"] or "input0": parse_shape(v["shape"])},
                              model_tar=Path(v["model"]).expanduser(), framework=v["framework"].upper(),
                              framework_version=v["framework_version"], target_os=os_.upper(),
                              target_arch=arch.upper(), job_name=v["job_name"] or comp.default_job_name(ctx, Path(v["model"]).name.split(".")[0]),
                              bucket=v["bucket"] or None, role_name=v["role"] or None)
            return job.validate()

        fields = [
            Field("model", "Model file", d.get("model_tar", ""), "model.tar.gz"),
            Field("input", "Input name", "input0"),
            Field("shape", "Input shape", "1,3,224,224"),
            Field("framework", "Framework", "PYTORCH"),
            Field("framework_version", "Framework version", "2.0"),
            Field("target", "Target OS/arch", "LINUX/X86_64"),
            Field("job_name", "Job name", "", "empty: generated"),
            Field("bucket", "Bucket", d.get("bucket", ""), "empty: setup's"),
            Field("role", "Role", d.get("role", ""), "empty: the stack's compilation role"),
        ]

        def started(job) -> None:
            if job is not None:
                key = f"compile:{job.job_name}"
                self.on_job_event(JobEvent(key, "UPLOADING", f"compiling {job.model_tar}", name=job.job_name))
                self.run_compile(key, job)

        self.app.push_screen(FormScreen("New Neo compilation job", fields, check,
                                        "Uploads the model to S3 and creates the compilation job."), started)

    def action_package(self) -> None:
        """Package the selected completed compilation job into the two Greengrass components."""
        row = self._selected_row()
        if not self.need_ctx():
            return
        if row is None or row.kind != "compile" or row.status != "COMPLETED":
            self.status("Select a COMPLETED compilation job to package it.", error=True)
            return
        d = self.services.defaults

        def check(v: dict[str, str]) -> dict[str, str]:
            from actions import package as pk

            if v["images"] and not Path(v["images"]).is_dir():
                raise ConfigError(f"images {v['images']} is not a folder; give the folder of sample images.")
            if v["version"] and not pk.SEMVER.match(v["version"]):
                raise ConfigError(f"version {v['version']!r} is not MAJOR.MINOR.PATCH, e.g. 1.0.1.")
            return v

        default_python = sys.executable if self.services.sandbox is not None else "python3"
        fields = [
            Field("images", "Sample images", d.get("images", ""), "folder shipped to the device"),
            Field("python", "Device python", default_python),
            Field("version", "Version", "", "empty: next patch"),
            Field("bucket", "Bucket", d.get("bucket", ""), "empty: setup's"),
        ]

        def go(values) -> None:
            if values is not None:
                key = f"package:{row.name}:{next(_run_ids)}"
                self.on_job_event(JobEvent(key, "STARTING", f"packaging {row.name}", name=row.name))
                self.run_package(key, row.name, row.artifact, values)

        self.app.push_screen(FormScreen(f"Package {row.name}", fields, check,
                                        "Builds and publishes the model and inference components."), go)

    def action_stop(self) -> None:
        row = self._selected_row()
        if row is None or row.kind != "compile" or row.status in TERMINAL:
            self.status("Select a running compilation job to stop it.", error=True)
            return
        self.stop_job(row.name)

    @work(thread=True, exit_on_error=False, group="compile", description="stop the compilation job")
    def stop_job(self, name: str) -> None:
        from actions import compile as comp

        comp.stop_job(self.services.ctx, name)
        self.app.call_from_thread(self.status, f"Asked SageMaker to stop {name}.")
        self.list_jobs()
