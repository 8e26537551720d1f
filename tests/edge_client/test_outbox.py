"""The outbox: order, acknowledgement, limits, sequence numbers that survive restarts and SIGKILL."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from actions.errors import ConfigError
from edge_client.outbox import Outbox


def _payload(seq: int) -> bytes:
    return f'{{"seq": {seq}}}'.encode()


def test_fifo_peek_and_ack(tmp_path):
    with Outbox(tmp_path / "o.sqlite") as box:
        seqs = [box.append("t", _payload) for _ in range(10)]
        assert seqs == list(range(1, 11))
        rows = box.peek(after=0, limit=4)
        assert [r.seq for r in rows] == [1, 2, 3, 4] and rows[2].payload == _payload(3)
        assert [r.seq for r in box.peek(after=4, limit=100)] == list(range(5, 11))
        assert box.ack([1, 2, 3]) == 3
        assert box.depth == 7 and box.first_seq() == 4
        assert box.ack([3]) == 0  # a late duplicate ack is harmless
        assert box.depth == 7


def test_file_is_private(tmp_path):
    path = tmp_path / "o.sqlite"
    Outbox(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_sequence_survives_restart_even_when_empty(tmp_path):
    path = tmp_path / "o.sqlite"
    with Outbox(path) as box:
        for _ in range(5):
            box.append("t", _payload)
        box.ack([1, 2, 3, 4, 5])
        assert box.depth == 0
    with Outbox(path) as box:
        assert box.depth == 0 and box.last_seq == 5
        assert box.append("t", _payload) == 6  # never reuses a number


def test_unacked_rows_survive_restart(tmp_path):
    path = tmp_path / "o.sqlite"
    with Outbox(path) as box:
        for _ in range(5):
            box.append("t", _payload)
        box.ack([1, 2])
    with Outbox(path) as box:
        assert [r.seq for r in box.peek()] == [3, 4, 5]
        assert [r.payload for r in box.peek()] == [_payload(3), _payload(4), _payload(5)]


def test_full_outbox_drops_oldest_and_counts_them(tmp_path):
    path = tmp_path / "o.sqlite"
    with Outbox(path, max_messages=10) as box:
        for _ in range(25):
            box.append("t", _payload)
        assert box.depth == 10 and box.dropped == 15
        assert [r.seq for r in box.peek(limit=100)] == list(range(16, 26))
    with Outbox(path, max_messages=10) as box:
        assert box.dropped == 15 and box.depth == 10 and box.last_seq == 25


def _sigkill_after(code: str, confirmed_at_least: int, tmp_path) -> int:
    """Run `code` in a child that prints a confirmed seq per line, forever; SIGKILL it once it has
    confirmed `confirmed_at_least`, and return the last seq it confirmed."""
    err_path = tmp_path / "child.err"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=err, text=True,
                                cwd=os.getcwd(), env={**os.environ, "PYTHONPATH": os.getcwd()})
    confirmed = 0
    try:
        for line in proc.stdout:
            confirmed = int(line)
            if confirmed >= confirmed_at_least:
                break
    finally:  # the child writes forever: it must not outlive the test, whatever happened
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert confirmed >= confirmed_at_least, err_path.read_text(errors="replace")
    return confirmed


def test_rows_committed_before_sigkill_survive(tmp_path):
    """A child appends, prints each seq after append() returns, and is killed with SIGKILL."""
    path = tmp_path / "o.sqlite"
    code = textwrap.dedent(f"""
        import sys, time
        from edge_client.outbox import Outbox
        box = Outbox({str(path)!r})
        while True:
            seq = box.append("t", lambda s: b"x" * 200)
            print(seq, flush=True)
    """)
    confirmed = _sigkill_after(code, 300, tmp_path)
    with Outbox(path) as box:
        seqs = [r.seq for r in box.peek(limit=100_000)]
    assert seqs[: confirmed] == list(range(1, confirmed + 1))  # nothing confirmed is missing
    assert seqs == list(range(1, len(seqs) + 1))  # and nothing half-written


def test_corrupt_file_is_moved_aside_not_deleted(tmp_path):
    path = tmp_path / "o.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with Outbox(path) as box:
        assert box.moved_aside is not None and box.moved_aside.read_bytes().startswith(b"this is not")
        assert box.append("t", _payload) == 1


def test_unwritable_location_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="outbox_path"):
        Outbox(blocker / "o.sqlite")


def test_limit_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match="outbox_max_messages"):
        Outbox(tmp_path / "o.sqlite", max_messages=0)


def test_one_agent_per_outbox(tmp_path):
    """A second process on the same outbox would reuse sequence numbers: it is refused."""
    path = tmp_path / "o.sqlite"
    with Outbox(path) as box:
        box.append("t", _payload)
        code = f"from edge_client.outbox import Outbox; Outbox({str(path)!r})"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": os.getcwd()}, timeout=60)
        assert proc.returncode != 0 and "in use by another edge-client" in proc.stderr


def test_ack_out_of_order_and_with_gaps(tmp_path):
    with Outbox(tmp_path / "o.sqlite") as box:
        for _ in range(10):
            box.append("t", _payload)
        assert box.ack([9, 2, 3, 7, 2]) == 4
        assert [r.seq for r in box.peek(limit=100)] == [1, 4, 5, 6, 8, 10]
        assert box.depth == 6


def test_state_is_saved_with_the_row(tmp_path):
    path = tmp_path / "o.sqlite"
    with Outbox(path, max_messages=2) as box:
        assert box.get_state("k") is None
        for i in range(3):
            box.append("t", _payload, state=("k", f"pos-{i}"))
        assert box.dropped == 1  # the limit still holds on the transactional path
    with Outbox(path) as box:
        assert box.get_state("k") == "pos-2" and box.depth == 2


# -- group commit: stage() then commit() ----------------------------------------------------------

def test_staged_rows_reach_the_disk_only_with_commit(tmp_path):
    with Outbox(tmp_path / "o.sqlite") as box:
        assert box.append("t", _payload) == 1
        assert [box.stage("t", _payload) for _ in range(3)] == [2, 3, 4]
        # Numbered and counted, but not stored, not readable and not reported as the last seq.
        assert box.staged == 3 and box.depth == 4 and box.last_seq == 1
        assert [r.seq for r in box.peek(limit=100)] == [1]
        rows = box.commit()
        assert [(r.seq, r.payload) for r in rows] == [(s, _payload(s)) for s in (2, 3, 4)]
        assert box.staged == 0 and box.depth == 4 and box.last_seq == 4
        assert [r.seq for r in box.peek(limit=100)] == [1, 2, 3, 4]
        assert box.commit() == []


def test_on_commit_sees_every_batch_in_order_whoever_commits(tmp_path):
    seen: list[int] = []
    with Outbox(tmp_path / "o.sqlite") as box:
        box.on_commit = lambda rows: seen.extend(r.seq for r in rows)
        box.stage("t", _payload)
        box.append("t", _payload)  # commits what was staged before it too
        box.stage("t", _payload)
    # close() committed the last one.
    assert seen == [1, 2, 3]
    with Outbox(tmp_path / "o.sqlite") as box:
        assert [r.seq for r in box.peek(limit=100)] == [1, 2, 3]


@pytest.mark.parametrize("stored, burst, limit", [(5, 20, 10), (0, 25, 10), (10, 3, 10), (9, 1, 10)])
def test_a_burst_committed_at_once_drops_exactly_the_oldest(tmp_path, stored, burst, limit):
    """The same outcome as appending one at a time: the newest `limit` rows, the rest counted."""
    path = tmp_path / "o.sqlite"
    total = stored + burst
    dropped = max(0, total - limit)
    with Outbox(path, max_messages=limit) as box:
        for _ in range(stored):
            box.append("t", _payload)
        for _ in range(burst):
            box.stage("t", _payload)
        rows = box.commit()
        # What commit() returns may be sent: only rows still stored, never a dropped one.
        assert [r.seq for r in rows] == list(range(max(stored, dropped) + 1, total + 1))
        assert box.dropped == dropped and box.depth == total - dropped
        assert [r.seq for r in box.peek(limit=100)] == list(range(dropped + 1, total + 1))
    with Outbox(path, max_messages=limit) as box:
        assert box.dropped == dropped and box.last_seq == total
        assert box.append("t", _payload) == total + 1


def test_state_staged_with_a_batch_is_committed_with_it(tmp_path):
    path = tmp_path / "o.sqlite"
    with Outbox(path) as box:
        for i in range(3):
            box.stage("t", _payload, state=("k", f"pos-{i}"))
        assert box.get_state("k") is None  # not on disk before its rows are
        box.commit()
        assert box.get_state("k") == "pos-2"


def test_sigkill_during_bursts_of_group_commits(tmp_path):
    """A child stages bursts of messages and commits each burst, printing the last seq once commit()
    returned; it is killed with SIGKILL mid-burst. Every confirmed row survives, the stored ones are
    1..N without a gap, and the next number is N + 1: whatever was staged and not committed was never
    stored, so its number is free, and nothing stored is ever numbered again."""
    path = tmp_path / "o.sqlite"
    code = textwrap.dedent(f"""
        import itertools
        from edge_client.outbox import Outbox
        box = Outbox({str(path)!r})
        for n in itertools.cycle((1, 7, 64, 3, 200)):
            for _ in range(n):
                box.stage("t", lambda s: f"payload-{{s}}".encode())
            print(box.commit()[-1].seq, flush=True)
    """)
    confirmed = _sigkill_after(code, 3000, tmp_path)
    with Outbox(path) as box:
        rows = box.peek(limit=1_000_000)
        last = box.last_seq
        assert [r.seq for r in rows] == list(range(1, last + 1)) and last >= confirmed
        assert all(r.payload == f"payload-{r.seq}".encode() for r in rows)
        assert box.append("t", _payload) == last + 1
