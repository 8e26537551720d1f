"""Edge client: end-to-end images/s to acknowledged publish, publish overhead, agent memory growth.

All against a real mosquitto on loopback (or amqtt when mosquitto is missing) started here, and
the fixture model. Baselines are measured in the same process, before and after the measure they
are compared with, so load from elsewhere on the machine falls on both:

- end to end: `edge-client run` in this process (files read from disk, classify, outbox, QoS 1
  publish, PUBACK, outbox delete) against `classify_many()` alone on the same images held in
  memory (the inference module's fastest path: one ORT thread per image, one image per core),
  the agent set up the same way (`threads: 1`);
- publishing: the agent's path without the model (Sender.submit: outbox stage, group commit to
  disk, then paho transport, PUBACK, outbox delete) against a bare paho loop publishing the same
  payload at QoS 1 and waiting for every PUBACK; both rounds end on an event set by the last
  PUBACK, the agent's only once its rows are deleted too. The broker runs with TCP_NODELAY (fixtures/broker.py): without it every round ended in
  a 40 ms Nagle/delayed-ACK stall, common to both, which made the ratio look better than it was.
  Also the CPU each thread spends per message in both (the main thread publishes or submits, the
  network thread is paho's, the sender is the agent's): where the overhead goes;
- memory: the agent as a child process, its peak RSS (VmHWM) after 1,000 and after 10,000 images.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

# Images per agent run: enough that the run's fixed costs (the pool filling at the start, the wait
# for the last PUBACK at the end) weigh little next to the steady rate, which is what is measured.
E2E_IMAGES = 1000
E2E_ROUNDS = 3
MEMORY_IMAGES = (1_000, 10_000)
ROOT = Path(__file__).resolve().parents[2]


def _classify_rate(model, blobs, n: int) -> float:
    """Images/s of `classify_many` on images already in memory: with a single-threaded model each
    image is decoded and classified on its own core, the fastest path the inference module offers."""
    start = time.perf_counter()
    for _ in model.classify_many((blobs[i % len(blobs)] for i in range(n)), top_k=5, threshold=0.3):
        pass
    return n / (time.perf_counter() - start)


def _agent_settings(work: Path, broker, model_dir: Path, images: Path, **kw):
    from edge_client.config import load_settings

    cfg = dict(device="bench", model_dir=str(model_dir), source=str(images), loop=True, interval=0,
               mqtt_host=broker.host, mqtt_port=broker.port, topic=f"bench/{uuid.uuid4().hex}",
               status_interval=5, outbox_path=str(work / f"outbox-{uuid.uuid4().hex[:6]}.sqlite"),
               log_predictions=False, exit_when_done=True, drain_timeout=60, threads=1)
    cfg.update(kw)
    path = work / "bench.json"
    path.write_text(json.dumps(cfg))
    return load_settings(path, environ={})


def _end_to_end(report, work: Path, broker, model_dir: Path, images: Path) -> None:
    import logging

    from actions.inference import load_model
    from edge_client.agent import Agent, setup_logging

    blobs = [p.read_bytes() for p in sorted(images.iterdir())]
    model = load_model(model_dir, threads=1)
    _classify_rate(model, blobs, 30)  # warm-up
    setup_logging("warning")
    spent_alone = spent_agent = 0.0
    try:
        for _ in range(E2E_ROUNDS):  # interleaved, so load from elsewhere falls on both
            start = time.perf_counter()
            _classify_rate(model, blobs, E2E_IMAGES)
            spent_alone += time.perf_counter() - start
            agent = Agent(_agent_settings(work, broker, model_dir, images, max_images=E2E_IMAGES))
            code = agent.run()
            if code != 0 or agent.drained_at is None:
                raise RuntimeError(f"agent exited {code} without draining its outbox")
            spent_agent += agent.drained_at - agent.first_image_at
    finally:
        logging.getLogger("edge-client").setLevel("INFO")
    baseline = E2E_ROUNDS * E2E_IMAGES / spent_alone
    e2e = E2E_ROUNDS * E2E_IMAGES / spent_agent
    report("classify alone (in memory, 1 image per core)", baseline, "images/s")
    ratio = e2e / baseline
    report("end to end: files -> acknowledged publish", e2e, "images/s", ratio, ">= 0.8x", ratio >= 0.8)


def _payload() -> bytes:
    from actions.inference.classifier import Classification, Label
    from actions.messages.prediction import build_prediction, encode

    result = Classification((Label("tabby, tabby cat", 0.8341, 281), Label("tiger cat", 0.1, 282),
                             Label("Egyptian cat", 0.04, 285), Label("lynx, catamount", 0.01, 287),
                             Label("Persian cat", 0.005, 283)), 1.2, 9.8)
    return encode(build_prediction(result, device="bench", model_name="efficientnet-lite0",
                                   model_version="1.0.0", seq=123456, top_k=5, threshold=0.0,
                                   source="chelsea.jpg"))


class _BarePaho:
    """The baseline: paho's own loop thread, publish at QoS 1, wait for every PUBACK."""

    def __init__(self, broker, inflight: int):
        import paho.mqtt.client as mqtt

        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bare-{uuid.uuid4().hex[:6]}")
        self.client.max_inflight_messages_set(inflight)
        self.client.max_queued_messages_set(0)
        self.acked = 0
        self.target = 0
        self.done = threading.Event()
        self.client.on_publish = self._on_publish
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_publish(self, c, u, mid, rc, props=None):
        self.acked += 1
        if self.acked >= self.target:
            self.done.set()

    def round(self, payload: bytes, n: int) -> float:
        self.done.clear()
        self.target = self.acked + n
        start = time.perf_counter()
        for _ in range(n):
            self.client.publish("bench/bare", payload, qos=1)
        if not self.done.wait(120):
            raise RuntimeError("bare paho: messages never acknowledged")
        return time.perf_counter() - start

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


class _AgentPath:
    """The agent's path without the model: submit (stage; the sender commits, then hands over),
    PahoTransport, PUBACK, delete. The round ends when its rows are deleted: the last PUBACK sets an
    event, as the bare loop's callback does (no polling while messages flow, which would take the
    GIL), then the sender's delete of the last batch is awaited."""

    def __init__(self, work: Path, broker, inflight: int):
        from actions.mqtt import MqttSettings, open_transport
        from edge_client.agent import WINDOW_FACTOR, Sender
        from edge_client.outbox import Outbox

        class CountingSender(Sender):
            acknowledged = 0
            target = 0
            done = threading.Event()

            def _on_done(self, seq, exc):
                super()._on_done(seq, exc)
                if exc is None:
                    self.acknowledged += 1  # only the network thread writes it
                    if self.acknowledged >= self.target:
                        self.done.set()

        self.outbox = Outbox(work / f"pub-{uuid.uuid4().hex[:6]}.sqlite")
        self.transport = open_transport(MqttSettings(transport="mqtt", host=broker.host, port=broker.port,
                                                     max_inflight=inflight))
        self.transport.connect(timeout=10)
        self.sender = CountingSender(self.outbox, self.transport, window=inflight * WINDOW_FACTOR)
        self.sender.start()

    def round(self, payload: bytes, n: int) -> float:
        sender = self.sender
        sender.done.clear()
        sender.target = sender.acknowledged + n
        start = time.perf_counter()
        for _ in range(n):  # what the agent's classify loop does with each prediction
            sender.submit("bench/agent", lambda seq: payload)
        if not sender.done.wait(120):
            raise RuntimeError(f"agent path: {sender.target - sender.acknowledged} never acknowledged")
        # ...and deleted from the outbox: a round does all its own work, none is left for the next
        # (the sender deletes at once when nothing is in flight any more).
        deadline = time.monotonic() + 30
        while sender.acked < sender.target:
            if time.monotonic() > deadline:
                raise RuntimeError("agent path: acknowledged rows never deleted")
            time.sleep(0.0002)
        return time.perf_counter() - start

    def close(self):
        self.sender.drain(30)
        self.sender.stop()
        self.transport.close()
        self.outbox.close()


