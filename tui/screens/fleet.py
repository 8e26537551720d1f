"""Fleet: every device of the thing group with both "last seen" sources and its edge-client
metrics; sort, filter, and a device's detail (installed components, effective deployments).

The device list comes from `actions.fleet.list_fleet` on a worker thread; status messages arrive
over MQTT (`edge-console/+/status`, retained) into `FleetModel` and are merged twice a second. The
list draws only visible rows, so 10,000 devices load, sort and filter in milliseconds.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Static

from tui.fleet_model import COLUMNS, FleetModel
from tui.safe_text import plain
from tui.screens.base import ConsoleScreen
from tui.widgets.virtual_list import VirtualList

STATUS_FILTER = "edge-console/+/status"


def fit(cells: list[str], width: int) -> Text:
    """Lay cells out in the fleet columns; the name column takes what the others leave."""
    fixed = sum(c.width + 1 for c in COLUMNS[1:])
    text = Text()
    for column, cell in zip(COLUMNS, cells):
        w = max(column.width, width - fixed - 1) if column.key == "name" else column.width
        piece = plain(cell, 200)
        piece.truncate(w, overflow="ellipsis")
        if column.right:
            piece.pad_left(w - piece.cell_len)
        else:
            piece.pad_right(w - piece.cell_len)
        text.append_text(piece)
        text.append(" ")
    return text


class FleetLoaded(Message):
    """The device list came back from AWS."""

    def __init__(self, devices: list) -> None:
        super().__init__()
        self.devices = devices


class DetailLoaded(Message):
    """A device's installed components and effective deployments came back."""

    def __init__(self, name: str, installed, effective) -> None:
        super().__init__()
        self.name, self.installed, self.effective = name, installed, effective


