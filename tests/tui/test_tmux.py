"""`edge-console --sandbox` in a real terminal (tmux, 80x24, 256 colours), driven with keys and
read from the screen as a person would: predictions must be flowing when the console appears,
every screen must answer its key, and q must leave nothing running."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")]

REPO = Path(__file__).resolve().parents[2]


class Terminal:
    """A tmux session of our own (its own server socket), 80x24."""

    def __init__(self, command: str, env: dict[str, str]) -> None:
        self.socket = f"edge-console-test-{uuid.uuid4().hex[:8]}"
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        self.done = Path(f"/tmp/{self.socket}.exit")
        shell = f"cd {REPO} && env {exports} {command}; echo $? > {self.done}"
        self._tmux("new-session", "-d", "-s", "main", "-x", "80", "-y", "24", shell)

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True,
                              timeout=10).stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "main")

    def press(self, *keys: str) -> None:
        for key in keys:
            self._tmux("send-keys", "-t", "main", key)
            time.sleep(0.15)

    def wait_for(self, *texts: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if all(t in screen for t in texts):
                return screen
            time.sleep(0.3)
        raise AssertionError(f"never saw {texts!r}; the screen shows:\n{screen}")

    def hang_up(self) -> None:
        """What a dropped SSH session does: the terminal goes away and the program gets SIGHUP."""
        self._tmux("kill-session", "-t", "main")

    def close(self) -> None:
        self._tmux("kill-server")
        self.done.unlink(missing_ok=True)


def _sandbox_processes() -> set[int]:
    """Processes of `--sandbox` consoles' sandboxes (their state folders are edge-console-sandbox-*)."""
    out = subprocess.run(["pgrep", "-f", "edge-console-sandbox-"], capture_output=True, text=True,
                         timeout=30).stdout
    return {int(pid) for pid in out.split()}


def _end_sandbox_processes(before: set[int]) -> None:
    """After a test, whatever it found: SIGTERM, then SIGKILL, each sandbox process that was not
    there before it (sandbox server, mosquitto in its own session, core devices, edge clients), so
    that a console that failed to stop its sandbox leaves nothing behind pytest."""
    left = _sandbox_processes() - before
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            left = _sandbox_processes() - before
            if not left:
                return
            time.sleep(0.2)


def test_sandbox_console_in_a_terminal():
    venv_bin = Path(sys.executable).parent
    before = _sandbox_processes()
    term = Terminal(f"{venv_bin}/edge-console --sandbox", {"TERM": "xterm-256color", "COLORTERM": ""})
    try:
        # The bootstrap (sandbox, setup, device, Neo compile, package, deploy) prints its steps,
        # then the live screen opens with a prediction from the sandbox device already on it.
        screen = term.wait_for("5 Live", "mything", "%", timeout=240)
        assert "malformed" in screen and "█" in screen

        term.press("3")
        term.wait_for("gg status", "HEALTHY", "1/1 shown")
        term.press("enter")
        term.wait_for("Installed components", "com.greengrass.SageMakerEdgeManager.ImageClassification")
        term.press("escape")

        term.press("2")
        term.wait_for("compile", "COMPLETED")
        term.press("4")
        term.wait_for("demo-mythinggroupname")
        term.press("f")
        term.wait_for("SUCCEEDED")
        term.press("1")
        term.wait_for("PLAN", "is up to date")
        term.press("6")
        term.wait_for("ImageClassification", "lines")

        term.press("5", "p")
        term.wait_for("PAUSED")
        term.press("p", "C-p")
        term.wait_for("Fleet screen")
        term.press("Escape")

        term.press("q")
        deadline = time.monotonic() + 60
        while not term.done.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert term.done.exists(), f"the console did not exit on q:\n{term.screen()}"
        assert term.done.read_text().strip() == "0"
        deadline = time.monotonic() + 15
        while _sandbox_processes() - before and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _sandbox_processes() - before, "the sandbox's processes outlived the console"
    finally:
        term.close()
        _end_sandbox_processes(before)


def test_a_dropped_terminal_stops_the_sandbox():
    venv_bin = Path(sys.executable).parent
    before = _sandbox_processes()
    term = Terminal(f"{venv_bin}/edge-console --sandbox", {"TERM": "xterm-256color"})
    try:
        term.wait_for("5 Live", "mything", timeout=240)
        assert _sandbox_processes() - before, "the sandbox should be running while the console is open"
        term.hang_up()
        deadline = time.monotonic() + 40
        while _sandbox_processes() - before and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _sandbox_processes() - before, "SIGHUP left the sandbox's processes running"
    finally:
        term.close()
        _end_sandbox_processes(before)
