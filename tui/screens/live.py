"""Live MQTT: one row per device with its latest top-5, message rate and time since last message.

Messages are collected by `LiveAggregator` on the MQTT thread and drawn by a 15 Hz timer inside
`batch_update()`, never once per message. Everything a device sent is shown through
`tui.safe_text` as plain `Text`: no markup, no escapes.
"""

from __future__ import annotations

import json

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Static

from actions.messages.prediction import PREDICTION_TOPIC
from tui.clock import ago
from tui.live_model import DeviceRow, LiveAggregator, Malformed
from tui.safe_text import plain
from tui.screens.base import ConsoleScreen
from tui.widgets.bars import score_line
from tui.widgets.virtual_list import VirtualList

FLUSH_HZ = 15
TOP_K = 5


def pretty_payload(raw: bytes, limit: int = 20_000) -> Text:
    """A payload as indented JSON when it is JSON, else as text; control characters escaped."""
    text = raw[:limit].decode("utf-8", errors="replace")
    try:
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        pass
    suffix = f"\n… {len(raw) - limit} more bytes" if len(raw) > limit else ""
    return plain(text + suffix, max_len=limit * 2, keep_newlines=True)


class TopicScreen(ModalScreen[str | None]):
    """Ask for one value (a topic filter, a group name)."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, current: str, prompt: str = "Subscribe to topic filter (+ and # wildcards):") -> None:
        super().__init__()
        self.current = current
        self.prompt = prompt

    def compose(self) -> ComposeResult:
        with Vertical(id="topic-dialog", classes="dialog"):
            yield Static(self.prompt, classes="title")
            yield Input(self.current, id="topic-input")
            yield Static("Enter subscribes, Escape cancels", classes="hint")

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        self.dismiss(value or None)


class MalformedScreen(ModalScreen[None]):
    """The malformed messages kept (newest first) and the selected one's reason and bytes."""

    BINDINGS = [Binding("escape,m", "dismiss", "Close")]

    def __init__(self, items: list[Malformed], total: int, clock) -> None:
        super().__init__()
        self.items = list(reversed(items))
        self.total = total
        self.clock = clock

    def compose(self) -> ComposeResult:
        with Vertical(id="malformed-dialog", classes="dialog"):
            yield Static(Text(f"Malformed messages: {self.total} received, last {len(self.items)} kept"),
                         classes="title")
            yield VirtualList(self._row, id="malformed-list", empty="No malformed messages.")
            with VerticalScroll(id="malformed-detail"):
                yield Static(id="malformed-body")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        lst = self.query_one(VirtualList)
        lst.set_keys(list(range(len(self.items))))
        lst.focus()
        self._show(0 if self.items else None)

    def _row(self, key, line: int, width: int, selected: bool) -> Text:
        item = self.items[key]
        when = item.wall.strftime("%H:%M:%S")
        text = Text(f"{when} ")
        text.append_text(plain(item.topic, 30))
        text.append("  ")
        text.append_text(plain(item.error, 120))
        return text

    @on(VirtualList.Highlighted, "#malformed-list")
    def _highlight(self, event: VirtualList.Highlighted) -> None:
        self._show(event.key)

    def _show(self, key) -> None:
        body = self.query_one("#malformed-body", Static)
        if key is None:
            body.update("")
            return
        item = self.items[key]
        text = Text()
        text.append("reason: ", style="bold")
        text.append_text(plain(item.error, 300))
        text.append(f"\nsize: {item.size} bytes, topic: ")
        text.append_text(plain(item.topic, 200))
        text.append("\n\n")
        text.append_text(pretty_payload(item.payload))
        body.update(text)


