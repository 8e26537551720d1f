"""What every console screen shares: the navigation line, the status line, the footer, and the
worker-failure handler that turns a failed AWS or MQTT call into a visible message."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import Worker, WorkerState

from tui.errors import describe

if TYPE_CHECKING:
    from tui.app import EdgeConsoleApp

# (mode, key, title, help) in navigation order; app.py registers them.
NAV = [
    ("setup", "1", "Setup", "First-time set-up: IAM, S3, EC2, Greengrass env file"),
    ("jobs", "2", "Jobs", "Compilation and packaging jobs"),
    ("fleet", "3", "Fleet", "Devices, their status and metrics"),
    ("deployments", "4", "Deploy", "Create, follow, cancel and roll back deployments"),
    ("live", "5", "Live", "Live MQTT predictions per device"),
    ("logs", "6", "Logs", "Follow a component's log on a device"),
]


class NavBar(Static):
    """One line: the product, the screens with their keys (this one highlighted), the target."""

    def __init__(self, mode: str) -> None:
        super().__init__(id="nav")
        self.mode = mode

    def on_mount(self) -> None:
        text = Text()
        for mode, key, title, _ in NAV:
            style = "reverse bold" if mode == self.mode else ""
            text.append(f" {key} {title} ", style=style)
        where = self.app.services.where  # type: ignore[attr-defined]
        if where:
            text.append("  ")
            text.append(where, style="dim")
        self.update(text)


class StatusLine(Static):
    """The last thing that happened on this screen; failures stay until the next message."""

    def show(self, message: str, error: bool = False) -> None:
        """Show `message` (plain text, never markup)."""
        self.set_class(error, "-error")
        self.update(Text(("! " if error else "") + message))


class ConsoleScreen(Screen):
    """Base of the console's screens. Subclasses define MODE and compose their body."""

    MODE = ""

    @property
    def console_app(self) -> "EdgeConsoleApp":
        return self.app  # type: ignore[return-value]

    @property
    def services(self):
        """The injected services (AWS context, MQTT, clock)."""
        return self.console_app.services

    def compose(self) -> ComposeResult:
        yield NavBar(self.MODE)
        yield from self.compose_body()
        yield StatusLine(id="status")
        yield Footer(compact=True)

    def compose_body(self) -> ComposeResult:
        """The screen's own widgets, between the navigation and the status line."""
        yield from ()

    def status(self, message: str, error: bool = False) -> None:
        """Show a one-line message in this screen's status line."""
        self.query_one(StatusLine).show(message, error)

    def need_ctx(self) -> bool:
        """True when an AWS context is configured; otherwise say so and return False."""
        if self.services.ctx is None:
            self.status("No AWS context: start with --sandbox, or set AWS_PROFILE/AWS_REGION.", error=True)
            return False
        return True

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        # Every worker runs with exit_on_error=False; this is where its failure becomes visible.
        if event.state == WorkerState.ERROR:
            message = describe(event.worker.error, event.worker.description or "")
            self.status(message, error=True)
            self.app.notify(message, severity="error", timeout=8, markup=False)
