"""The live aggregator and the plain-text helpers, without Textual."""

from __future__ import annotations

import threading

from rich.console import Console

from tests.tui.helpers import payload
from tui.clock import FixedClock, ago
from tui.live_model import LiveAggregator
from tui.safe_text import clean, plain

TOPIC = "gg/sageMakerEdgeManager/image-classification"


def _agg(**kw):
    clock = FixedClock()
    return clock, LiveAggregator(clock.monotonic, clock.now, **kw)


def test_latest_prediction_per_device_and_rate():
    clock, agg = _agg(rate_window=10)
    for i in range(20):
        agg.ingest(TOPIC, payload("cam-1", [("tabby, tabby cat", 80.0 + i / 10)], seq=i))
        clock.advance(0.5)
    drained = agg.drain()
    row = drained.changed["cam-1"]
    assert row.prediction.seq == 19 and row.count == 20
    assert abs(row.rate(clock.monotonic(), 10) - 2.0) < 0.25  # two a second
    clock.advance(30)
    assert row.rate(clock.monotonic(), 10) == 0.0  # a silent device's rate falls to zero
    assert agg.drain().changed == {}  # nothing new: nothing to redraw


def test_runbook_era_messages_are_grouped_by_topic():
    _, agg = _agg()
    agg.ingest(TOPIC, payload(None, [("slot, one-armed bandit", 83.41295623779297)]))
    agg.ingest("site-b/" + TOPIC, payload(None, [("mousetrap", 75.8)]))
    keys = set(agg.drain().changed)
    assert keys == {f"unknown device @ {TOPIC}", f"unknown device @ site-b/{TOPIC}"}


def test_memory_is_bounded_and_every_bad_message_is_counted():
    _, agg = _agg(max_devices=100, max_malformed=10)
    for i in range(250):
        agg.ingest(TOPIC, payload(f"dev-{i:03d}", [("espresso", 50.0)]))
    for i in range(40):
        agg.ingest(TOPIC, b"\xff\xfe garbage %d" % i)
    drained = agg.drain()
    assert len(drained.changed) == 100 and min(drained.changed) == "dev-150"  # the most recent 100
    assert drained.malformed_total == 40 and len(agg.malformed()) == 10
    assert agg.malformed()[-1].error == "payload is not UTF-8 text"
    agg.ingest(TOPIC, payload("dev-000", [("espresso", 50.0)]))  # comes back: dev-150 makes room
    assert agg.drain().removed == ("dev-150",)


def test_threads_feed_it_at_once():
    _, agg = _agg()
    data = [payload(f"dev-{t}", [("espresso", 50.0)], seq=i) for t in range(4) for i in range(2500)]

    def feed(part):
        for item in part:
            agg.ingest(TOPIC, item)

    threads = [threading.Thread(target=feed, args=(data[t::4],)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    drained = agg.drain()
    assert drained.total == 10_000 and sum(r.count for r in drained.changed.values()) == 10_000


def test_device_text_cannot_style_or_move_the_terminal():
    evil = "[bold red]x[/] \x1b[2J\x1b]0;title\x07 \u202egnp.exe\r\nnext"
    text = clean(evil)
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text and "\n" not in text
    assert text.startswith("[bold red]x[/] \\x1b[2J")
    console = Console(record=True, width=120, color_system=None)
    console.print(plain(evil))
    assert "[bold red]x[/]" in console.export_text()  # shown, never interpreted
    assert len(clean("a" * 10_000, max_len=50)) == 50
    assert ago(None) == "-" and ago(75) == "1m" and ago(3) == "3s"


def test_a_failing_worker_shows_its_error_as_text_and_the_app_goes_on():
    from textual import work

    from tests.tui.helpers import screen_text, sync, wait_for
    from tui.app import make_app

    @sync
    async def run():
        app = make_app(None, start="logs")
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            screen = app.screen

            @work(thread=True, exit_on_error=False, description="read something")
            def failing(self):
                raise RuntimeError("[red]boom[/] \x1b[2J")

            failing(screen)
            await wait_for(pilot, lambda: "boom" in screen_text(app), timeout=10)
            text = screen_text(app)
            assert "[red]boom[/] \\x1b[2J" in text and "\x1b" not in text
            await pilot.press("5")
            assert app.current_mode == "live"

    run()