class LiveScreen(ConsoleScreen):
    """Live predictions per device."""

    MODE = "live"
    CSS_PATH = "live.tcss"
    BINDINGS = [
        Binding("p", "pause", "Pause"),
        Binding("slash", "search", "Search"),
        Binding("enter", "detail", "Raw JSON"),
        Binding("m", "malformed", "Malformed"),
        Binding("t", "topic", "Topic"),
        Binding("c", "compact", "Compact"),
        Binding("escape", "close", "Close", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, DeviceRow] = {}
        self.paused = False
        self.query_text = ""
        self.topic = PREDICTION_TOPIC
        self.total = 0
        self.malformed_total = 0
        self._subscription = None
        self._last_age_refresh = 0.0
        self.agg: LiveAggregator | None = None

    # -- layout --------------------------------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        yield Static(id="live-summary")
        yield Input(placeholder="search devices, labels, models (Enter keeps, Escape clears)",
                    id="live-search", classes="hidden", compact=True)
        yield VirtualList(self._render_row, row_height=1 + TOP_K, id="live-list",
                          empty="Waiting for predictions…")
        with VerticalScroll(id="live-detail", classes="hidden"):
            yield Static(id="live-raw")

    def on_mount(self) -> None:
        clock = self.services.clock
        self.agg = LiveAggregator(clock.monotonic, clock.now)
        self.query_one("#live-list", VirtualList).focus()
        self._update_summary()
        self.subscribe(self.topic)
        self.set_interval(1 / FLUSH_HZ, self.flush)

    def on_unmount(self) -> None:
        self._close_subscription()

    # -- subscription (off the UI thread: connecting can block) --------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="mqtt", description="subscribe")
    def subscribe(self, topic: str) -> None:
        """Open a subscription to `topic`, replacing the current one."""
        self._close_subscription()
        if self.services.subscribe is None:
            self.app.call_from_thread(self.status, "No MQTT broker configured: start with --sandbox or --mqtt HOST:PORT.", True)
            return
        self._subscription = self.services.subscribe(topic, self.agg.ingest)

    def _close_subscription(self) -> None:
        sub, self._subscription = self._subscription, None
        if sub is not None:
            sub.close()

    # -- the 15 Hz flush -------------------------------------------------------------------------

    def flush(self) -> None:
        """Move what the aggregator collected onto the screen, in one batch."""
        if self.agg is None:
            return
        now = self.services.clock.monotonic()
        lst = self.query_one("#live-list", VirtualList)
        with self.app.batch_update():
            if not self.paused:
                drained = self.agg.drain()
                self.total, self.malformed_total = drained.total, drained.malformed_total
                for key in drained.removed:
                    self.rows.pop(key, None)
                new_keys = drained.removed or any(k not in self.rows for k in drained.changed)
                self.rows.update(drained.changed)
                if new_keys or (self.query_text and drained.changed):
                    self._relist()
                elif drained.changed:
                    lst.refresh_keys(drained.changed)
                if lst.cursor_key in drained.changed:
                    self._update_detail()
            else:
                self.total, self.malformed_total = self.agg.total, self.agg.malformed_total
            if now - self._last_age_refresh >= 1.0:
                # Ages and rates move with time even without messages: redraw what is visible.
                self._last_age_refresh = now
                lst.refresh()
            self._update_summary()
            sub = self._subscription
            if sub is not None and hasattr(sub, "status"):
                state = sub.status()
                if state != getattr(self, "_last_state", None):
                    self._last_state = state
                    self.status(state, error=state.startswith(("disconnected", "message")))

    def _relist(self) -> None:
        keys = sorted(self.rows)
        if self.query_text:
            q = self.query_text.lower()
            keys = [k for k in keys if q in self.rows[k].searchable()]
        self.query_one("#live-list", VirtualList).set_keys(keys)

    def _update_summary(self) -> None:
        text = Text()
        text.append(" PAUSED " if self.paused else " LIVE ", style="reverse bold")
        text.append(" ")
        text.append_text(plain(self.topic, 40))
        text.append(f"  {len(self.rows)} dev  {self.total} msgs  ")
        text.append(f"{self.malformed_total} malformed", style="bold" if self.malformed_total else "")
        if self.query_text:
            text.append("  search: ")
            text.append_text(plain(self.query_text, 20))
        self.query_one("#live-summary", Static).update(text)

    # -- rows ------------------------------------------------------------------------------------

    def _render_row(self, key, line: int, width: int, selected: bool) -> Text:
        row = self.rows.get(key)
        if row is None:
            return Text("")
        p = row.prediction
        if line == 0:
            now = self.services.clock.monotonic()
            text = Text("▸ " if selected else "  ")
            text.append_text(plain(row.key, 32, style="bold"))
            model = " ".join(x for x in (p.model_name, p.model_version) if x)
            if model:
                text.append("  ")
                text.append_text(plain(model, 24))
            text.append(f"  {row.rate(now, self.agg.rate_window):.1f}/s  {ago(now - row.last_seen)} ago")
            if p.seq is not None:
                text.append(f"  #{p.seq}")
            return text
        i = line - 1
        if i < len(p.results):
            label, score = p.results[i]
            return score_line(plain(label, 60), score, width)
        if i == 0:
            return Text("   no class passed the threshold", style="dim")
        return Text("")

    # -- detail ----------------------------------------------------------------------------------

    @on(VirtualList.Highlighted, "#live-list")
    def _cursor_moved(self) -> None:
        self._update_detail()

    def _update_detail(self) -> None:
        pane = self.query_one("#live-detail")
        if pane.has_class("hidden"):
            return
        key = self.query_one("#live-list", VirtualList).cursor_key
        row = self.rows.get(key) if key is not None else None
        raw = self.query_one("#live-raw", Static)
        if row is None:
            raw.update(Text("No device selected."))
            return
        text = Text()
        text.append_text(plain(row.key, 60, style="bold"))
        text.append(f"  {row.count} msgs  received {row.last_wall:%H:%M:%S}  topic ")
        text.append_text(plain(row.topic, 60))
        text.append("\n")
        text.append_text(pretty_payload(row.raw))
        raw.update(text)

    # -- actions ---------------------------------------------------------------------------------

    def action_pause(self) -> None:
        """Freeze the rows; messages are still counted and shown on resume."""
        self.paused = not self.paused
        self.status("Paused: messages are still collected." if self.paused else "Live.")
        if not self.paused:
            self.flush()
        self._update_summary()

    def action_search(self) -> None:
        box = self.query_one("#live-search", Input)
        box.remove_class("hidden")
        box.focus()

    @on(Input.Changed, "#live-search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.query_text = event.value.strip()
        self._relist()
        self._update_summary()

    @on(Input.Submitted, "#live-search")
    def _search_done(self) -> None:
        box = self.query_one("#live-search", Input)
        if not self.query_text:
            box.add_class("hidden")
        self.query_one("#live-list", VirtualList).focus()

    def action_close(self) -> None:
        box = self.query_one("#live-search", Input)
        if box.has_focus or self.query_text:
            box.value = ""
            box.add_class("hidden")
            self.query_one("#live-list", VirtualList).focus()
        else:
            self.query_one("#live-detail").add_class("hidden")

    def action_detail(self) -> None:
        self.query_one("#live-detail").toggle_class("hidden")
        self._update_detail()

    @on(VirtualList.Selected, "#live-list")
    def _selected(self) -> None:
        self.action_detail()

    def action_malformed(self) -> None:
        self.app.push_screen(MalformedScreen(self.agg.malformed(), self.agg.malformed_total,
                                             self.services.clock))

    def action_topic(self) -> None:
        def chosen(topic: str | None) -> None:
            if topic and topic != self.topic:
                self.topic = topic
                self.agg.clear()
                self.rows.clear()
                self._relist()
                self.subscribe(topic)
                self._update_summary()

        self.app.push_screen(TopicScreen(self.topic), chosen)

    def action_compact(self) -> None:
        """Switch between full rows (top-5 bars) and one line per device."""
        lst = self.query_one("#live-list", VirtualList)
        lst.row_height = 1 if lst.row_height > 1 else 1 + TOP_K
        lst.set_keys(list(lst.keys))
