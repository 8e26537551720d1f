"""The on-disk outbox: every prediction is stored here before it is sent, and leaves only when the
broker has acknowledged it.

SQLite in WAL mode with `synchronous=NORMAL`: a committed row survives the process being killed
(SIGKILL, OOM killer, crash), because the WAL is written before the commit returns; only a power
cut can lose the last few commits (set `sync="full"` to fsync every commit and survive that too).

Two ways to store a message:
- `append()` commits it before it returns (one transaction per message);
- `stage()` gives it its sequence number at once and queues it in memory; the next `commit()`
  writes everything staged meanwhile in one transaction (group commit) and returns those rows,
  which may be sent from then on. A staged message must not be sent before the commit that holds
  it has returned. A process killed before that commit loses the staged messages: nothing of them
  was sent or reported (`last_seq` counts committed ones only), so their numbers are given out
  again after the restart, with no gap. The caller bounds how many it stages between commits.

The sequence number lives here as well, so it survives restarts: a message re-sent after a crash
carries the number it was first given, and a new message never reuses the number of one stored.

    outbox = Outbox("outbox.sqlite", max_messages=100_000)
    seq = outbox.append(topic, lambda seq: encode(build_prediction(..., seq=seq)))
    seq = outbox.stage(topic, make_payload); rows = outbox.commit()   # rows: on disk, sendable
    for row in outbox.peek(after=0, limit=100): ...   # oldest first
    outbox.ack([row.seq])                               # when the broker acknowledged it
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

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


INSERT_CHUNK = 64  # rows per INSERT statement


@functools.lru_cache(maxsize=INSERT_CHUNK)
def _insert_rows(n: int) -> str:
    return "INSERT INTO outbox (seq, topic, payload, qos, created) VALUES " + ", ".join(["(?, ?, ?, ?, ?)"] * n)



class Row(NamedTuple):
    """One stored message."""

    seq: int
    topic: str
    payload: bytes
    qos: int


class Outbox:
    """A bounded, persistent FIFO of messages keyed by a sequence number. Thread-safe.

    Attributes:
        path: the database file.
        max_messages: the limit; storing beyond it drops the oldest messages and counts them.
        on_commit: None, or called with the rows each commit stored (as `commit()` returns them),
            in commit order, on the committing thread, before the commit returns; it may read the
            properties (`dropped`, `depth`, ...) but must not call the methods, which lock.
    """

    on_commit: Callable[[list[Row]], None] | None = None

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
        # Two locks, always taken in this order when both are needed: `_lock` for the database
        # connection (one transaction at a time, so batches reach the disk in seq order), `_mem`
        # for the counters and the staged messages, held only briefly so stage() never waits for
        # the disk.
        self._lock = threading.Lock()
        self._mem = threading.Lock()
        self._staged: list[Row] = []  # in seq order
        self._staged_state: dict[str, str] = {}
        cur = self._db.execute("SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM outbox")
        self._stored, max_seq = cur.fetchone()  # rows on disk (under _lock)
        self._depth = self._stored  # stored + staged, not acknowledged (under _mem)
        self._next_seq = max(self._meta("next_seq", 1), max_seq + 1)
        self._last_stored = self._next_seq - 1
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
            The sequence number. The row is committed (on disk) when this returns, together with
            whatever else was staged before it.
        """
        seq = self.stage(topic, make_payload, qos, state)
        self.commit()
        return seq

    def stage(self, topic: str, make_payload: Callable[[int], bytes], qos: int = 1,
              state: tuple[str, str] | None = None) -> int:
        """Give a message its sequence number and queue it for the next `commit()`.

        Arguments as for `append`. The message is not on disk, and must not be sent, before a
        `commit()` that returns it (or a later one) has returned.
        """
        with self._mem:
            seq = self._next_seq
            self._staged.append(Row(seq, topic, make_payload(seq), qos))
            if state is not None:
                self._staged_state[state[0]] = state[1]
            self._next_seq = seq + 1
            self._depth += 1
        return seq

    def commit(self) -> list[Row]:
        """Write every staged message to disk in one transaction.

        Returns:
            The messages it wrote that are still stored (a full outbox drops the oldest, which
            may be some of these), in seq order; they are on disk and may be sent.
        """
        with self._lock:
            with self._mem:
                staged, self._staged = self._staged, []
                state, self._staged_state = self._staged_state, {}
            if not staged:
                return []
            db = self._db
            created = time.time()  # when the batch reached the disk: within a batch's delay of its making
            excess = self._stored + len(staged) - self.max_messages
            dropped = 0
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    # Many rows per statement: one step (and one release of the GIL) per chunk
                    # rather than per row.
                    for i in range(0, len(staged), INSERT_CHUNK):
                        chunk = staged[i:i + INSERT_CHUNK]
                        params: list = []
                        for row in chunk:
                            params += row
                            params.append(created)
                        db.execute(_insert_rows(len(chunk)), params)
                    if state:
                        db.executemany("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", state.items())
                    if excess > 0:
                        dropped = self._drop_oldest_locked(excess, staged[-1][0] + 1)
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except BaseException:
                with self._mem:  # still to be stored: back in front of anything staged since
                    self._staged[:0] = staged
                    self._staged_state = {**state, **self._staged_state}
                raise
            self._stored += len(staged) - dropped
            self._last_stored = staged[-1][0]
            with self._mem:
                self._depth -= dropped
                self._dropped += dropped
            # The oldest go first, and these are the newest: any of them dropped lead the list.
            rows = staged[max(0, len(staged) - self._stored):]
            if self.on_commit is not None:
                self.on_commit(rows)
        return rows

    def _drop_oldest_locked(self, count: int, next_seq: int) -> int:
        cur = self._db.execute(
            "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)", (count,))
        n = cur.rowcount
        self._db.execute("INSERT INTO meta (key, value) VALUES ('dropped', ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value", (n,))
        # Keep the counter's floor on disk: the highest seq may just have been deleted.
        self._db.execute("INSERT INTO meta (key, value) VALUES ('next_seq', ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = MAX(value, excluded.value)", (next_seq,))
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
                for lo, hi in _runs(seqs):
                    removed += db.execute("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", (lo, hi)).rowcount
                # The counter must not fall back when the newest rows leave: keep its floor on disk.
                db.execute("INSERT INTO meta (key, value) VALUES ('next_seq', ?) "
                           "ON CONFLICT(key) DO UPDATE SET value = MAX(value, excluded.value)",
                           (max(seqs) + 1,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._stored -= removed
            with self._mem:
                self._depth -= removed
            return removed

    # -- reading --------------------------------------------------------------------------------
    def peek(self, after: int = 0, limit: int = 100) -> list[Row]:
        """The oldest stored (committed) messages with seq > `after`, at most `limit`, in seq order."""
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
        """Messages stored or staged and not yet acknowledged."""
        return self._depth

    @property
    def staged(self) -> int:
        """Messages staged and not yet committed."""
        return len(self._staged)

    @property
    def dropped(self) -> int:
        """Messages dropped because the outbox was full, over the outbox's whole life."""
        return self._dropped

    @property
    def last_seq(self) -> int:
        """The last sequence number committed to disk (0 before the first)."""
        return self._last_stored

    def close(self) -> None:
        """Commit what is staged, checkpoint the WAL and close the database."""
        try:
            self.commit()
        finally:
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
    """Numbers -> (first, last) of each run of consecutive ones, in order."""
    seqs = sorted(set(seqs))
    if seqs[-1] - seqs[0] + 1 == len(seqs):
        return [(seqs[0], seqs[-1])]  # the usual case: acknowledgements come in order
    runs: list[tuple[int, int]] = []
    for seq in seqs:
        if runs and seq == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs
