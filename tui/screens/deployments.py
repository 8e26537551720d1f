"""Deployments: the group's deployments, a new one (component versions, target group,
configuration merge), followed per device; cancel and roll back.

Every call goes through `actions.deploy` on a worker thread; the per-device progress of the
deployment being followed arrives as messages and is drawn in the lower pane.
"""

from __future__ import annotations

import json

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Static

from actions.errors import ConfigError
from tui.safe_text import plain
from tui.screens.base import ConsoleScreen
from tui.widgets.form import ConfirmScreen, Field, FormScreen
from tui.widgets.virtual_list import VirtualList

MODEL_COMPONENT = "com.greengrass.SageMakerEdgeManager.ImageClassification.Model"
APP_COMPONENT = "com.greengrass.SageMakerEdgeManager.ImageClassification"


class HistoryLoaded(Message):
    """The group's deployments came back."""

    def __init__(self, group: str, rows: list[dict]) -> None:
        super().__init__()
        self.group, self.rows = group, rows


class DeviceProgress(Message):
    """A device moved on with a deployment (or the deployment finished: device is None)."""

    def __init__(self, deployment_id: str, device: str | None, status: str, message: str) -> None:
        super().__init__()
        self.deployment_id, self.device, self.status, self.message = deployment_id, device, status, message


