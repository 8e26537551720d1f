"""The on-disk outbox: every prediction is stored here before it is sent, and leaves only when the
broker has acknowledged it.

SQLite in WAL mode with `synchronous=NORMAL`: a committed row survives the process being killed
(SIGKILL, OOM killer, crash), because the WAL is written before `append()` returns; only a power
cut can lose the last few commits (set `sync="full"` to fsync every commit and survive that too).

The sequence number lives here as well, so it survives restarts: a message re-sent after a crash
carries the number it was first given, and a new message never reuses one.

    outbox = Outbox("outbox.sqlite", max_messages=100_000)
    seq = outbox.append(topic, lambda seq: encode(build_prediction(..., seq=seq)))
    for row in outbox.peek(after=0, limit=100): ...   # oldest first
    outbox.ack([row.seq])                               # when the broker acknowledged it
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from actions.errors import ConfigError

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq     INTEGER PRIMARY KEY,
    topic   TEXT    NOT NULL,
    payload BLOB    NOT NULL,
    qos     INTEGER NOT NULL DEFAULT 1,
    created REAL    NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


INSERT = "INSERT INTO outbox (seq, topic, payload, qos, created) VALUES (?, ?, ?, ?, ?)"


@dataclass(frozen=True)
class Row:
    """One stored message."""

    seq: int
    topic: str
    payload: bytes
    qos: int


class Outbox:
    """A bounded, persistent FIFO of messages keyed by a sequence number. Thread-safe.

    Attributes:
        path: the database file.
        max_messages: the limit; appending beyond it drops the oldest messages and counts them.
    """

    def __init__(self, path: str | os.PathLike, max_messages: int = 100_000, *, sync: str = "normal"):
        if max_messages < 1:
            raise ConfigError(f"outbox_max_messages must be at least 1, got {max_messages}")
        if sync not in ("normal", "full"):
            raise ConfigError(f"outbox_sync must be 'normal' or 'full', got {sync!r}")
        self.path = Path(path).expanduser()
        self.max_messages = int(max_messages)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._open(sync)
        except (OSError, sqlite3.OperationalError) as exc:
            if "locked" in str(exc):
                raise ConfigError(f"the outbox {self.path} is in use by another edge-client process: "
                                  "stop it, or give this one its own outbox_path") from None
            raise ConfigError(f"cannot open the outbox {self.path}: {exc}; set outbox_path to a "
                              "writable file") from None
        except sqlite3.DatabaseError as exc:
            # A corrupt file is kept aside for inspection, never deleted: it may hold predictions.
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                side = Path(str(self.path) + suffix)
                if side.exists():
                    os.replace(side, Path(str(aside) + suffix))
            self.moved_aside: Path | None = aside
            self._db = self._open(sync)
            self.corrupt_error = str(exc)
        else:
            self.moved_aside = None
            self.corrupt_error = None
        self._lock = threading.Lock()
        cur = self._db.execute("SELECT COUNT(*), COALESCE(MAX(seq), 0), COALESCE(MIN(seq), 0) FROM outbox")
        self._depth, max_seq, _min = cur.fetchone()
        self._next_seq = max(self._meta("next_seq", 1), max_seq + 1)
        self._dropped = self._meta("dropped", 0)

    def _open(self, sync: str) -> sqlite3.Connection:
        if not self.path.exists():
            # Predictions are device data: the file (and its -wal, which SQLite creates with the
            # same mode) is 0600 from the first byte.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per operation.
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=2)
        # Exclusive: one agent per outbox. A second process on the same file would hand out the
        # same sequence numbers; it gets "database is locked" instead. It also spares every commit
        # the shared-memory locking (half the cost of an append).
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"the file system does not support WAL (journal_mode={mode})")
        db.execute(f"PRAGMA synchronous={sync.upper()}")
        db.executescript(SCHEMA)
        db.execute("PRAGMA quick_check").fetchone()
        return db

    def _meta(self, key: str, default: int) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else default

    # -- writing --------------------------------------------------------------------------------
    def append(self, topic: str, make_payload: Callable[[int], bytes], qos: int = 1,
               state: tuple[str, str] | None = None) -> int:
        """Store a message and return its sequence number.

        Args:
            topic: where it goes.
            make_payload: called with the sequence number this message gets; returns the bytes.
            qos: the QoS it is to be published with.
            state: (key, value) saved in the same transaction, e.g. how far a watched directory
                has been read, so that position and the prediction are on disk together or not at all.

        Returns:
            The sequence number. The row is committed (on disk) when this returns.
        """
        with self._lock:
            seq = self._next_seq
            payload = make_payload(seq)
            db = self._db
            row = (seq, topic, payload, qos, time.time())
            dropped = 0
            if self._depth + 1 <= self.max_messages and state is None:
                # One statement in autocommit mode is its own transaction: committed on return.
                db.execute(INSERT, row)
            else:
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.execute(INSERT, row)
                    if state is not None:
                        db.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", state)
                    if self._depth + 1 > self.max_messages:
                        dropped = self._drop_oldest_locked(self._depth + 1 - self.max_messages)
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            self._next_seq = seq + 1
            self._depth += 1 - dropped
            self._dropped += dropped
            return seq

    def _drop_oldest_locked(self, count: int) -> int:
        cur = self._db.execute(
            "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)", (count,))
        n = cur.rowcount
        self._db.execute("INSERT INTO meta (key, value) VALUES ('dropped', ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value", (n,))
        # Keep the counter's floor on disk: the highest seq may just have been deleted.
        self._db.execute("INSERT INTO meta (key, value) VALUES ('next_seq', ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = MAX(value, excluded.value)",
                         (self._next_seq + 1,))
        return n

    def ack(self, seqs: Iterable[int]) -> int:
        """Remove acknowledged messages; return how many were still stored (the rest were dropped)."""
        seqs = list(seqs)
        if not seqs:
            return 0
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                removed = 0
                # Acknowledgements come in order, so a batch is mostly one run of consecutive
                # numbers: one range delete each is far cheaper than a list of keys.
                for lo, hi in _runs(sorted(set(seqs))):
                    removed += db.execute("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", (lo, hi)).rowcount
                # The counter must not fall back when the newest rows leave: keep its floor on disk.
                db.execute("INSERT INTO meta (key, value) VALUES ('next_seq', ?) "
                           "ON CONFLICT(key) DO UPDATE SET value = MAX(value, excluded.value)",
                           (max(seqs) + 1,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._depth -= removed
            return removed

    # -- reading --------------------------------------------------------------------------------
    def peek(self, after: int = 0, limit: int = 100) -> list[Row]:
        """The oldest stored messages with seq > `after`, at most `limit`, in seq order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload, qos FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit)).fetchall()
        return [Row(seq, topic, bytes(payload), qos) for seq, topic, payload, qos in rows]

    def get_state(self, key: str) -> str | None:
        """A value saved with `append(..., state=(key, value))`, or None."""
        with self._lock:
            row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def first_seq(self) -> int | None:
        """The oldest stored seq, or None when empty."""
        with self._lock:
            row = self._db.execute("SELECT MIN(seq) FROM outbox").fetchone()
        return row[0]

    @property
    def depth(self) -> int:
        """Messages stored and not yet acknowledged."""
        return self._depth

    @property
    def dropped(self) -> int:
        """Messages dropped because the outbox was full, over the outbox's whole life."""
        return self._dropped

    @property
    def last_seq(self) -> int:
        """The last sequence number given out (0 before the first)."""
        return self._next_seq - 1

    def close(self) -> None:
        """Checkpoint the WAL and close the database."""
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # another reader holds the WAL; it is checkpointed next time
            self._db.close()

    def __enter__(self) -> "Outbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _runs(seqs: list[int]) -> list[tuple[int, int]]:
    """Sorted distinct numbers -> (first, last) of each run of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for seq in seqs:
        if runs and seq == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs
