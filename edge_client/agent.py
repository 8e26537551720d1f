"""`edge-client run`: the device agent.

It classifies images from a source, stores each prediction in the on-disk outbox, sends it at
QoS 1 and removes it only when the broker has acknowledged it; it publishes a retained status
message every `status_interval` seconds and on every change; it swaps in a new model when the
model directory or the configuration changes; it stops cleanly on SIGTERM.

Threads:
- main: source -> classify -> sender.submit (staged in the outbox: seq given, not yet on disk);
- sender: outbox.commit (everything staged meanwhile, one transaction) -> transport.publish_batch,
  acknowledgements -> outbox.ack;
- housekeeping: status messages, model and config change detection, model loading (a new model
  is loaded beside the old one and swapped in between two images).

Exit codes: 0 after a clean stop, 2 on a configuration error (missing model, bad setting), so a
Greengrass deployment reports FAILED; 1 only for a bug (its traceback is logged).
"""

from __future__ import annotations

import argparse
import collections
import logging
import operator
import os
import queue
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

from actions.errors import ConfigError, EdgeConsoleError, ImageError, ModelError, MqttError
from actions.messages import prediction as prediction_msg
from actions.messages import status as status_msg
from actions.mqtt import Will, open_transport, select_transport
from edge_client.config import Settings, greengrass_configuration, load_settings
from edge_client.outbox import Outbox
from edge_client.sources import describe_source, open_source

log = logging.getLogger("edge-client")
AGENT_VERSION = "0.1.0"
# Settings the agent applies while running; any other change is logged as needing a restart.
LIVE_SETTINGS = {"model_dir", "model_variant", "top_k", "threshold", "interval", "max_rate", "topic",
                 "status_interval", "log_predictions", "watch_interval", "log_level", "threads",
                 "max_images", "exit_when_done", "drain_timeout"}
WINDOW_FACTOR = 10  # messages handed to the transport at once, per message it keeps in flight
MIN_STATUS_GAP = 1.0  # seconds: statuses "on change" are coalesced to at most one per second
FIRST_FIGURES_AFTER = 2.0  # seconds after the first image: the first status with a rate and latencies
_SEQ = operator.itemgetter(0)  # an outbox row's seq
AWS_IOT_PUBLISH_QUOTA = 100  # publishes per second per connection AWS IoT Core accepts (not adjustable)
AWS_IOT_SAFE_RATE = 90  # publishes per second that leave room for status messages under that quota


def clean_text(text: Any, limit: int = 300) -> str:
    """One line of printable text: control characters (terminal escapes) become `?`."""
    text = str(text)
    return "".join(c if c.isprintable() else "?" for c in " ".join(text.split()))[:limit]


def setup_logging(level: str = "info") -> None:
    """Log lines to stdout, one per event, which the Greengrass nucleus captures into the component log."""
    logger = logging.getLogger("edge-client")
    if not any(getattr(h, "_edge_client", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler._edge_client = True  # type: ignore[attr-defined]
        formatter = logging.Formatter("%(asctime)s.%(msecs)03dZ [%(levelname)s] edge-client: %(message)s",
                                      "%Y-%m-%dT%H:%M:%S")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level.upper())


def model_signature(model_dir: str) -> tuple:
    """What identifies the model directory's contents: its real path and each file's size and mtime."""
    real = os.path.realpath(os.path.expanduser(model_dir))
    try:
        entries = []
        with os.scandir(real) as it:
            for entry in it:
                if entry.is_file():
                    st = entry.stat()
                    entries.append((entry.name, st.st_size, st.st_mtime_ns))
        return (real, tuple(sorted(entries)))
    except OSError:
        return (real, None)


class Metrics:
    """Counters and the latency windows the status message reports."""

    def __init__(self, window: int = 1000):
        self.preprocess = collections.deque(maxlen=window)
        self.inference = collections.deque(maxlen=window)
        self.images = 0
        self.errors = 0
        self.last_error: str | None = None
        self._rate_images = 0
        self._rate_since = time.monotonic()
        self.rate: float | None = None

    def record(self, preprocess_ms: float, inference_ms: float) -> None:
        self.preprocess.append(preprocess_ms)
        self.inference.append(inference_ms)
        self.images += 1

    def error(self, text: str) -> None:
        self.errors += 1
        self.last_error = clean_text(text)

    def roll_rate(self) -> float | None:
        """Images per second since the last call."""
        now = time.monotonic()
        elapsed = now - self._rate_since
        if elapsed >= 0.5:
            self.rate = (self.images - self._rate_images) / elapsed
            self._rate_images, self._rate_since = self.images, now
        return self.rate

    @staticmethod
    def percentiles(values) -> tuple[float | None, float | None]:
        data = sorted(values)
        if not data:
            return (None, None)

        def pick(q: float) -> float:
            # Nearest-rank percentile: no interpolation, so it is a latency that really happened.
            return data[min(len(data) - 1, max(0, int(round(q * len(data) + 0.5)) - 1))]

        return (pick(0.50), pick(0.95))


class Sender(threading.Thread):
    """Stores messages in the outbox, hands them to the transport, removes them when acknowledged.

    The producer calls `submit()`: the message gets its sequence number and is staged in the
    outbox. This thread commits what is staged in one transaction (group commit): woken by the
    first message of a batch, it waits `COMMIT_DELAY` for more, then commits and hands the committed
    rows over, so no message is sent before it is on disk, and `_cursor`, the last seq handed over,
    keeps the order. The producer never touches the disk; it waits only when `STAGE_MAX` messages
    are staged, until this thread has committed them.

    At most `window` messages are with the transport at once. Committed rows that do not fit wait
    in `_ready` (up to another `window`), the rest on disk only: they are read back when there is
    room (`_behind`), as are a previous run's rows and everything stored during an outage. Rows are
    handed over only while the transport is connected, so a long outage fills the outbox on disk,
    not memory. Acknowledged rows are deleted in batches.

    When the outbox cannot be written (disk full, I/O error), what is staged stays in memory, the
    producer waits in `submit()` (so at most `STAGE_MAX` wait), and this thread retries the commit
    with a backoff up to `STORE_RETRY_MAX`; `on_error` reports the failure and the recovery.
    """

    # Acknowledged rows are deleted in batches: a SIGKILL between an acknowledgement and its
    # delete sends that message again after the restart, with its seq (at least once).
    ACK_BATCH_SECONDS = 0.1  # acknowledged rows are deleted at least this often...
    ACK_BATCH_ROWS = 2048  # ...or once this many are waiting...
    IDLE_ACK_ROWS = 64  # ...or, once nothing is in flight, when this many are waiting...
    IDLE_ACK_SECONDS = 0.01  # ...or this long after the last delete
    STAGE_MAX = 256  # the producer waits for a commit once this many messages are staged
    COMMIT_DELAY = 0.001  # seconds this thread gives the producer to fill a batch before it commits
    STORE_RETRY_MAX = 5.0  # at most this many seconds between attempts to write a failing outbox

    def __init__(self, outbox: Outbox, transport, window: int = 1000, *,
                 halt: threading.Event | None = None, on_error=None, max_rate: float = 0.0):
        """`halt`: set when the producer is to stop waiting (the agent is stopping); `on_error`:
        called with a one-line text when the outbox cannot be written, and with None when it can
        again; `max_rate`: at most this many messages per second to the transport (0: no limit),
        in bursts of a tenth of a second's worth; the rest wait in the outbox."""
        super().__init__(name="sender", daemon=True)
        self.outbox = outbox
        self.transport = transport
        self.window = max(1, window)
        # Room for this many rows in the window wakes this thread to refill it: a few wake-ups
        # per window, each handing over many rows, rather than one per acknowledgement.
        self.refill = max(1, self.window // 4)
        self._refill_below = self.window - self.refill  # in flight: at or below this, refill
        self.max_rate = max(0.0, max_rate)
        self._burst = max(1.0, self.max_rate / 10)  # tokens: messages the rate allows now
        self._tokens = self._burst
        self._tokens_at = time.monotonic()
        self._halt = halt or threading.Event()
        self._on_error = on_error or (lambda text: None)
        # The outbox cannot be written (disk full, I/O error): staged messages stay in memory, the
        # producer waits (no more than STAGE_MAX are staged), commits are retried with backoff.
        self._writable = threading.Event()
        self._writable.set()
        self._retry_store_at = 0.0
        self._store_backoff = 0.5
        self.store_error: str | None = None
        self._wake = threading.Event()
        self._committed = threading.Event()  # set after each commit; a producer at STAGE_MAX waits for it
        self._cursor = 0
        self._ready: collections.deque = collections.deque()  # committed rows after _cursor, in order
        self._behind = True  # committed rows after _ready are on disk only (a previous run's, ...)
        self._dropped_seen = outbox.dropped
        self._acked: collections.deque[int] = collections.deque()  # filled on the network thread
        self._flushed = time.monotonic()  # when acknowledged rows were last deleted
        self._failed: queue.SimpleQueue = queue.SimpleQueue()
        self._inflight: set[int] = set()  # seqs with the transport
        self._retry: list[tuple[float, int]] = []  # (due, seq)
        self._attempts: dict[int, int] = {}
        self._stopping = threading.Event()
        self._closing = False
        self._drained = threading.Event()
        self.acked = 0
        self.failures = 0
        self.last_error: str | None = None

    def wake(self) -> None:
        """New rows in the outbox, or the connection changed."""
        self._wake.set()

    def submit(self, topic: str, make_payload, qos: int = 1, state: tuple[str, str] | None = None) -> int:
        """Store a message to be sent and return its seq (arguments as for `Outbox.append`).

        It is staged at once, and committed with the messages staged around it before it is
        handed to the transport.
        """
        seq = self.outbox.stage(topic, make_payload, qos, state)
        staged = self.outbox.staged
        if staged == 1:
            # The first of a batch wakes this thread, once per batch rather than once per message.
            self._wake.set()
        elif staged >= self.STAGE_MAX:
            # Wait for a commit. An outbox that cannot be written holds the producer here (this
            # thread retries it) rather than letting unstored predictions pile up in memory.
            self._wake.set()
            while not self._halt.is_set():
                self._committed.clear()  # before looking: a commit from now on ends the wait
                if self.outbox.staged < self.STAGE_MAX:
                    break
                self._committed.wait(0.2)
        return seq

    def _on_done(self, seq: int, exc: BaseException | None) -> None:
        # Runs on the transport's network thread: account and get out; deletes happen in batches.
        self._inflight.discard(seq)
        if exc is None:
            self._acked.append(seq)
            if not self._wake.is_set() and (
                    len(self._acked) >= self.ACK_BATCH_ROWS or self._stopping.is_set()
                    or (not self._inflight and self._idle_acks_due())
                    or ((self._ready or self._behind) and len(self._inflight) <= self._refill_below)):
                # Time to delete a batch, or room in the window for waiting rows.
                self._wake.set()
        else:
            self._failed.put((seq, exc))
            self._wake.set()

    def _idle_acks_due(self) -> bool:
        """Nothing in flight: delete what is acknowledged soon (the outbox and the status's depth
        catch up), but at most every IDLE_ACK_SECONDS when messages come one at a time."""
        return (len(self._acked) >= self.IDLE_ACK_ROWS
                or time.monotonic() - self._flushed >= self.IDLE_ACK_SECONDS)

    def _send(self, rows: list) -> None:
        """Hand outbox rows to the transport, in order; each one's seq comes back to `_on_done`."""
        if rows:
            self._inflight.update(map(_SEQ, rows))  # before the transport can acknowledge any
            self.transport.publish_batch(rows, self._on_done)

    def _flush_acks(self) -> None:
        if self._acked:
            pop = self._acked.popleft  # thread-safe; acks appended meanwhile wait for the next flush
            acked = [pop() for _ in range(len(self._acked))]
            try:
                self.outbox.ack(acked)
            except sqlite3.Error as exc:
                # The rows stay on disk and would only be sent again after a restart (same seq):
                # keep the acknowledgements and delete them on a later flush.
                self._acked.extendleft(reversed(acked))
                self._storage_failed(exc)
                return
            if not self._writable.is_set():
                self._storage_recovered()
            self.acked += len(acked)
            if self._attempts:
                for seq in acked:
                    self._attempts.pop(seq, None)

    def _note_failures(self) -> None:
        while True:
            try:
                seq, exc = self._failed.get_nowait()
            except queue.Empty:
                return
            if self._closing:
                continue  # closed under it: the row stays in the outbox for the next start
            # Refused or failed: it stays in the outbox and is retried with a backoff.
            n = self._attempts.get(seq, 0) + 1
            self._attempts[seq] = n
            self.failures += 1
            self.last_error = clean_text(exc)
            self._retry.append((time.monotonic() + min(60.0, 2.0 ** n), seq))
            log.warning("message %d not acknowledged (%s); retrying", seq, self.last_error)

    def run(self) -> None:
        while True:
            try:
                if self._step():
                    return
            except Exception as exc:  # the sender must outlive any one failure; it is reported
                log.exception("sender: unexpected error, going on")
                self.last_error = clean_text(exc)
                self._on_error(f"sender: {self.last_error}")
                time.sleep(1.0)

    def _step(self) -> bool:
        """One pass of the loop; True when drained and stopping."""
        self._wake.clear()  # before looking for work: a wake-up from now on is not lost
        if not self._failed.empty():
            self._note_failures()
        if 0 < self.outbox.staged < self.STAGE_MAX and not self._stopping.is_set():
            time.sleep(self.COMMIT_DELAY)  # a partial batch: give the producer a moment to add to it
        self._store()
        self._committed.set()
        if self._retry and self.transport.connected and not self._closing:
            self._send_retries()
        if self._acked and (len(self._acked) >= self.ACK_BATCH_ROWS or self._stopping.is_set()
                            or (not self._inflight and self._idle_acks_due())
                            or time.monotonic() - self._flushed >= self.ACK_BATCH_SECONDS):
            self._flush_acks()
            self._flushed = time.monotonic()
        if self._stopping.is_set() and not self._inflight and (self.outbox.depth == 0 or self._closing):
            self._flush_acks()
            self._drained.set()
            return True
        if not self._writable.is_set():
            wait = max(0.05, self._retry_store_at - time.monotonic())
        else:
            wait = (self.ACK_BATCH_SECONDS if self._inflight else self.IDLE_ACK_SECONDS if self._acked
                    else 0.5)
            if self.max_rate and (self._ready or self._behind) and self._tokens < 1:
                wait = min(wait, (1 - self._tokens) / self.max_rate)  # rows wait for the rate
        self._wake.wait(wait)
        return False

    def _store(self) -> None:
        """Commit what is staged and hand over what the window has room for."""
        if not self._writable.is_set() and time.monotonic() < self._retry_store_at:
            rows = []  # the outbox failed: wait for the next attempt, but send what is on disk
        else:
            wrote = self.outbox.staged
            if self._acked and self.outbox.depth > self.outbox.max_messages:
                self._flush_acks()  # a full outbox drops its oldest: delete the delivered ones first
            try:
                rows = self.outbox.commit()
            except sqlite3.Error as exc:
                self._storage_failed(exc)
                rows = []
            else:
                if wrote and not self._writable.is_set():
                    self._storage_recovered()
        if self.outbox.dropped != self._dropped_seen:
            # A full outbox dropped its oldest rows, maybe some of these: what is left is on disk.
            self._dropped_seen = self.outbox.dropped
            self._ready.clear()
            self._behind = True
        tail = self._ready[-1].seq if self._ready else self._cursor
        if rows:
            if (not self._behind and rows[0].seq == tail + 1 and len(self._ready) + len(rows) <= self.window
                    and self.transport.connected):
                self._ready.extend(rows)
                tail = rows[-1].seq
            else:
                self._behind = True
        if self.outbox.last_seq > tail:
            self._behind = True  # committed elsewhere (append(), or dropped): read it back
        if self.transport.connected and not self._closing:
            self._hand_over()

    def _storage_failed(self, exc: Exception) -> None:
        first = self._writable.is_set()
        self._writable.clear()
        self.store_error = f"cannot write the outbox {self.outbox.path}: {clean_text(exc)}"
        self._retry_store_at = time.monotonic() + self._store_backoff
        self._store_backoff = min(2 * self._store_backoff, self.STORE_RETRY_MAX)
        if first:
            log.error("%s; classifying paused until it can (free space on that file system); retried "
                      "every %g s at most, predictions waiting in memory: %d", self.store_error,
                      self.STORE_RETRY_MAX, self.outbox.staged)
            self._on_error(self.store_error)

    def _storage_recovered(self) -> None:
        log.info("the outbox %s can be written again; classifying goes on", self.outbox.path)
        self.store_error = None
        self._store_backoff = 0.5
        self._writable.set()
        self._on_error(None)

    def _hand_over(self) -> None:
        """Fill the window: from `_ready` first, then from disk."""
        room = self.window - len(self._inflight)
        if self.max_rate:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._tokens_at) * self.max_rate)
            self._tokens_at = now
            room = min(room, int(self._tokens))
            self._tokens -= max(0, room)  # given back below for what is not sent
        ready = self._ready
        if room > 0 and ready:
            rows = [ready.popleft() for _ in range(min(room, len(ready)))]
            self._send(rows)
            self._cursor = rows[-1].seq
            room -= len(rows)
        if room > 0 and self._behind:
            last = self.outbox.last_seq
            rows = self.outbox.peek(after=self._cursor, limit=room)
            self._send(rows)
            if len(rows) == room:
                self._cursor = rows[-1].seq  # there may be more than fitted
            else:
                # All there was: rows up to `last` that were not read were dropped (outbox full).
                self._behind = False
                self._cursor = max(last, rows[-1].seq if rows else 0, self._cursor)
            room -= len(rows)
        if self.max_rate and room > 0:
            self._tokens += room  # not used: nothing more was waiting

    def _send_retries(self) -> None:
        now = time.monotonic()
        due = [r for r in self._retry if r[0] <= now]
        self._retry = [r for r in self._retry if r[0] > now]
        for _due, seq in due:
            rows = self.outbox.peek(after=seq - 1, limit=1)
            if rows and rows[0].seq == seq and seq not in self._inflight:
                self._send(rows)

    @property
    def inflight(self) -> int:
        """Messages with the transport, not yet acknowledged."""
        return len(self._inflight)

    @property
    def unsent(self) -> int:
        """Messages in the outbox not yet acknowledged (some acknowledged ones wait to be deleted)."""
        return max(0, self.outbox.depth - len(self._acked))

    def drain(self, timeout: float) -> bool:
        """Stop taking new work once the outbox is empty; wait up to `timeout` for that."""
        self._stopping.set()
        self._wake.set()
        ok = self._drained.wait(timeout)
        return ok and self.outbox.depth == 0

    def stop(self) -> None:
        """Stop now; whatever is not acknowledged stays in the outbox."""
        self._stopping.set()
        self._closing = True
        self._wake.set()
        self.join(5)


