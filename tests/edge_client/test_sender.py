"""The sender's group commit against a real mosquitto, a real paho transport and a real outbox.

Messages are submitted in tight bursts, much faster than they can be sent, so that the producer
waits for commits, rows wait in memory and on disk for room in the window, and the outbox fills up. Checked by sequence number: every message arrives, first
arrivals in order, none is published before the transaction holding it has committed, and the
dropped count is exact.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import defaultdict

import paho.mqtt.client as mqtt
import pytest

from actions.mqtt import MqttSettings
from actions.mqtt.paho_client import PahoTransport
from edge_client.agent import Sender
from edge_client.outbox import Outbox
from fixtures.broker import mosquitto_path
from tests.edge_client.helpers import ROOT, agent_env

pytestmark = pytest.mark.skipif(not mosquitto_path(), reason="mosquitto not installed (make broker)")


class Receiver:
    """A persistent-session QoS 1 subscriber keeping every payload by sequence number
    (payloads are b"<run>:<seq>")."""

    def __init__(self, broker, topic: str):
        self.copies: dict[int, list[bytes]] = defaultdict(list)
        self.order: list[int] = []
        self.times: list[float] = []  # when each message of `order` arrived (time.monotonic())
        self._cond = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"recv-{uuid.uuid4().hex[:8]}",
                                  clean_session=False)
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert subscribed.wait(10), "could not subscribe"

    def _on_message(self, client, userdata, msg):
        seq = int(msg.payload.split(b":")[1])
        with self._cond:
            self.copies[seq].append(bytes(msg.payload))
            self.order.append(seq)
            self.times.append(time.monotonic())
            self._cond.notify_all()

    def wait_seqs(self, wanted, timeout: float = 60.0) -> bool:
        wanted, deadline = set(wanted), time.monotonic() + timeout
        with self._cond:
            while not wanted <= set(self.copies):
                if time.monotonic() > deadline:
                    return False
                self._cond.wait(0.5)
            return True

    def seqs(self) -> set[int]:
        with self._cond:
            return set(self.copies)

    def check(self, last: int) -> None:
        """Every seq 1..last arrived, first arrivals in order, a duplicate is byte-identical."""
        with self._cond:
            assert set(range(1, last + 1)) <= set(self.copies), \
                f"missing {sorted(set(range(1, last + 1)) - set(self.copies))[:20]}"
            first = list(dict.fromkeys(self.order))
            assert first == sorted(first), "first arrivals out of order"
            for seq, copies in self.copies.items():
                assert all(c == copies[0] for c in copies), f"seq {seq} carried two messages: {set(copies)}"

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


class CommittedCheck(PahoTransport):
    """The real paho transport, which also checks each message it is given: the outbox row with its
    seq must be committed (on disk, readable, counted in `last_seq`) with the same bytes."""

    def __init__(self, settings, outbox: Outbox):
        super().__init__(settings)
        self.outbox = outbox
        self.violations: list[str] = []
        self.published = 0

    def _check(self, payload: bytes) -> None:
        seq = int(payload.split(b":")[1])
        rows = self.outbox.peek(after=seq - 1, limit=1)
        if seq > self.outbox.last_seq or not rows or rows[0].seq != seq or rows[0].payload != payload:
            self.violations.append(f"seq {seq} handed over before it was committed")
        self.published += 1

    def publish_with_callback(self, topic, payload, qos, on_done, retain=False):
        self._check(payload)
        super().publish_with_callback(topic, payload, qos, on_done, retain=retain)

    def publish_batch(self, messages, on_done):
        for _token, _topic, payload, _qos in messages:
            self._check(payload)
        super().publish_batch(messages, on_done)


def _settings(broker, inflight: int) -> MqttSettings:
    return MqttSettings(transport="mqtt", host=broker.host, port=broker.port, max_inflight=inflight)


def _wait(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_bursts_through_a_small_window_arrive_in_order_and_only_once_committed(tmp_path, fresh_broker):
    topic = f"test/{uuid.uuid4().hex}"
    receiver = Receiver(fresh_broker, topic)
    outbox = Outbox(tmp_path / "o.sqlite")
    transport = CommittedCheck(_settings(fresh_broker, inflight=5), outbox)
    transport.connect(timeout=10)
    sender = Sender(outbox, transport, window=50)  # bursts overflow the window and what waits beside it
    sender.start()
    try:
        total = 0
        for burst in (1, 63, 64, 65, 500, 3, 2000, 1):
            for _ in range(burst):
                sender.submit(topic, lambda seq: f"run:{seq}".encode())
            total += burst
            time.sleep(0.05)  # between bursts: partial batches are committed by the sender thread
        assert sender.drain(60), "not drained"
        assert receiver.wait_seqs(range(1, total + 1)), f"missing {sorted(set(range(1, total + 1)) - receiver.seqs())[:20]}"
    finally:
        sender.stop()
        transport.close()
        receiver.close()
    assert transport.violations == []
    assert transport.published >= total
    receiver.check(total)
    assert outbox.depth == 0 and outbox.peek(limit=10) == [] and outbox.last_seq == total
    outbox.close()


def test_a_burst_while_the_broker_is_down_drops_exactly_the_oldest(tmp_path, fresh_broker):
    topic = f"test/{uuid.uuid4().hex}"
    receiver = Receiver(fresh_broker, topic)
    fresh_broker.stop()
    outbox = Outbox(tmp_path / "o.sqlite", max_messages=100)
    transport = CommittedCheck(_settings(fresh_broker, inflight=10), outbox)
    transport.connect(timeout=None)
    sender = Sender(outbox, transport, window=100)
    sender.start()
    try:
        for _ in range(1000):
            sender.submit(topic, lambda seq: f"run:{seq}".encode())
        assert _wait(lambda: outbox.staged == 0), "the sender thread did not commit the last partial batch"
        assert outbox.dropped == 900 and outbox.depth == 100
        fresh_broker.start()
        assert sender.drain(60), "not drained"
        assert receiver.wait_seqs(range(901, 1001))
    finally:
        sender.stop()
        transport.close()
        receiver.close()
    assert transport.violations == []
    # Exactly the dropped ones are missing: none of them was sent.
    assert receiver.seqs() == set(range(901, 1001))
    outbox.close()


def _sender(outbox: Outbox, broker, **kw) -> Sender:
    """A started Sender on a real paho transport with 10 in flight; `_stop` it."""
    transport = PahoTransport(_settings(broker, inflight=10))
    transport.connect(timeout=10)
    sender = Sender(outbox, transport, **kw)
    sender.start()
    return sender


def _stop(sender: Sender) -> None:
    sender.stop()
    sender.transport.close()


def test_a_small_outbox_with_the_broker_up_drops_nothing_delivered(tmp_path, fresh_broker):
    """Acknowledged rows are deleted in batches; a full outbox deletes them before it drops the
    oldest, so a delivered message is never counted as dropped."""
    topic = f"test/{uuid.uuid4().hex}"
    receiver = Receiver(fresh_broker, topic)
    outbox = Outbox(tmp_path / "o.sqlite", max_messages=40)
    sender = _sender(outbox, fresh_broker, window=20)
    try:
        for i in range(600):
            sender.submit(topic, lambda seq: f"run:{seq}".encode())
            if i % 20 == 19:
                time.sleep(0.005)  # about as fast as they are delivered: the outbox stays near full
        assert sender.drain(60), "not drained"
        assert receiver.wait_seqs(range(1, 601))
    finally:
        _stop(sender)
        receiver.close()
    assert outbox.dropped == 0
    receiver.check(600)
    outbox.close()


def test_one_at_a_time_deletes_are_batched(tmp_path, fresh_broker):
    """Messages one at a time (each acknowledged before the next): acknowledged rows are deleted
    at most every IDLE_ACK_SECONDS, not in one transaction per message, and all of them soon after
    the last acknowledgement."""
    topic = f"test/{uuid.uuid4().hex}"
    outbox = Outbox(tmp_path / "o.sqlite")
    deletes = []
    ack = outbox.ack
    outbox.ack = lambda seqs: deletes.append(len(seqs)) or ack(seqs)  # counts the delete transactions
    sender = _sender(outbox, fresh_broker)
    try:
        start = time.monotonic()
        for _ in range(300):
            sender.submit(topic, lambda seq: f"run:{seq}".encode())
            time.sleep(0.002)
        spent = time.monotonic() - start
        assert _wait(lambda: outbox.depth == 0, 2.0), f"{outbox.depth} rows still stored"
    finally:
        _stop(sender)
    assert sum(deletes) == 300
    most = spent / Sender.IDLE_ACK_SECONDS + 300 / Sender.IDLE_ACK_ROWS + 5
    assert len(deletes) <= most, f"{len(deletes)} delete transactions for 300 messages in {spent:.2f} s"
    outbox.close()


def test_max_rate_paces_what_reaches_the_broker(tmp_path, fresh_broker):
    """A burst of 100 with max_rate 40: they reach the broker in order, at most a second's worth
    (plus one burst of a tenth of it) in any second, so over about 2.4 s rather than at once."""
    topic = f"test/{uuid.uuid4().hex}"
    receiver = Receiver(fresh_broker, topic)
    outbox = Outbox(tmp_path / "o.sqlite")
    sender = _sender(outbox, fresh_broker, max_rate=40)
    try:
        for _ in range(100):
            sender.submit(topic, lambda seq: f"run:{seq}".encode())
        assert _wait(lambda: len(receiver.order) >= 100, 20), f"{len(receiver.order)} of 100 arrived"
    finally:
        _stop(sender)
        receiver.close()
    assert receiver.order == list(range(1, 101))
    times = receiver.times
    assert times[-1] - times[0] >= (100 - 4) / 40 * 0.9, f"100 in {times[-1] - times[0]:.2f} s"
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= 40 + 4 + 2, f"{busiest} in one second"
    outbox.close()


CHILD = textwrap.dedent("""
    import sys, time
    from actions.mqtt import MqttSettings, open_transport
    from edge_client.agent import Sender
    from edge_client.outbox import Outbox

    path, host, port, topic, run, count = sys.argv[1:]
    outbox = Outbox(path, max_messages=10_000_000)
    transport = open_transport(MqttSettings(transport="mqtt", host=host, port=int(port), max_inflight=20))
    transport.connect(timeout=10)
    sender = Sender(outbox, transport, window=200)
    sender.start()
    submitted = 0
    while not int(count) or submitted < int(count):
        for _ in range(150):  # a burst, then a breath: about as fast as the broker takes them
            sender.submit(topic, lambda seq: f"{run}:{seq}".encode())
        submitted += 150
        time.sleep(0.01)
    ok = sender.drain(60)
    sender.stop()
    transport.close()
    outbox.close()
    sys.exit(0 if ok else 3)
""")


def test_sigkill_mid_burst_then_restart_loses_nothing_sent_and_reuses_no_number(tmp_path, fresh_broker):
    """The first process is killed while it submits bursts; the second sends what the first stored
    and goes on. Any number the first gave to a message it had not committed yet is free again (the
    message was never sent): had it been published early, that seq would arrive with two payloads."""
    topic = f"test/{uuid.uuid4().hex}"
    path = tmp_path / "o.sqlite"
    receiver = Receiver(fresh_broker, topic)

    def child(run: str, count: int) -> subprocess.Popen:
        args = [str(path), fresh_broker.host, str(fresh_broker.port), topic, run, str(count)]
        return subprocess.Popen([sys.executable, "-c", CHILD, *args], cwd=str(ROOT), env=agent_env(),
                                stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"{run}.err", "wb"))

    first = child("first", 0)
    try:
        assert _wait(lambda: len(receiver.seqs()) >= 1500 or first.poll() is not None, 60), "nothing arrived"
        assert first.poll() is None, (tmp_path / "first.err").read_text(errors="replace")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    with Outbox(path) as box:
        stored_by_first = box.last_seq
    second = child("second", 300)
    try:
        assert second.wait(120) == 0, (tmp_path / "second.err").read_text(errors="replace")
        with Outbox(path) as box:
            last = box.last_seq
            assert box.depth == 0
        assert last == stored_by_first + 300
        assert receiver.wait_seqs(range(1, last + 1)), f"missing {sorted(set(range(1, last + 1)) - receiver.seqs())[:20]}"
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()
        receiver.close()
    receiver.check(last)
    assert max(receiver.seqs()) == last
    assert os.path.exists(path)