class DeviceScreen(ModalScreen[None]):
    """One device: both last-seen sources, its status message, components and deployments."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close"), Binding("l", "logs", "Logs")]

    def __init__(self, model: FleetModel, name: str) -> None:
        super().__init__()
        self.model, self.device = model, name

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="device-dialog"):
            yield Static(plain(self.device, 80, style="bold"), classes="title")
            with VerticalScroll():
                yield Static(id="device-body")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._show(None, None)
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, description="read the device's components")
    def load(self) -> None:
        from actions import fleet

        ctx = self.app.services.ctx
        if ctx is None:
            return
        installed, effective = fleet.device_details(ctx, self.device)
        self.post_message(DetailLoaded(self.device, installed, effective))

    def on_detail_loaded(self, event: DetailLoaded) -> None:
        self._show(event.installed, event.effective)

    def on_worker_state_changed(self, event) -> None:
        from textual.worker import WorkerState

        from tui.errors import describe

        if event.state == WorkerState.ERROR:
            self.query_one("#device-body", Static).update(Text("! " + describe(event.worker.error)))

    def _show(self, installed, effective) -> None:
        cells = dict(zip([c.key for c in COLUMNS], self.model.cells(self.device)))
        d = self.model.devices.get(self.device)
        s = self.model.statuses.get(self.device)
        text = Text()
        text.append(f"Greengrass: {cells['core']}, last status {cells['core_seen']} ago")
        if d is not None and d.platform:
            text.append_text(plain(f" ({d.platform}/{d.architecture})", 60))
        text.append(f"\nEdge client: last status message {cells['client_seen']} ago")
        if s is not None:
            text.append_text(plain(f", state {s.state}, model {s.model_name} {s.model_version}, "
                                   f"{cells['ips']} img/s, p95 {cells['p95']} ms, outbox {s.outbox_depth}, "
                                   f"errors {s.errors}", 300))
            if s.last_error:
                text.append("\nLast error: ")
                text.append_text(plain(s.last_error, 300))
        text.append("\n\nInstalled components\n", style="bold underline")
        if installed is None:
            text.append("  loading…\n")
        elif not installed:
            text.append("  none\n")
        for c in installed or ():
            text.append_text(plain(f"  {c.name} {c.version} {c.state}\n", 200, keep_newlines=True))
        text.append("\nEffective deployments\n", style="bold underline")
        if effective is None:
            text.append("  loading…\n")
        elif not effective:
            text.append("  none\n")
        for e in effective or ():
            when = e.updated.strftime("%Y-%m-%d %H:%M") if e.updated else "-"
            line = f"  {e.deployment_id[:8]} {e.name} {e.status} {when}" + (f" - {e.reason}" if e.reason else "")
            text.append_text(plain(line + "\n", 300, keep_newlines=True))
        self.query_one("#device-body", Static).update(text)

    def action_logs(self) -> None:
        """Open the logs screen on this device."""
        self.dismiss()
        self.app.services.defaults["device"] = self.device
        self.app.switch_mode("logs")


class FleetScreen(ConsoleScreen):
    """The fleet of one thing group."""

    MODE = "fleet"
    CSS_PATH = "fleet.tcss"
    BINDINGS = [
        Binding("r", "refresh", "Refresh"),
        Binding("s", "sort", "Sort"),
        Binding("o", "order", "Order"),
        Binding("slash", "search", "Filter"),
        Binding("enter", "open", "Detail"),
        Binding("g", "group", "Group"),
        Binding("escape", "close", "Close", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.model: FleetModel | None = None
        self.sort = "name"
        self.reverse = False
        self.query_text = ""
        self._subscription = None

    @property
    def group(self) -> str:
        return self.services.defaults.get("group", "mythinggroupname")

    def compose_body(self) -> ComposeResult:
        yield Static(id="fleet-summary")
        yield Input(placeholder="filter: name, state, model version (Enter keeps, Escape clears)",
                    id="fleet-search", classes="hidden", compact=True)
        yield Static(id="fleet-header")
        yield VirtualList(self._render_row, id="fleet-list", empty="No devices (yet).")

    def on_mount(self) -> None:
        self.model = FleetModel(self.services.clock.now)
        self.query_one("#fleet-list").focus()
        self._header()
        self._summary()
        self.action_refresh()
        if self.services.subscribe is not None:
            self.watch_statuses()
        self.set_interval(0.5, self._merge_statuses)

    def on_unmount(self) -> None:
        if self._subscription is not None:
            self._subscription.close()

    # -- loading ---------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="fleet", description="list the fleet")
    def load(self, group: str) -> None:
        """Read the group's devices from AWS (Greengrass core devices and IoT things)."""
        from actions import fleet

        self.post_message(FleetLoaded(fleet.list_fleet(self.services.ctx, group)))

    @work(thread=True, exclusive=True, exit_on_error=False, group="fleet-mqtt", description="subscribe to status messages")
    def watch_statuses(self) -> None:
        self._subscription = self.services.subscribe(STATUS_FILTER, self.model.ingest_status)

    def on_fleet_loaded(self, event: FleetLoaded) -> None:
        self.show_devices(event.devices)

    def show_devices(self, devices: list) -> None:
        """Put a device list on screen (from `list_fleet`)."""
        self.model.set_devices(devices)
        self._relist()
        self.status(f"{len(devices)} devices in {self.group}.")

    def _merge_statuses(self) -> None:
        changed = self.model.apply_statuses()
        lst = self.query_one("#fleet-list", VirtualList)
        if changed - set(lst.keys) or (changed and self.sort != "name"):
            self._relist()
        else:
            lst.refresh()  # ages move every second even without news
        self._summary()

    # -- view ------------------------------------------------------------------------------------

    def _relist(self) -> None:
        keys = self.model.view(self.sort, self.reverse, self.query_text)
        self.query_one("#fleet-list", VirtualList).set_keys(keys)
        self._summary()

    def _header(self) -> None:
        width = max(40, self.size.width - 1)
        titles = []
        for c in COLUMNS:
            mark = ("▼" if self.reverse else "▲") if c.key == self.sort else ""
            titles.append(c.title + mark)
        text = fit(titles, width)
        text.stylize("bold")
        self.query_one("#fleet-header", Static).update(text)

    def _summary(self) -> None:
        lst = self.query_one("#fleet-list", VirtualList)
        total = len(self.model.names()) if self.model else 0
        text = Text()
        text.append_text(plain(f" group {self.group}", 60, style="bold"))
        text.append(f"  {len(lst.keys)}/{total} shown")
        if self.query_text:
            text.append("  filter: ")
            text.append_text(plain(self.query_text, 20))
        if self.model and self.model.malformed_statuses:
            text.append(f"  {self.model.malformed_statuses} bad status msgs")
        self.query_one("#fleet-summary", Static).update(text)

    def _render_row(self, key, line: int, width: int, selected: bool) -> Text:
        return fit(self.model.cells(key), width)

    def on_resize(self) -> None:
        self._header()

    # -- actions ---------------------------------------------------------------------------------

    def action_refresh(self) -> None:
        """Read the device list again."""
        if self.need_ctx():
            self.status(f"Reading the devices of {self.group}…")
            self.load(self.group)

    def action_sort(self) -> None:
        """Sort by the next column."""
        keys = [c.key for c in COLUMNS]
        self.sort = keys[(keys.index(self.sort) + 1) % len(keys)]
        self._header()
        self._relist()

    def action_order(self) -> None:
        """Reverse the sort order."""
        self.reverse = not self.reverse
        self._header()
        self._relist()

    def action_search(self) -> None:
        box = self.query_one("#fleet-search", Input)
        box.remove_class("hidden")
        box.focus()

    @on(Input.Changed, "#fleet-search")
    def _filter(self, event: Input.Changed) -> None:
        self.query_text = event.value.strip()
        self._relist()

    @on(Input.Submitted, "#fleet-search")
    def _filter_done(self) -> None:
        if not self.query_text:
            self.query_one("#fleet-search").add_class("hidden")
        self.query_one("#fleet-list").focus()

    def action_close(self) -> None:
        box = self.query_one("#fleet-search", Input)
        box.value = ""
        box.add_class("hidden")
        self.query_one("#fleet-list").focus()

    def action_open(self) -> None:
        key = self.query_one("#fleet-list", VirtualList).cursor_key
        if key is not None:
            self.app.push_screen(DeviceScreen(self.model, key))

    @on(VirtualList.Selected, "#fleet-list")
    def _selected(self) -> None:
        self.action_open()

    def action_group(self) -> None:
        from tui.screens.live import TopicScreen

        def chosen(group: str | None) -> None:
            if group:
                self.services.defaults["group"] = group
                self.model.set_devices([])
                self._relist()
                self.action_refresh()

        self.app.push_screen(TopicScreen(self.group, "Thing group:"), chosen)
