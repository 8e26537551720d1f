"""Logs: follow a component's log on a device, as `tail -f /greengrass/v2/logs/<component>.log`.

`actions.logs.follow` reads the sandbox device's file or, on AWS, asks the edge server through SSM
Run Command; it runs on a worker thread, which appends lines to a bounded buffer. A 10 Hz timer
moves them into the `RichLog` widget in one batch (as plain `Text`, never markup). Lines are device data: control characters are
escaped before they are shown.
"""

from __future__ import annotations

import threading
from collections import deque

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import RichLog, Static

from actions.errors import ConfigError
from tui.safe_text import clean, plain
from tui.screens.base import ConsoleScreen
from tui.widgets.form import Field, FormScreen

APP_COMPONENT = "com.greengrass.SageMakerEdgeManager.ImageClassification"
MAX_LINES = 5000


class LogsScreen(ConsoleScreen):
    """Follow one component's log on one device."""

    MODE = "logs"
    CSS_PATH = "logs.tcss"
    BINDINGS = [
        Binding("o", "open", "Open log"),
        Binding("g", "nucleus", "greengrass.log"),
        Binding("p", "pause", "Pause"),
        Binding("c", "clear", "Clear"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.device = ""
        self.component = APP_COMPONENT
        self.paused = False
        self._lines: deque[str] = deque(maxlen=MAX_LINES)
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None
        self.received = 0

    def compose_body(self) -> ComposeResult:
        yield Static(id="logs-summary")
        # Wrapped: the runbook's log lines carry a whole prediction message and are long.
        yield RichLog(id="logs-view", max_lines=MAX_LINES, wrap=True, markup=False, highlight=False)

    def on_mount(self) -> None:
        self.device = self.services.defaults.get("device", "")
        self.component = self.services.defaults.get("component", APP_COMPONENT)
        self.query_one(RichLog).focus()
        self.set_interval(0.1, self._flush)
        self._summary()
        if self.device:
            self.start()
        else:
            self.status("Press o to choose a device and a component.")

    def on_screen_resume(self) -> None:
        # The fleet screen's detail can ask for another device's log.
        wanted = self.services.defaults.get("device", "")
        if wanted and wanted != self.device and self.is_mounted:
            self.device = wanted
            self.start()

    def on_unmount(self) -> None:
        self._halt()

    # -- following -------------------------------------------------------------------------------

    def _halt(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def start(self) -> None:
        """Follow self.component on self.device from the last 50 lines."""
        if not self.need_ctx():
            return
        self._halt()
        self._stop = threading.Event()
        self.query_one(RichLog).clear()
        with self._lock:
            self._lines.clear()
        self.received = 0
        self._summary()
        self.status(f"Following {self.component} on {self.device}.")
        self.follow(self.device, self.component, self._stop)

    @work(thread=True, exclusive=True, exit_on_error=False, group="logs", description="follow the log")
    def follow(self, device: str, component: str, stop: threading.Event) -> None:
        from actions import logs

        for line in logs.follow(self.services.ctx, device, component, lines=50, stop=stop):
            if stop.is_set():
                return
            with self._lock:
                self._lines.append(line)

    def _flush(self) -> None:
        if self.paused:
            return
        with self._lock:
            lines = list(self._lines)
            self._lines.clear()
        if lines:
            self.received += len(lines)
            # Escape control characters: a log line must not move the cursor or recolour the screen.
            view = self.query_one(RichLog)
            for line in lines[-MAX_LINES:]:
                view.write(Text(clean(line, 4000)))
            self._summary()

    def _summary(self) -> None:
        text = Text()
        text.append_text(plain(f" {self.device or '(no device)'}", 40, style="bold"))
        text.append(" / ")
        text.append_text(plain(self.component, 70))
        text.append(f"  {self.received} lines")
        if self.paused:
            text.append("  PAUSED", style="reverse bold")
        self.query_one("#logs-summary", Static).update(text)

    # -- actions ---------------------------------------------------------------------------------

    def action_open(self) -> None:
        """Choose the device and the component whose log to follow."""
        from actions.logs import SAFE_NAME

        def check(v: dict[str, str]) -> dict[str, str]:
            for key in ("device", "component"):
                if not SAFE_NAME.match(v[key]):
                    raise ConfigError(f"{key} {v[key]!r} is not a valid name (letters, digits, '.', '_', ':', '-').")
            return v

        def chosen(v) -> None:
            if v:
                self.device, self.component = v["device"], v["component"]
                self.services.defaults["device"] = self.device
                self.start()

        fields = [Field("device", "Device", self.device), Field("component", "Component", self.component,
                                                                  "greengrass: the nucleus")]
        self.app.push_screen(FormScreen("Follow a log", fields, check), chosen)

    def action_nucleus(self) -> None:
        """Switch between the component's log and the nucleus's greengrass.log."""
        self.component = APP_COMPONENT if self.component == "greengrass" else "greengrass"
        if self.device:
            self.start()

    def action_pause(self) -> None:
        """Stop drawing new lines (they are kept, up to the buffer's size) or resume."""
        self.paused = not self.paused
        self._summary()

    def action_clear(self) -> None:
        self.query_one(RichLog).clear()
