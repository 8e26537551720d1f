"""FleetScreen (being built)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from tui.screens.base import ConsoleScreen


class FleetScreen(ConsoleScreen):
    MODE = "fleet"

    def compose_body(self) -> ComposeResult:
        yield Static("Not built yet.")
