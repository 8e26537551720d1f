"""DeploymentsScreen (being built)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from tui.screens.base import ConsoleScreen


class DeploymentsScreen(ConsoleScreen):
    MODE = "deployments"

    def compose_body(self) -> ComposeResult:
        yield Static("Not built yet.")