def _thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) each live thread of this process has used, by thread name."""
    import os
    import threading

    tick, out = os.sysconf("SC_CLK_TCK"), {}
    for thread in threading.enumerate():
        try:
            fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[thread.name] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _cpu_by_role(before: dict[str, float], after: dict[str, float], cpu: dict[str, float]) -> None:
    for name, seconds in after.items():
        role = "network" if name.startswith("paho-mqtt-client") else "main" if name == "MainThread" else name
        cpu[role] = cpu.get(role, 0.0) + seconds - before.get(name, 0.0)


def _publishing(report, work: Path, broker) -> None:
    payload = _payload()
    inflight, per_round, rounds = 100, 2000, 20  # a round is about 60 ms: many, to even out the noise
    bare, agent = _BarePaho(broker, inflight), _AgentPath(work, broker, inflight)
    cpu_bare: dict[str, float] = {}
    cpu_agent: dict[str, float] = {}
    try:
        bare.round(payload, 500)
        agent.round(payload, 500)  # warm-up
        spent_bare = spent_agent = 0.0
        for _ in range(rounds):  # interleaved, so load from elsewhere falls on both
            before = _thread_cpu()
            spent_bare += bare.round(payload, per_round)
            middle = _thread_cpu()
            spent_agent += agent.round(payload, per_round)
            after = _thread_cpu()
            _cpu_by_role(before, {k: v for k, v in middle.items() if k == "MainThread" or "-bare-" in k}, cpu_bare)
            _cpu_by_role(middle, {k: v for k, v in after.items()
                                  if k in ("MainThread", "sender") or "-edge-client-" in k}, cpu_agent)
    finally:
        bare.close()
        agent.close()
    rate_bare, rate_agent = rounds * per_round / spent_bare, rounds * per_round / spent_agent
    ratio = rate_agent / rate_bare
    report(f"bare paho QoS 1 publish loop ({len(payload)} B)", rate_bare, "msg/s")
    report("agent publish path (outbox -> PUBACK -> delete)", rate_agent, "msg/s", ratio, ">= 0.9x", ratio >= 0.9)
    report("  overhead per message", (1 / rate_agent - 1 / rate_bare) * 1e6, "us")
    # Where the time goes: CPU per message of each thread (counted in 10 ms clock ticks: to about 1 us).
    n = rounds * per_round
    for label, cpu in (("bare", cpu_bare), ("agent", cpu_agent)):
        for role in ("main", "sender", "network"):
            if role in cpu:
                report(f"  CPU per message, {label}, {role} thread", cpu[role] / n * 1e6, "us")


def _vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc (Linux only)")


def _memory(report, work: Path, broker, model_dir: Path, images: Path) -> None:
    from tests.edge_client.helpers import agent_env

    low, high = MEMORY_IMAGES
    topic = f"bench/{uuid.uuid4().hex}"
    status_topic = f"bench-status/{uuid.uuid4().hex}/{{device}}"
    cfg = dict(device="bench-mem", model_dir=str(model_dir), source=str(images), loop=True, interval=0,
               mqtt_host=broker.host, mqtt_port=broker.port, topic=topic, status_topic=status_topic,
               status_interval=0.2, outbox_path=str(work / "mem-outbox.sqlite"), log_predictions=False,
               max_images=high, threads=1)
    path = work / "mem.json"
    path.write_text(json.dumps(cfg))
    import paho.mqtt.client as mqtt

    from actions.messages.status import parse_status

    seen = {"images": 0}
    cond = threading.Condition()

    def on_message(c, u, msg):
        with cond:
            seen["images"] = parse_status(msg.payload).images
            cond.notify_all()

    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    watcher.on_message = on_message
    watcher.on_connect = lambda c, u, f, rc, p=None: c.subscribe(status_topic.replace("{device}", "bench-mem"))
    watcher.connect(broker.host, broker.port)
    watcher.loop_start()
    proc = subprocess.Popen([sys.executable, "-m", "edge_client.cli", "run", "--config", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(ROOT),
                            env=agent_env())
    try:
        def wait_images(n: int) -> None:
            deadline = time.monotonic() + 600
            with cond:
                while seen["images"] < n:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"agent stopped or stalled at {seen['images']} images")
                    cond.wait(0.5)

        wait_images(low)
        at_low = _vm_hwm_kb(proc.pid)
        wait_images(high)
        at_high = _vm_hwm_kb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:  # a hung agent must not outlive the benchmark
            proc.kill()
            proc.wait()
        watcher.loop_stop()
        watcher.disconnect()
    report(f"agent peak RSS after {low:,} images", at_low / 1024, "MiB")
    growth = at_high / at_low
    report(f"agent peak RSS after {high:,} images", at_high / 1024, "MiB", growth, "<= 1.10x", growth <= 1.10)


def run(report) -> None:
    from fixtures.broker import start_broker
    from fixtures.models import ensure_model, sample_images

    model_dir = ensure_model() / "onnx"
    work = Path(tempfile.mkdtemp(prefix="bench-edge-client-"))
    images = work / "images"
    images.mkdir()
    for name, p in sample_images().items():
        shutil.copy(p, images / f"{name}.jpg")
    try:
        with start_broker(work / "broker") as broker:
            report(f"broker: {broker.kind}", 0, "")
            _end_to_end(report, work, broker, model_dir, images)
            _publishing(report, work, broker)
            _memory(report, work, broker, model_dir, images)
    finally:
        shutil.rmtree(work, ignore_errors=True)
