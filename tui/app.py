"""The console App: screens registered as modes, each on a key and in the command palette.

`make_app(ctx, ...)` builds the App for `run_console` and for the tests alike; every service (AWS
context, MQTT, clock) is injected, so the App itself never makes a client.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from tui.clock import Clock
from tui.errors import describe
from tui.screens.base import NAV
from tui.services import Services, Subscribe


def _screen_classes() -> dict[str, type[Screen]]:
    from tui.screens.deployments import DeploymentsScreen
    from tui.screens.fleet import FleetScreen
    from tui.screens.jobs import JobsScreen
    from tui.screens.live import LiveScreen
    from tui.screens.logs import LogsScreen
    from tui.screens.setup import SetupScreen

    return {"setup": SetupScreen, "jobs": JobsScreen, "fleet": FleetScreen,
            "deployments": DeploymentsScreen, "live": LiveScreen, "logs": LogsScreen}


class EdgeConsoleApp(App):
    """The operator console."""

    CSS_PATH = "app.tcss"
    TITLE = "edge-console"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        *(Binding(key, f"switch_mode('{mode}')", title, show=False) for mode, key, title, _ in NAV),
        Binding("q", "quit", "Quit", priority=False),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, services: Services, start: str = "live", handle_signals: bool = False) -> None:
        super().__init__()
        self.services = services
        self.start_mode = start
        self.handle_signals = handle_signals
        for mode, cls in _screen_classes().items():
            self.add_mode(mode, cls)

    @property
    def clock(self) -> Clock:
        """The injected clock."""
        return self.services.clock

    def on_mount(self) -> None:
        if self.handle_signals:
            # An SSH session that drops sends SIGHUP; a service manager sends SIGTERM. Either way the
            # app exits through its normal path, so whoever started it can clean up (the sandbox).
            import asyncio
            import signal

            loop = asyncio.get_running_loop()
            for sig in (signal.SIGHUP, signal.SIGTERM):
                loop.add_signal_handler(sig, lambda s=sig: self.exit(return_code=128 + s))
        self.switch_mode(self.start_mode)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for mode, key, title, help_ in NAV:
            yield SystemCommand(f"{title} screen", f"{help_} (key {key})",
                                lambda m=mode: self.switch_mode(m))
        yield from super().get_system_commands(screen)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Workers the App itself runs (the --sandbox start-up) report here.
        if event.state == WorkerState.ERROR:
            self.notify(describe(event.worker.error, event.worker.description or ""),
                        severity="error", timeout=10, markup=False)


def make_app(ctx: Any, *, subscribe: Subscribe | None = None, clock: Clock | None = None,
             where: str = "", defaults: dict[str, str] | None = None, sandbox: Any = None,
             start: str = "live", handle_signals: bool = False) -> EdgeConsoleApp:
    """Build the console App.

    Args:
        ctx: an `actions.context.Context` (AWS or sandbox), or None (screens that need AWS say so).
        subscribe: opens MQTT subscriptions (see `tui.services.Subscribe`), or None.
        clock: the clock; a `FixedClock` makes snapshots stable.
        where: what the console is connected to, shown on the navigation line.
        defaults: form defaults by name (thing, group, model file, component names).
        sandbox: the running sandbox when started with `--sandbox`.
        start: the screen to open first (a mode name: setup, jobs, fleet, deployments, live, logs).
        handle_signals: exit cleanly on SIGHUP and SIGTERM (the command line; not in tests).

    Returns:
        The App, not yet running.
    """
    services = Services(ctx=ctx, clock=clock or Clock(), subscribe=subscribe, where=where,
                        defaults=dict(defaults or {}), sandbox=sandbox)
    return EdgeConsoleApp(services, start=start, handle_signals=handle_signals)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-console", description="The edge-console operator console.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="headless subcommands (each has --help):\n"
               "  setup plan|apply|destroy   IAM role, S3 bucket, edge server, Greengrass env file\n"
               "  compile                    a SageMaker Neo job, or --local\n"
               "  package                    the model and inference Greengrass components\n"
               "  deploy                     deploy, follow, cancel, roll back\n"
               "  fleet                      devices, their Greengrass status and status messages\n"
               "  logs                       a component's log on a device\n"
               "  leftovers                  find and remove what SageMaker Edge Manager left\n"
               "  sandbox up|status|down|device ...   the local AWS sandbox")
    p.add_argument("--sandbox", action="store_true",
                   help="start the local sandbox with one device running the fixture model, and open the console on it")
    p.add_argument("--profile", help="AWS profile (default: AWS_PROFILE or the default chain)")
    p.add_argument("--region", help="AWS region (default: AWS_REGION or the profile's region)")
    p.add_argument("--stack", default=None, help="stack name used to tag and find resources")
    p.add_argument("--screen", default="live", choices=[m for m, *_ in NAV], help="screen to open first")
    p.add_argument("--mqtt", metavar="HOST:PORT", help="an MQTT broker for the live and fleet screens (TLS with --ca, mutual TLS with --cert/--key)")
    p.add_argument("--iot-endpoint", metavar="HOST",
                   help="AWS IoT Core data endpoint (aws iot describe-endpoint --endpoint-type iot:Data-ATS)")
    p.add_argument("--cert", metavar="FILE", help="client certificate for AWS IoT Core (mutual TLS)")
    p.add_argument("--key", metavar="FILE", help="the certificate's private key")
    p.add_argument("--ca", metavar="FILE", help="CA certificate (default: the system store)")
    return p


def run_console(argv: list[str]) -> int:
    """Run the console; returns the exit status. Operator mistakes print one line, no traceback."""
    from actions.errors import EdgeConsoleError

    args = _parser().parse_args(argv)
    try:
        from fixtures.sandbox import SandboxError
    except ImportError:  # an install without the sandbox extra
        SandboxError = EdgeConsoleError  # noqa: N806
    try:
        if args.sandbox:
            from tui.launch import run_sandbox_console

            return run_sandbox_console(args)
        from tui.launch import run_aws_console

        return run_aws_console(args)
    except (EdgeConsoleError, SandboxError) as exc:
        print(f"edge-console: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
