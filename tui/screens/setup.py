"""Setup: the guided first-time wizard (IAM, S3, EC2, the Greengrass env file).

`w` walks through four short forms with the runbook's defaults; the plan (`actions.setup.plan`:
what each step would create, the policy documents, names, the instance type and what it costs to
run) is shown before anything is created. `a` applies with per-step progress; applying again after
a failure resumes (every step re-checks and skips what is done). `t` tears the stack down behind
a typed confirmation of the stack's name.
"""

from __future__ import annotations

import json

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Static

from actions.errors import ConfigError
from tui.safe_text import plain
from tui.screens.base import ConsoleScreen
from tui.widgets.form import ConfirmScreen, Field, FormScreen
from tui.widgets.virtual_list import VirtualList

# The wizard's pages: (title, [(SetupConfig field, label, hint)]).
PAGES = [
    ("1/4 IAM: edge server, Neo compilation, token exchange roles", [
        ("role_name", "Edge server role", ""),
        ("preset", "Policy preset", "least-privilege or runbook"),
        ("compile_role_name", "Neo compilation role", "empty: <edge role>-NeoCompilation"),
        ("tes_role_name", "Token exchange role", ""),
        ("tes_role_alias_name", "Role alias", ""),
    ]),
    ("2/4 S3: the bucket for scripts and artifacts", [
        ("bucket", "Bucket", "empty: ec2-scripts-<region>-<account>"),
    ]),
    ("3/4 EC2: the edge server", [
        ("instance_name", "Instance name", ""),
        ("instance_type", "Instance type", "c5.large in the runbook"),
        ("volume_gib", "Root volume GiB", "20 in the runbook"),
    ]),
    ("4/4 Greengrass env file", [
        ("thing_name", "Thing name", "lower case"),
        ("thing_group_name", "Thing group", "lower case"),
        ("component_default_user", "Component user", "user:group"),
        ("deploy_dev_tools", "Deploy dev tools", "false: no local CLI"),
    ]),
]


class PlanReady(Message):
    """The plan (or the teardown plan) came back."""

    def __init__(self, changes: list, env: str, teardown: bool = False) -> None:
        super().__init__()
        self.changes, self.env, self.teardown = changes, env, teardown


class StepProgress(Message):
    """A progress event of apply or destroy."""

    def __init__(self, event) -> None:
        super().__init__()
        self.event = event


def config_from(cfg, page_values: dict[str, str]):
    """Apply one wizard page's values to a SetupConfig; raises ConfigError for a bad value."""
    changes: dict = {}
    for key, value in page_values.items():
        if key in ("bucket", "compile_role_name"):
            changes[key] = value or None
        elif key == "volume_gib":
            if not value.isdigit():
                raise ConfigError(f"volume_gib {value!r} must be a whole number of GiB (20 is the runbook's).")
            changes[key] = int(value)
        elif key == "deploy_dev_tools":
            if value.lower() not in ("true", "false", "yes", "no"):
                raise ConfigError(f"deploy_dev_tools {value!r} must be true or false.")
            changes[key] = value.lower() in ("true", "yes")
        else:
            changes[key] = value
    return cfg.replace(**changes).validate()


