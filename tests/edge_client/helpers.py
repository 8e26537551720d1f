"""What the agent tests share: a consumer that records messages by sequence number, and a way to
run `edge-client run` as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import paho.mqtt.client as mqtt

from actions.messages.prediction import parse_prediction
from actions.messages.status import parse_status

ROOT = Path(__file__).resolve().parents[2]


class Consumer:
    """A persistent-session subscriber (QoS 1) that keeps every prediction and the last status.

    The session survives broker restarts (mosquitto persists it), so messages published while the
    consumer is reconnecting are queued for it rather than lost.
    """

    def __init__(self, broker, topic: str, status_topic: str = "edge-console/+/status"):
        self.topic = topic
        self.payloads: dict[int, list[bytes]] = defaultdict(list)
        self.order: list[int] = []
        self.statuses: list = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"consumer-{uuid.uuid4().hex[:8]}",
                                  clean_session=False)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.reconnect_delay_set(1, 2)
        self._topics = [(topic, 1), (status_topic, 1)]
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "consumer could not subscribe"

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        client.subscribe(self._topics)

    def _on_message(self, client, userdata, msg):
        with self._cond:
            if msg.topic == self.topic:
                p = parse_prediction(msg.payload)
                self.payloads[p.seq].append(bytes(msg.payload))
                self.order.append(p.seq)
            elif msg.payload:
                self.statuses.append(parse_status(msg.payload))
            self._cond.notify_all()

    def seqs(self) -> set[int]:
        with self._cond:
            return set(self.payloads)

    def wait_for(self, predicate, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
            return True

    def wait_seqs(self, wanted, timeout: float = 30.0) -> bool:
        wanted = set(wanted)
        return self.wait_for(lambda c: wanted <= set(c.payloads), timeout)

    def last_status(self):
        with self._cond:
            return self.statuses[-1] if self.statuses else None

    def first_seen_order(self) -> list[int]:
        with self._cond:
            return list(dict.fromkeys(self.order))

    def predictions(self):
        with self._cond:
            return {seq: parse_prediction(p[0]) for seq, p in self.payloads.items()}

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def write_config(path: Path, **settings) -> Path:
    path.write_text(json.dumps(settings, indent=1))
    return path


def agent_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_CLIENT_")}
    env.update({"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "EDGE_CLIENT_THREADS": "1"})
    env.update({k: str(v) for k, v in extra.items()})
    return env


class AgentProcess:
    """`edge-client run --config FILE` in a child process, its stdout kept in a file."""

    def __init__(self, config: Path, log_path: Path, env: dict | None = None, preexec_fn=None):
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_client.cli", "run", "--config", str(config)],
                                     stdout=self._log, stderr=subprocess.STDOUT, cwd=str(ROOT),
                                     env=env or agent_env(), preexec_fn=preexec_fn)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if not self._log.closed:
            self._log.close()


def outbox_rows(path: Path) -> list[int]:
    """The seqs still stored in an outbox file (read with plain sqlite3, as an operator would)."""
    import sqlite3

    db = sqlite3.connect(path)
    try:
        return [r[0] for r in db.execute("SELECT seq FROM outbox ORDER BY seq")]
    finally:
        db.close()


def even_rgb(path):
    """A photo as an RGB array with even sides (what MJPG takes)."""
    import numpy as np
    from PIL import Image as PILImage

    with PILImage.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    return rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]  # MJPG wants even sides


def write_video(path, frames, fps: float = 10.0):
    """Write RGB frames (all the same size) to an MJPG .avi with OpenCV."""
    import pytest

    cv2 = pytest.importorskip("cv2")
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), "this OpenCV cannot write MJPG .avi"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path