def parse_merge(text: str) -> dict | None:
    """The configuration merge typed by the operator: a JSON object, or nothing."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"configuration is not JSON ({exc.msg} at character {exc.pos}); "
                          'write an object such as {"threshold": 0.2}.') from None
    if not isinstance(value, dict):
        raise ConfigError('configuration must be a JSON object, such as {"threshold": 0.2}.')
    return value


class DeploymentsScreen(ConsoleScreen):
    """Deployments of the thing group."""

    MODE = "deployments"
    CSS_PATH = "deployments.tcss"
    BINDINGS = [
        Binding("n", "new", "New"),
        Binding("f", "follow", "Follow"),
        Binding("c", "cancel", "Cancel"),
        Binding("b", "rollback", "Roll back"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict] = {}
        self.devices: dict[str, dict[str, tuple[str, str]]] = {}  # deployment -> device -> (status, message)
        self.following: str | None = None
        self._select_on_load: str | None = None

    @property
    def group(self) -> str:
        return self.services.defaults.get("group", "mythinggroupname")

    def compose_body(self) -> ComposeResult:
        yield Static(id="dep-summary")
        yield Static(Text(" id        name                        status       created", style="bold"),
                     id="dep-header")
        yield VirtualList(self._render_row, id="dep-list", empty="No deployments yet: press n to create one.")
        yield Static(id="dep-devices")

    def on_mount(self) -> None:
        self.query_one("#dep-list").focus()
        self._summary()
        self.action_refresh()
        self.set_interval(3.0, self._tick)

    # -- data ------------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="dep-history", description="list deployments")
    def load(self, group: str) -> None:
        from actions import deploy

        self.post_message(HistoryLoaded(group, deploy.history(self.services.ctx, group)))

    def on_history_loaded(self, event: HistoryLoaded) -> None:
        if event.group != self.group:
            return
        self.rows = {r["deploymentId"]: r for r in event.rows}
        lst = self.query_one("#dep-list", VirtualList)
        lst.set_keys([r["deploymentId"] for r in event.rows])
        if self._select_on_load in self.rows:
            # A deployment just created here: put the cursor on it, so its progress is what shows.
            lst.cursor = list(lst.keys).index(self._select_on_load)
            self._select_on_load = None
        self._devices_pane()

    def _tick(self) -> None:
        # Re-read the history only while a deployment is being followed: a thing group's deployment
        # stays ACTIVE for as long as it is the group's latest, so ACTIVE alone says nothing.
        following = any(w.group == "dep-follow" and w.is_running for w in self.workers)
        if following and self.services.ctx is not None:
            self.load(self.group)

    @work(thread=True, exclusive=True, exit_on_error=False, group="dep-follow", description="follow the deployment")
    def follow(self, deployment_id: str) -> None:
        from actions import deploy

        for event in deploy.follow(self.services.ctx, deployment_id):
            device = None if event.step == "deployment" else event.step
            status = (event.data or {}).get("status") or event.state.upper()
            self.post_message(DeviceProgress(deployment_id, device, status, event.message))

    def on_device_progress(self, event: DeviceProgress) -> None:
        if event.device is not None:
            self.devices.setdefault(event.deployment_id, {})[event.device] = (event.status, event.message)
        else:
            self.status(event.message)
            self.load(self.group)
        self._devices_pane()

    # -- drawing ---------------------------------------------------------------------------------

    def _summary(self) -> None:
        text = Text()
        text.append_text(plain(f" group {self.group}", 60, style="bold"))
        if self.following:
            text.append(f"  following {self.following[:8]}")
        self.query_one("#dep-summary", Static).update(text)

    def _render_row(self, key, line: int, width: int, selected: bool) -> Text:
        r = self.rows.get(key, {})
        created = r.get("creationTimestamp")
        text = Text(f" {key[:8]}  ")
        name = plain(r.get("deploymentName", ""), 60)
        name.truncate(27, overflow="ellipsis", pad=True)
        text.append_text(name)
        status = r.get("deploymentStatus", "")
        text.append(f" {status:<12}", style="bold reverse" if status in ("FAILED", "CANCELED") else "")
        text.append(f" {created:%Y-%m-%d %H:%M:%S}" if created else " -")
        if r.get("isLatestForTarget"):
            text.append("  latest", style="bold")
        return text

    @on(VirtualList.Highlighted, "#dep-list")
    def _moved(self) -> None:
        self._devices_pane()

    def _devices_pane(self) -> None:
        key = self.query_one("#dep-list", VirtualList).cursor_key
        pane = self.query_one("#dep-devices", Static)
        if key is None:
            pane.update(Text("Per-device progress shows here: select a deployment and press f.", style="dim"))
            return
        text = Text()
        text.append(f"Deployment {key}", style="bold")
        components = self.rows.get(key, {}).get("components")
        if components:
            text.append_text(plain(" " + ", ".join(f"{n.rsplit('.', 1)[-1]} {v.get('componentVersion')}"
                                                   for n, v in components.items()), 200))
        per_device = self.devices.get(key)
        if not per_device:
            text.append("\n  press f to follow it on each device", style="dim")
        for device, (status, message) in sorted((per_device or {}).items()):
            text.append("\n  ")
            name = plain(device, 60)
            name.truncate(24, overflow="ellipsis", pad=True)
            text.append_text(name)
            text.append(f" {status:<12} ", style="bold" if status not in ("SUCCEEDED", "COMPLETED") else "")
            text.append_text(plain(message, 200))
        pane.update(text)

    # -- actions ---------------------------------------------------------------------------------

    def _selected(self) -> str | None:
        return self.query_one("#dep-list", VirtualList).cursor_key

    def action_refresh(self) -> None:
        if self.need_ctx():
            self.load(self.group)

    def action_follow(self) -> None:
        key = self._selected()
        if key and self.need_ctx():
            self.following = key
            self._summary()
            self.follow(key)

    @on(VirtualList.Selected, "#dep-list")
    def _enter(self) -> None:
        self.action_follow()

    def action_new(self) -> None:
        """A new deployment: component versions, target group and a configuration merge."""
        if not self.need_ctx():
            return
        d = self.services.defaults

        def check(v: dict[str, str]) -> dict:
            if not v["group"]:
                raise ConfigError("target group is empty; give the thing group to deploy to.")
            components = {name: version for name, version in ((v["model"], v["model_version"]),
                                                              (v["app"], v["app_version"])) if name}
            if not components or not all(components.values()):
                raise ConfigError("give each component a version (MAJOR.MINOR.PATCH), or clear its name.")
            merge = parse_merge(v["merge"])
            return {"group": v["group"], "components": components,
                    "merge": {v["app"]: merge} if merge and v["app"] else None}

        fields = [
            Field("group", "Target group", self.group),
            Field("model", "Model component", MODEL_COMPONENT),
            Field("model_version", "Model version", d.get(f"version:{MODEL_COMPONENT}", "")),
            Field("app", "App component", APP_COMPONENT),
            Field("app_version", "App version", d.get(f"version:{APP_COMPONENT}", "")),
            Field("merge", "App configuration", "", 'JSON merge, e.g. {"threshold": 0.2}'),
        ]

        def create(spec) -> None:
            if spec is not None:
                self.create(spec)

        self.app.push_screen(FormScreen("New deployment", fields, check,
                                        "Deploys the components to every core device of the group."), create)

    @work(thread=True, exit_on_error=False, group="dep-create", description="create the deployment")
    def create(self, spec: dict) -> None:
        from actions import deploy

        dep = deploy.create(self.services.ctx, spec["group"], spec["components"], merge=spec["merge"])
        self.app.call_from_thread(self._created, spec["group"], dep)

    def _created(self, group: str, deployment_id: str) -> None:
        self.services.defaults["group"] = group
        self.status(f"Created deployment {deployment_id}; following it.")
        self.following = deployment_id
        self._select_on_load = deployment_id
        self._summary()
        self.load(group)
        self.follow(deployment_id)

    def action_cancel(self) -> None:
        key = self._selected()
        if not key or not self.need_ctx():
            return

        def go(ok: bool) -> None:
            if ok:
                self.cancel(key)

        self.app.push_screen(ConfirmScreen(f"Cancel deployment {key}? Devices that applied it keep it.", "cancel"), go)

    @work(thread=True, exit_on_error=False, group="dep-create", description="cancel the deployment")
    def cancel(self, deployment_id: str) -> None:
        from actions import deploy

        status = deploy.cancel(self.services.ctx, deployment_id)
        self.app.call_from_thread(self.status, f"Deployment {deployment_id[:8]} is {status}.")
        self.load(self.group)

    def action_rollback(self) -> None:
        if not self.need_ctx():
            return

        def go(ok: bool) -> None:
            if ok:
                self.rollback(self.group)

        self.app.push_screen(ConfirmScreen(f"Roll {self.group} back to its previous deployment?", "rollback"), go)

    @work(thread=True, exit_on_error=False, group="dep-create", description="roll back")
    def rollback(self, group: str) -> None:
        from actions import deploy

        dep = deploy.rollback(self.services.ctx, group)
        self.app.call_from_thread(self._created, group, dep)