class Agent:
    """The running agent. `Agent(settings).run()` returns the exit code."""

    def __init__(self, settings: Settings, *, config_path: str | None = None,
                 greengrass: dict | None = None, overrides: dict | None = None):
        self.settings = settings
        self.config_path = config_path
        self._greengrass = greengrass
        self._overrides = overrides
        self.stop_event = threading.Event()
        self.metrics = Metrics()
        self.model = None
        self.model_error: str | None = None
        self.state = "starting"
        self.started = time.monotonic()
        self.outbox: Outbox | None = None
        self.transport = None
        self.sender: Sender | None = None
        self._status_dirty = threading.Event()
        self._last_status = 0.0
        self._model_sig: tuple | None = None
        self._attempted_sig: tuple | None = None
        self._config_mtime = self._mtime(config_path)
        self._settings_lock = threading.Lock()
        # For benchmarks: when the first image was taken and when the outbox was drained at the end.
        self.first_image_at: float | None = None
        self.drained_at: float | None = None

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _mtime(path: str | None) -> int | None:
        if not path:
            return None
        try:
            return os.stat(path).st_mtime_ns
        except OSError:
            return None

    def _on_storage_error(self, text: str | None) -> None:
        if text:
            self._note_error(text)
        else:
            self._status_dirty.set()

    def _note_error(self, text: str) -> None:
        self.metrics.error(text)
        self._status_dirty.set()

    def _load_model(self, model_dir: str, variant: str | None):
        from actions.inference import load_model

        directory = Path(model_dir).expanduser()
        if not directory.exists():
            raise ModelError(f"model_dir {directory} does not exist: deploy the model component or fix "
                             "model_dir (EDGE_CLIENT_MODEL_DIR)")
        return load_model(directory, variant, threads=self.settings.threads)

    # -- status ---------------------------------------------------------------------------------
    def build_status(self, state: str | None = None) -> dict:
        """The current status message."""
        m, model = self.metrics, self.model
        last_error = m.last_error
        if self.model_error:
            last_error = self.model_error
        return status_msg.build_status(
            device=self.settings.device, state=state or self._state(),
            model_name=getattr(model, "name", None), model_version=getattr(model, "version", None),
            runtime=getattr(model, "runtime", None), images_per_s=m.roll_rate(),
            preprocess_ms=m.percentiles(m.preprocess), inference_ms=m.percentiles(m.inference),
            outbox_depth=self.sender.unsent if self.sender else self.outbox.depth if self.outbox else 0,
            dropped=self.outbox.dropped if self.outbox else 0,
            seq=self.outbox.last_seq if self.outbox else None, images=m.images, errors=m.errors,
            uptime_s=time.monotonic() - self.started, last_error=last_error,
            connected=self.transport.connected if self.transport else False,
            agent_version=AGENT_VERSION)

    def _state(self) -> str:
        if self.state in ("running",) and (self.model_error or (self.transport and not self.transport.connected)
                                           or (self.sender and self.sender.store_error)):
            return "degraded"
        return self.state

    def publish_status(self, state: str | None = None, *, force: bool = False):
        """Publish the status (retained, QoS 1); returns the publish future or None when skipped."""
        if self.transport is None or (not force and not self.transport.connected):
            return None  # it is sent again on reconnect; piling statuses up offline helps nobody
        self._last_status = time.monotonic()
        self._status_dirty.clear()
        payload = status_msg.encode(self.build_status(state))
        return self.transport.publish(self.settings.resolved_status_topic, payload, qos=1, retain=True)

    # -- housekeeping ---------------------------------------------------------------------------
    def _housekeeping(self) -> None:
        next_status = time.monotonic()
        next_watch = time.monotonic() + self.settings.watch_interval
        first_figures = False  # the status at start has no images yet; the fleet view waits for these
        while not self.stop_event.is_set():
            now = time.monotonic()
            if (not first_figures and self.first_image_at is not None
                    and time.perf_counter() - self.first_image_at >= FIRST_FIGURES_AFTER):
                first_figures = True
                self._status_dirty.set()
            if now >= next_watch:
                next_watch = now + self.settings.watch_interval
                try:
                    self._check_config()
                    self._check_model()
                except Exception as exc:  # housekeeping must survive anything; the error is reported
                    log.exception("housekeeping failed")
                    self._note_error(f"housekeeping: {exc}")
            if now >= next_status or (self._status_dirty.is_set() and now - self._last_status >= MIN_STATUS_GAP):
                self.publish_status()
                next_status = now + self.settings.status_interval
            wait = min(next_status, next_watch) - time.monotonic()
            if self._status_dirty.is_set():
                wait = min(wait, self._last_status + MIN_STATUS_GAP - time.monotonic())
            self.stop_event.wait(max(0.05, wait))

    def _check_config(self) -> None:
        mtime = self._mtime(self.config_path)
        if mtime == self._config_mtime:
            return
        self._config_mtime = mtime
        try:
            new = load_settings(self.config_path, greengrass=self._greengrass, overrides=self._overrides)
        except ConfigError as exc:
            log.error("new configuration rejected, keeping the current one: %s", exc)
            self._note_error(f"configuration: {exc}")
            return
        old = self.settings
        changed = [k for k in new.public() if new.public()[k] != old.public()[k]]
        needs_restart = [k for k in changed if k not in LIVE_SETTINGS]
        for key in needs_restart:
            setattr(new, key, getattr(old, key))
            log.warning("setting %s changed; it takes effect when the agent restarts", key)
        with self._settings_lock:
            self.settings = new
        if changed:
            log.info("configuration reloaded: %s changed", ", ".join(changed))
            logging.getLogger("edge-client").setLevel(new.log_level.upper())
            self._status_dirty.set()

    def _check_model(self) -> None:
        s = self.settings
        sig = model_signature(s.model_dir) + (s.model_variant,)
        if sig == self._model_sig or sig == self._attempted_sig:
            return
        self._attempted_sig = sig
        log.info("model change detected in %s; loading it beside the running one", s.model_dir)
        try:
            new = self._load_model(s.model_dir, s.model_variant)
        except (ModelError, EdgeConsoleError, OSError) as exc:
            where = s.model_dir if sig[0] == os.path.abspath(s.model_dir) else f"{s.model_dir} (-> {sig[0]})"
            self.model_error = clean_text(f"model {where}: {exc}")
            log.error("new model not loaded, %s keeps running: %s",
                      getattr(self.model, "version", "the old model"), exc)
            self.metrics.error(self.model_error)
            self._status_dirty.set()
            return
        old = self.model
        self.model = new  # the main loop takes the reference once per image: the swap is between two
        self._model_sig = sig
        self.model_error = None
        log.info("model swapped: %s %s -> %s %s (%s)", getattr(old, "name", None),
                 getattr(old, "version", None), new.name, new.version, new.runtime)
        self._status_dirty.set()

    # -- the run --------------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        if self.stop_event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting
        log.info("%s received: stopping (sending what can be sent in %gs)",
                 signal.Signals(signum).name, self.settings.drain_timeout)
        self.stop_event.set()

    def _fatal(self, message: str) -> int:
        """Report a configuration error (log line + status when a transport is up) and return 2."""
        log.error("%s", message)
        self.metrics.last_error = clean_text(message)
        if self.transport is not None:
            # Give the fleet view the reason, if the broker can be reached quickly.
            if self.transport.wait_connected(3.0):
                fut = self.publish_status("error", force=True)
                try:
                    fut.result(3.0)
                except Exception:
                    pass
        return 2

    def run(self) -> int:
        """Run until stopped; return the process exit code."""
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, self._on_signal)
        try:
            return self._run()
        finally:
            self._shutdown_resources()
            for signum, handler in previous.items():  # an embedding program gets its own back
                signal.signal(signum, handler)

    def _run(self) -> int:
        s = self.settings
        log.info("edge-client %s starting: device %s, model %s, source %s (%s)", AGENT_VERSION, s.device,
                 s.model_dir, s.source, describe_source(s.source))
        for warning in s.warnings:
            log.warning("%s", warning)
        try:
            self.outbox = Outbox(s.outbox_path, s.outbox_max_messages, sync=s.outbox_sync)
        except ConfigError as exc:
            return self._fatal(str(exc))
        if self.outbox.moved_aside:
            log.error("outbox %s was corrupt (%s); kept as %s, starting a new one", s.outbox_path,
                      self.outbox.corrupt_error, self.outbox.moved_aside)
            self._note_error(f"outbox was corrupt; kept as {self.outbox.moved_aside}")
        self._dropped_seen = self.outbox.dropped
        self.outbox.on_commit = self._on_commit
        if self.outbox.depth:
            log.info("outbox holds %d unsent predictions (seq %s..%d); sending them first",
                     self.outbox.depth, self.outbox.first_seq(), self.outbox.last_seq)
        mqtt = s.mqtt()
        try:
            kind = select_transport(mqtt, host_given=s.host_given)
            will = Will(s.resolved_status_topic, status_msg.encode(status_msg.build_offline(s.device)))
            self.transport = open_transport(mqtt, will=will, kind=kind)
        except ConfigError as exc:
            return self._fatal(str(exc))
        self.transport.on_connection_change = self._on_connection_change
        log.info("publishing to %s via %s", s.topic, self.transport.describe())
        publish_rate = self._publish_rate(kind)
        try:
            self.transport.connect(timeout=None)
        except MqttError as exc:
            return self._fatal(str(exc))
        try:
            self.model = self._load_model(s.model_dir, s.model_variant)
        except (ModelError, EdgeConsoleError) as exc:
            return self._fatal(f"cannot load the model: {exc}")
        self._model_sig = self._attempted_sig = model_signature(s.model_dir) + (s.model_variant,)
        log.info("model %s %s loaded (%s/%s)", self.model.name, self.model.version, self.model.runtime,
                 getattr(self.model, "variant", "?"))
        # A watched directory's position is kept in the outbox with each prediction, so a restart
        # does not classify the whole directory again.
        self._source_key = f"source:{os.path.realpath(os.path.expanduser(s.source))}"
        try:
            images = open_source(s.source, loop=s.loop, stop=self.stop_event,
                                 on_error=lambda name, why: self._image_error(name, why),
                                 resume=self.outbox.get_state(self._source_key), idle=True)
        except ConfigError as exc:
            return self._fatal(str(exc))
        # The transport keeps max_inflight on the wire and queues the rest of the window itself, so
        # PUBACKs refill the wire without waiting for our thread.
        self.sender = Sender(self.outbox, self.transport, window=s.max_inflight * WINDOW_FACTOR,
                             halt=self.stop_event, on_error=self._on_storage_error, max_rate=publish_rate)
        self.sender.start()
        self.state = "running"
        keeper = threading.Thread(target=self._housekeeping, name="housekeeping", daemon=True)
        keeper.start()
        exhausted = self._classify_loop(images)
        if exhausted and not self.stop_event.is_set():
            if self.settings.exit_when_done:
                log.info("source done after %d images; sending what is left and exiting", self.metrics.images)
                self.stop_event.set()
            else:
                log.info("source done after %d images; idle (new configuration or SIGTERM)", self.metrics.images)
                self.state = "idle"
                self._status_dirty.set()
                self.stop_event.wait()
        self.state = "stopping"
        keeper.join(5)
        return self._drain_and_stop()

    def _publish_rate(self, kind: str) -> float:
        """Messages per second the sender may publish (0: no limit), and a warning when the agent
        may classify faster than that, or publish faster than AWS IoT Core takes."""
        s = self.settings
        aws = kind in ("iot-core", "greengrass-ipc")
        rate = s.max_publish_rate if s.max_publish_rate is not None else AWS_IOT_SAFE_RATE if aws else 0.0
        shared = "; the nucleus's connection is shared with other components" if kind == "greengrass-ipc" else ""
        if aws and (not rate or rate > AWS_IOT_PUBLISH_QUOTA):
            log.warning("AWS IoT Core takes at most %d publishes per second on a connection (a quota that "
                        "cannot be raised%s) and max_publish_rate is %s: the broker will throttle this agent "
                        "and throttled predictions arrive late and out of order; set max_publish_rate to %d "
                        "or less", AWS_IOT_PUBLISH_QUOTA, shared, f"{rate:g}" if rate else "0 (no limit)",
                        AWS_IOT_SAFE_RATE)
        elif rate and (not s.period or 1.0 / s.period > rate):
            log.warning("this agent may classify %s but publishes at most %g per second (max_publish_rate%s): "
                        "the rest waits in the outbox, which drops its oldest when full; set max_rate to %g "
                        "or less to classify only what can be sent",
                        f"{1.0 / s.period:g} images per second" if s.period else "without a limit", rate,
                        f", for AWS IoT Core's quota of {AWS_IOT_PUBLISH_QUOTA} per second{shared}" if aws else "",
                        rate)
        return rate

    def _image_error(self, name: str, why: str) -> None:
        # A file is skipped; a camera (name "camera:...") is being reopened, as `why` says.
        verb = "" if name.startswith("camera:") else " skipped"
        log.warning("%s%s: %s", clean_text(name, 120), verb, clean_text(why))
        self._note_error(f"{clean_text(name, 120)}: {clean_text(why)}")

    def _on_connection_change(self, up: bool, reason: str | None) -> None:
        if self.state == "stopped":
            return  # our own clean disconnect at the end
        if up:
            log.info("connected to %s", self.transport.describe())
        else:
            log.warning("not connected: %s", clean_text(reason or "connection closed"))
        if self.sender:
            self.sender.wake()
        self._status_dirty.set()

    def _prepare(self, image, model, classify: bool = False) -> tuple:
        """Decode and preprocess one image for `model`, and with `classify` run it through the model too.

        Returns (image, model, tensor, preprocess ms, Classification or None, ImageError or None).
        """
        if self.first_image_at is None:
            self.first_image_at = time.perf_counter()
        t0 = time.perf_counter()
        try:
            tensor = model.preprocess(image.data)
        except ImageError as exc:
            return image, model, None, 0.0, None, exc
        pre_ms = (time.perf_counter() - t0) * 1e3
        if not classify:
            return image, model, tensor, pre_ms, None, None
        return image, model, None, pre_ms, self._infer(model, tensor, pre_ms), None

    def _infer(self, model, tensor, pre_ms: float):
        from actions.inference import Classification, top_classes

        s = self.settings
        t1 = time.perf_counter()
        probs = model.infer(tensor)
        labels = top_classes(probs, model.labels, s.top_k, s.threshold)
        return Classification(labels, pre_ms, (time.perf_counter() - t1) * 1e3)

    def _prepared(self, images):
        """Images made ready, in source order: preprocessed, or already classified.

        With an interval, each image is taken when it is due and handled on its own. Without one,
        work overlaps as `ImageClassifier.classify_many` does it: with a single-threaded model
        (threads 1) each image is decoded and classified on its own core, as many at once as there
        are cores; otherwise the next image is decoded on a worker thread while the current one
        runs through the model (decoding releases the GIL). The source says when it is about to
        wait for new images (None), and every image taken is passed on then rather than held back.
        """
        from concurrent.futures import ThreadPoolExecutor

        next_due = time.monotonic()
        pool = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="classify")
        pending: collections.deque = collections.deque()
        try:
            for image in images:
                if image is None:  # the source is about to wait: finish what we hold
                    while pending:
                        yield pending.popleft().result()
                    continue
                s = self.settings
                if s.period:
                    while pending:
                        yield pending.popleft().result()
                    now = time.monotonic()
                    if now < next_due and self.stop_event.wait(next_due - now):
                        return
                    next_due = max(next_due + s.period, time.monotonic())
                    yield self._prepare(image, self.model)
                else:
                    model = self.model
                    workers = model.workers
                    pending.append(pool.submit(self._prepare, image, model, workers > 1))
                    if len(pending) >= 2 * workers:
                        yield pending.popleft().result()
                if self.stop_event.is_set():
                    return
            while pending:
                yield pending.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _classify_loop(self, images) -> bool:
        """Classify until the source ends (True) or the agent is stopped (False)."""
        count = 0
        prepared = self._prepared(images)
        try:
            for image, model, tensor, pre_ms, result, error in prepared:
                if self.stop_event.is_set():
                    return False
                if error is not None:
                    self._image_error(image.name, str(error))
                    continue
                s = self.settings
                if result is None:
                    if model is not self.model:
                        # Swapped since this image was decoded: the new model may want other preprocessing.
                        image, model, tensor, pre_ms, result, error = self._prepare(image, self.model)
                        if error is not None:
                            self._image_error(image.name, str(error))
                            continue
                    result = self._infer(model, tensor, pre_ms)
                if self._handle(image, model, result, s):
                    count += 1
                if s.max_images and count >= s.max_images:
                    return True
        finally:
            prepared.close()
        return not self.stop_event.is_set()

    def _handle(self, image, model, result, s: Settings) -> bool:
        """Store (for sending), count one prediction."""

        def make(seq: int, result=result, model=model, name=image.name, s=s) -> bytes:
            return prediction_msg.encode(prediction_msg.build_prediction(
                result, device=s.device, model_name=model.name, model_version=model.version,
                seq=seq, top_k=s.top_k, threshold=s.threshold, source=name))

        marker = getattr(image, "marker", None)
        self.sender.submit(s.topic, make, state=(self._source_key, marker) if marker else None)
        self.metrics.record(result.preprocess_ms, result.inference_ms)
        return True

    def _on_commit(self, rows) -> None:
        """After each outbox commit (on the committing thread, usually the sender): report drops
        and print the predictions, now that they are on disk."""
        dropped, before = self.outbox.dropped, self._dropped_seen
        if dropped != before:
            self._dropped_seen = dropped
            if before == 0 or dropped // 1000 != before // 1000:
                log.warning("outbox full (%d): dropped the oldest predictions, %d so far",
                            self.outbox.max_messages, dropped)
            self._status_dirty.set()
        if rows and self.settings.log_predictions:
            # The runbook's component printed each prediction's JSON; operators tail for it.
            try:
                sys.stdout.write("".join(row.payload.decode("utf-8") + "\n" for row in rows))
                sys.stdout.flush()
            except (OSError, ValueError):
                pass  # stdout gone (closed pipe): the predictions are in the outbox all the same

    def _drain_and_stop(self) -> int:
        s = self.settings
        if self.sender:
            if self.transport.connected:
                drained = self.sender.drain(s.drain_timeout)
            else:
                drained = self.outbox.depth == 0
            if drained:
                self.drained_at = time.perf_counter()
            self.sender.stop()
            left = self.outbox.depth - self.outbox.staged  # staged ones are not on disk: see close
            if drained or not left:
                log.info("all predictions sent (last seq %d)", self.outbox.last_seq)
            else:
                log.warning("%d predictions not yet acknowledged stay in the outbox %s for the next start",
                            left, s.outbox_path)
        self.state = "stopped"
        fut = self.publish_status("stopped")
        if fut is not None:
            try:
                fut.result(2.0)
            except Exception:
                pass  # the retained last will covers us
        log.info("stopped")
        return 0

    def _shutdown_resources(self) -> None:
        self.stop_event.set()
        if self.sender and self.sender.is_alive():
            self.sender.stop()
        if self.transport is not None:
            try:
                self.transport.close()
            except Exception:
                pass
        if self.outbox is not None:
            staged = self.outbox.staged
            try:
                self.outbox.close()
            except sqlite3.Error as exc:
                log.error("%d predictions could not be written to the outbox %s and are lost (%s); a "
                          "watched directory's images are classified again at the next start", staged,
                          self.outbox.path, clean_text(exc))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edge-client run",
                                     description="Run the device agent: classify, store, publish, report.")
    parser.add_argument("--config", metavar="FILE", help="JSON (or YAML) settings file; see edge_client/config.py")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                        help="override one setting (strongest of all); repeatable")
    parser.add_argument("--check", action="store_true",
                        help="validate the settings, print them (secrets masked) and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `edge-client run`."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging("info")
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            log.error("--set %s: write KEY=VALUE, e.g. --set top_k=3", clean_text(item))
            return 2
        overrides[key] = value
    greengrass = None
    try:
        greengrass = greengrass_configuration()
    except Exception as exc:  # the file and environment still configure us
        log.warning("cannot read the Greengrass component configuration: %s", clean_text(exc))
    try:
        settings = load_settings(args.config, greengrass=greengrass, overrides=overrides)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    setup_logging(settings.log_level)
    if args.check:
        import json

        print(json.dumps(settings.public(), indent=2, default=str))
        return 0
    try:
        return Agent(settings, config_path=args.config, greengrass=greengrass, overrides=overrides).run()
    except KeyboardInterrupt:
        log.warning("interrupted twice: exiting now; unsent predictions stay in the outbox")
        return 130


if __name__ == "__main__":
    sys.exit(main())