class SetupScreen(ConsoleScreen):
    """The first-time set-up wizard and its plan."""

    MODE = "setup"
    CSS_PATH = "setup.tcss"
    BINDINGS = [
        Binding("w", "wizard", "Wizard"),
        Binding("l", "plan", "Plan"),
        Binding("a", "apply", "Apply/resume"),
        Binding("t", "teardown", "Teardown"),
    ]

    def __init__(self) -> None:
        super().__init__()
        from actions.setup import SetupConfig

        self.cfg = SetupConfig()
        self.changes: dict[str, object] = {}
        self.progress: dict[str, tuple[str, str]] = {}
        self.env = ""
        self.teardown_plan = False
        self.running = False
        self.failed = False
        self._keep_progress = False

    def compose_body(self) -> ComposeResult:
        yield Static(id="setup-summary")
        yield VirtualList(self._render_row, id="setup-steps",
                          empty="Press w to walk through the settings, or l to see the plan with the defaults.")
        with VerticalScroll(id="setup-detail"):
            yield Static(id="setup-detail-body")

    def on_mount(self) -> None:
        from actions.setup import SetupConfig

        group = self.services.defaults.get("group")
        if group and group != self.cfg.thing_group_name:
            self.cfg = SetupConfig(thing_group_name=group, thing_name=self.services.defaults.get("device", "mything"))
        self.query_one("#setup-steps").focus()
        self._summary()
        if self.services.ctx is not None:
            self.action_plan()
        else:
            self.need_ctx()

    # -- plan ------------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="setup", description="read the plan")
    def load_plan(self, cfg, teardown: bool = False) -> None:
        from actions import setup

        ctx = self.services.ctx
        changes = setup.destroy_plan(ctx, cfg) if teardown else setup.plan(ctx, cfg)
        self.post_message(PlanReady(changes, setup.render_env(cfg, ctx.region), teardown))

    def on_plan_ready(self, event: PlanReady) -> None:
        self.changes = {c.step: c for c in event.changes}
        self.env = event.env
        self.teardown_plan = event.teardown
        if not self.running and not self._keep_progress:
            self.progress = {}
        self._keep_progress = False
        self.query_one("#setup-steps", VirtualList).set_keys([c.step for c in event.changes])
        self._summary()
        self._detail()
        todo = sum(c.action not in ("none",) for c in event.changes)
        if event.teardown:
            self.status(f"Teardown plan: {todo} of {len(event.changes)} steps would delete something.")
        else:
            self.status(f"Plan: {todo} of {len(event.changes)} steps would change something; a applies.")

    def _summary(self) -> None:
        ctx = self.services.ctx
        text = Text()
        text.append(" TEARDOWN PLAN " if self.teardown_plan else " PLAN ", style="reverse bold")
        text.append_text(plain(f" stack {ctx.stack if ctx else '-'}  region {ctx.region if ctx else '-'}  "
                               f"{self.cfg.instance_type}  group {self.cfg.thing_group_name}", 120))
        if self.running:
            text.append("  running…", style="bold")
        elif self.failed:
            text.append("  failed: a resumes", style="bold")
        self.query_one("#setup-summary", Static).update(text)

    def _render_row(self, key, line: int, width: int, selected: bool) -> Text:
        change = self.changes[key]
        state, _ = self.progress.get(key, ("", ""))
        mark = {"done": "[done]", "skipped": "[ok]", "running": "[..]", "failed": "[FAIL]"}.get(state, "[ ]")
        text = Text(f" {mark:<7}", style="bold" if state in ("failed", "running") else "")
        text.append(f"{change.action:<8} ", style="bold" if change.action in ("create", "delete", "conflict") else "")
        text.append_text(plain(change.summary, 200))
        return text

    @on(VirtualList.Highlighted, "#setup-steps")
    def _moved(self) -> None:
        self._detail()

    def _detail(self) -> None:
        key = self.query_one("#setup-steps", VirtualList).cursor_key
        body = self.query_one("#setup-detail-body", Static)
        if key is None:
            body.update("")
            return
        change = self.changes[key]
        text = Text()
        text.append_text(plain(f"{change.title}: {change.action}", 200, style="bold"))
        state, message = self.progress.get(key, ("", ""))
        if message:
            text.append(f"\n{state}: ", style="bold")
            text.append_text(plain(message, 500))
        for line in change.details:
            text.append("\n  ")
            text.append_text(plain(line, 500))
        for name, document in (change.documents or {}).items():
            text.append("\n")
            text.append_text(plain(name, 200, style="bold underline"))
            text.append("\n")
            text.append_text(plain(json.dumps(document, indent=2), 20_000, keep_newlines=True))
        if key == "scripts" and self.env:
            text.append("\nenv file\n", style="bold underline")
            text.append_text(plain(self.env, 2000, keep_newlines=True))
        body.update(text)

    # -- apply and teardown ----------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="setup", description="apply the set-up plan")
    def apply(self, cfg) -> None:
        from actions import setup

        for event in setup.apply(self.services.ctx, cfg):
            self.post_message(StepProgress(event))

    @work(thread=True, exclusive=True, exit_on_error=False, group="setup", description="tear the stack down")
    def destroy(self, cfg) -> None:
        from actions import setup

        for event in setup.destroy(self.services.ctx, cfg):
            self.post_message(StepProgress(event))

    def on_step_progress(self, message: StepProgress) -> None:
        e = message.event
        if e.step in self.changes:
            self.progress[e.step] = (e.state, e.message)
        elif e.message:
            # A sub-step (an upload, a policy): show it on its parent's line as the latest news.
            parent = next((k for k, (s, _) in self.progress.items() if s == "running"), None)
            if parent:
                self.progress[parent] = ("running", e.message)
        if e.state == "failed":
            self.failed = True
        self.query_one("#setup-steps", VirtualList).refresh()
        self._detail()
        self.status(f"{e.step}: {e.state} {e.message}"[:200], error=e.state == "failed")

    def on_worker_state_changed(self, event) -> None:
        from textual.worker import WorkerState

        if event.worker.group == "setup" and event.state in (WorkerState.SUCCESS, WorkerState.ERROR,
                                                              WorkerState.CANCELLED):
            was_running = self.running
            self.running = False
            if event.state == WorkerState.SUCCESS and was_running:
                self.failed = False
                self.status("Finished. The plan below is read again.")
                self._keep_progress = True  # the per-step results stay on screen
                self.load_plan(self.cfg, teardown=False)
            self._summary()

    def action_plan(self) -> None:
        """Read the plan for the current settings (nothing is created)."""
        if self.need_ctx():
            self.status("Reading what exists…")
            self.load_plan(self.cfg)

    def action_wizard(self) -> None:
        """Walk through the four pages of settings, then show the plan."""
        if not self.need_ctx():
            return
        self._page(0, self.cfg)

    def _page(self, index: int, cfg) -> None:
        if index == len(PAGES):
            self.cfg = cfg
            self._summary()
            self.action_plan()
            return
        title, fields = PAGES[index]

        def value(key: str) -> str:
            v = getattr(cfg, key)
            return "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)

        form_fields = [Field(key, label, value(key), hint) for key, label, hint in fields]

        def next_page(result) -> None:
            if result is not None:
                self._page(index + 1, result)

        self.app.push_screen(FormScreen(f"Setup {title}", form_fields, lambda v: config_from(cfg, v)), next_page)

    def action_apply(self) -> None:
        """Create what the plan shows; after a failure this resumes where it stopped."""
        if not self.need_ctx() or self.running:
            return
        if not self.changes or self.teardown_plan:
            self.status("Read the plan first (l): nothing is created before it is shown.", error=True)
            return

        def go(ok: bool) -> None:
            if ok:
                self.running, self.failed, self.progress = True, False, {}
                self._summary()
                self.apply(self.cfg)

        todo = sum(c.action != "none" for c in self.changes.values())
        self.app.push_screen(ConfirmScreen(f"Apply the plan: {todo} steps create or change resources in "
                                           f"{self.services.ctx.region}.", "apply"), go)

    def action_teardown(self) -> None:
        """Show what teardown would delete, then delete it after the stack's name is typed."""
        if not self.need_ctx() or self.running:
            return
        if not self.teardown_plan:
            self.status("Reading what teardown would delete; press t again to go ahead.")
            self.load_plan(self.cfg, teardown=True)
            return
        stack = self.services.ctx.stack

        def go(ok: bool) -> None:
            if ok:
                self.running, self.failed, self.progress = True, False, {}
                self._summary()
                self.destroy(self.cfg)

        self.app.push_screen(ConfirmScreen(f"Teardown deletes every resource tagged edge-console:stack={stack} "
                                           "shown in the plan. This cannot be undone.", stack), go)
