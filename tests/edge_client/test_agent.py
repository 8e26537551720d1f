"""The agent end to end: a real model, real images, a real mosquitto, the agent as a real process.

Every test checks by sequence number that nothing was lost: each seq from 1 to the last one
given out arrives (at least once), first arrivals are in order, and a duplicate is byte-identical.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
import uuid
from pathlib import Path

import pytest

from fixtures.broker import mosquitto_path
from tests.edge_client.helpers import AgentProcess, Consumer, even_rgb, outbox_rows, write_config, write_video

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not mosquitto_path(), reason="mosquitto not installed (make broker)")]


@pytest.fixture
def images(tmp_path, sample_images) -> Path:
    d = tmp_path / "images"
    d.mkdir()
    for name, path in sample_images.items():
        shutil.copy(path, d / f"{name}.jpg")
    return d


@pytest.fixture
def agents():
    """Starts agents (`agents(config, log_path)`) and stops every one of them at teardown, also when
    the test failed half way: a failed test must not leave an agent running after pytest."""
    started: list[AgentProcess] = []

    def start(cfg: Path, log_path: Path, **kw) -> AgentProcess:
        agent = AgentProcess(cfg, log_path, **kw)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        try:
            agent.stop()
        except Exception:
            agent.proc.kill()
            agent.proc.wait()


def config(tmp_path: Path, broker, model_dir, source, **kw) -> tuple[Path, dict]:
    settings = dict(device=f"dev-{uuid.uuid4().hex[:6]}", model_dir=str(model_dir), source=str(source),
                    interval=0, mqtt_host=broker.host, mqtt_port=broker.port,
                    topic=f"test/{uuid.uuid4().hex}/image-classification", status_interval=1,
                    watch_interval=0.3, outbox_path=str(tmp_path / "outbox.sqlite"),
                    log_predictions=False, drain_timeout=10)
    settings.update(kw)
    return write_config(tmp_path / "edge-client.json", **settings), settings


def assert_nothing_lost(consumer: Consumer, last_seq: int) -> None:
    assert consumer.seqs() >= set(range(1, last_seq + 1)), \
        f"missing seqs: {sorted(set(range(1, last_seq + 1)) - consumer.seqs())[:20]}"
    order = consumer.first_seen_order()
    assert order == sorted(order), "first arrivals out of order"
    for seq, copies in consumer.payloads.items():
        assert all(c == copies[0] for c in copies), f"duplicate of seq {seq} differs"


@pytest.mark.parametrize("threads", [0, 1], ids=["every-core-on-one-image", "one-image-per-core"])
def test_publishes_every_prediction_in_order(tmp_path, agents, fresh_broker, model_dir, sample_images, threads):
    many = tmp_path / "many"  # 30 files, each its own name, taken in the order of their names
    many.mkdir()
    for i in range(30):
        name = sorted(sample_images)[i % 3]
        shutil.copy(sample_images[name], many / f"{i:02d}-{name}.jpg")
    cfg, s = config(tmp_path, fresh_broker, model_dir, str(many / "*.jpg"), max_images=30,
                    exit_when_done=True, log_predictions=True, threads=threads)
    consumer = Consumer(fresh_broker, s["topic"])
    try:
        agent = agents(cfg, tmp_path / "agent.log")
        assert agent.wait(120) == 0, agent.output()
        assert consumer.wait_seqs(range(1, 31), 10)
        assert consumer.wait_for(lambda c: c.last_status() and c.last_status().state == "stopped", 10)
    finally:
        consumer.close()
    assert_nothing_lost(consumer, 30)
    assert max(consumer.seqs()) == 30
    preds = consumer.predictions()
    # Source order, even with several images in flight at once; each result stays with its image.
    assert [preds[seq].source for seq in range(1, 31)] == sorted(p.name for p in many.iterdir())
    for p in preds.values():
        if p.source.endswith("chelsea.jpg"):
            assert "cat" in p.top[0]
        elif p.source.endswith("coffee.jpg"):
            assert p.top[0] == "espresso"
    assert all(p.device == s["device"] and p.model_name for p in preds.values())
    status = consumer.last_status()
    assert status.images == 30 and status.outbox_depth == 0 and status.dropped == 0 and status.seq == 30
    assert status.inference_ms[0] is not None and status.inference_ms[1] >= status.inference_ms[0]
    assert outbox_rows(Path(s["outbox_path"])) == []
    out = agent.output()
    assert '"seq": 17' in out  # predictions printed on stdout, as the runbook's component did
    assert "Traceback" not in out


def test_outbox_that_cannot_be_written_pauses_and_loses_nothing(tmp_path, agents, fresh_broker, model_dir, images):
    """A real write failure: the agent runs with a 256 KiB file-size limit (RLIMIT_FSIZE), so
    SQLite's WAL soon cannot grow. The agent must pause, say so in its status, and when the limit is
    lifted (as when disk space is freed) go on: every seq arrives, in order, none lost."""
    import resource

    limit = 256 * 1024
    cfg, s = config(tmp_path, fresh_broker, model_dir, images, loop=True, max_images=600, exit_when_done=True)
    consumer = Consumer(fresh_broker, s["topic"])
    try:
        agent = agents(cfg, tmp_path / "agent.log", preexec_fn=lambda: resource.setrlimit(
            resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY)))
        assert consumer.wait_for(lambda c: c.last_status() and c.last_status().state == "degraded"
                                 and "cannot write the outbox" in (c.last_status().last_error or ""), 60), \
            agent.output()
        assert agent.proc.poll() is None, agent.output()
        paused_at = max(consumer.seqs(), default=0)
        time.sleep(1.0)  # paused: nothing new is classified, so nothing new can arrive
        assert max(consumer.seqs(), default=0) == paused_at
        resource.prlimit(agent.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        assert agent.wait(120) == 0, agent.output()
        assert consumer.wait_seqs(range(1, 601), 15)
    finally:
        consumer.close()
    assert_nothing_lost(consumer, 600)
    out = agent.output()
    assert "classifying paused" in out and "can be written again" in out
    assert "Traceback" not in out
    assert outbox_rows(Path(s["outbox_path"])) == []


def test_broker_restart_mid_stream(tmp_path, agents, fresh_broker, model_dir, images):
    cfg, s = config(tmp_path, fresh_broker, model_dir, images, loop=True, interval=0.01,
                    max_images=400, exit_when_done=True)
    consumer = Consumer(fresh_broker, s["topic"])
    agent = agents(cfg, tmp_path / "agent.log")
    try:
        assert consumer.wait_for(lambda c: len(c.seqs()) >= 50, 60), agent.output()
        fresh_broker.stop()
        time.sleep(2.0)  # the agent keeps classifying into its outbox
        fresh_broker.start()
        assert agent.wait(180) == 0, agent.output()
        assert consumer.wait_seqs(range(1, 401), 30), \
            f"missing {sorted(set(range(1, 401)) - consumer.seqs())[:20]}"
    finally:
        agent.stop()
        consumer.close()
    assert_nothing_lost(consumer, 400)
    assert "not connected" in agent.output()


def test_sigkill_mid_stream_loses_nothing(tmp_path, agents, fresh_broker, model_dir, images):
    cfg, s = config(tmp_path, fresh_broker, model_dir, images, loop=True, interval=0.005)
    consumer = Consumer(fresh_broker, s["topic"])
    first = agents(cfg, tmp_path / "agent1.log")
    try:
        assert consumer.wait_for(lambda c: len(c.seqs()) >= 60, 60), first.output()
        first.kill9()
        killed_at = max(consumer.seqs())
        # The restarted agent sends what the first one stored and had not had acknowledged,
        # then goes on with new numbers.
        cfg2, _ = config(tmp_path, fresh_broker, model_dir, images, loop=True, interval=0.005,
                         max_images=40, exit_when_done=True, device=s["device"], topic=s["topic"])
        second = agents(cfg2, tmp_path / "agent2.log")
        assert second.wait(120) == 0, second.output()
    finally:
        first.stop()
    try:
        import sqlite3

        db = sqlite3.connect(s["outbox_path"])
        last = db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0] - 1
        db.close()
        assert last >= killed_at + 40
        assert consumer.wait_seqs(range(1, last + 1), 30), \
            f"missing {sorted(set(range(1, last + 1)) - consumer.seqs())[:20]}"
    finally:
        consumer.close()
    assert_nothing_lost(consumer, last)
    assert max(consumer.seqs()) == last  # and no number was used twice for different messages


def test_full_outbox_drops_oldest_and_counts(tmp_path, agents, fresh_broker, model_dir, images):
    cfg, s = config(tmp_path, fresh_broker, model_dir, images, loop=True, max_images=100,
                    outbox_max_messages=20)
    consumer = Consumer(fresh_broker, s["topic"])
    fresh_broker.stop()  # the agent starts with the broker down
    agent = agents(cfg, tmp_path / "agent.log")
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and "source done after 100" not in agent.output():
            time.sleep(0.2)
        assert "source done after 100" in agent.output(), agent.output()
        fresh_broker.start()
        assert consumer.wait_seqs(range(81, 101), 60), agent.output()
        assert consumer.wait_for(lambda c: c.last_status() and c.last_status().dropped == 80, 30)
        agent.signal(signal.SIGTERM)
        assert agent.wait(30) == 0
    finally:
        agent.stop()
        consumer.close()
    assert outbox_rows(Path(s["outbox_path"])) == []
    # Exactly the dropped ones are missing, and the status said how many: nothing went silently.
    assert consumer.seqs() == set(range(81, 101))
    assert "outbox full" in agent.output()


def test_corrupt_image_is_skipped_and_reported(tmp_path, agents, fresh_broker, model_dir, sample_images):
    d = tmp_path / "imgs"
    d.mkdir()
    shutil.copy(sample_images["chelsea"], d / "a-chelsea.jpg")
    (d / "b-corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 10)
    data = sample_images["coffee"].read_bytes()
    (d / "c-truncated.jpg").write_bytes(data[: len(data) // 3])
    shutil.copy(sample_images["coffee"], d / "d-coffee.jpg")
    cfg, s = config(tmp_path, fresh_broker, model_dir, str(d / "*.jpg"), exit_when_done=True)
    consumer = Consumer(fresh_broker, s["topic"])
    try:
        agent = agents(cfg, tmp_path / "agent.log")
        assert agent.wait(120) == 0, agent.output()
        assert consumer.wait_for(lambda c: c.last_status() and c.last_status().state == "stopped", 10)
    finally:
        consumer.close()
    out = agent.output()
    assert "b-corrupt.jpg skipped" in out and "Traceback" not in out
    good = {p.source for p in consumer.predictions().values()}
    assert {"a-chelsea.jpg", "d-coffee.jpg"} <= good and "b-corrupt.jpg" not in good
    seqs = sorted(consumer.seqs())
    assert seqs == list(range(1, len(seqs) + 1))  # a bad image costs no sequence number
    status = consumer.last_status()
    assert status.errors >= 1 and status.last_error


def test_camera_source_end_to_end(tmp_path, agents, fresh_broker, model_dir, sample_images):
    """A camera (OpenCV reading a video, as it reads a device path or stream URL): its RGB frames are
    classified as their photos are, and a stream that ends is reported and reopened, not fatal."""
    pytest.importorskip("cv2")
    from actions.inference import load_model

    names = sorted(sample_images)
    photos = {n: even_rgb(sample_images[n]) for n in names}
    size = min(p.shape[0] for p in photos.values()), min(p.shape[1] for p in photos.values())
    frames = [photos[n][:size[0], :size[1]] for n in names for _ in range(4)]  # 12 frames, 3 photos
    video = write_video(tmp_path / "camera.avi", frames)
    model = load_model(model_dir, threads=1)
    import cv2

    capture = cv2.VideoCapture(str(video))  # the frames as the video holds them (MJPG is lossy)
    decoded = [cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2RGB) for _ in frames]
    capture.release()
    expected = [model.classify(f, top_k=1, threshold=0.0).top1.label for f in decoded]
    cfg, s = config(tmp_path, fresh_broker, model_dir, f"camera:{video}", max_images=20, threshold=0.0,
                    exit_when_done=True)
    consumer = Consumer(fresh_broker, s["topic"])
    try:
        agent = agents(cfg, tmp_path / "agent.log")
        assert agent.wait(120) == 0, agent.output()
        assert consumer.wait_seqs(range(1, 21), 10)
    finally:
        consumer.close()
    out = agent.output()
    assert "no frame from camera:" in out and "reopening" in out and "Traceback" not in out, out
    predictions = consumer.predictions()
    # The first 12 are the video's frames; then it ended, was reopened and started again.
    got = [predictions[seq].top[0] for seq in range(1, 21)]
    assert got == (expected + expected)[:20]
    assert predictions[1].source.startswith("camera")


def test_missing_model_is_a_fatal_config_error(tmp_path, agents, fresh_broker, images):
    cfg, s = config(tmp_path, fresh_broker, tmp_path / "no-such-model", images)
    consumer = Consumer(fresh_broker, s["topic"])
    try:
        agent = agents(cfg, tmp_path / "agent.log")
        assert agent.wait(60) == 2
        assert consumer.wait_for(lambda c: c.last_status() is not None, 10)
    finally:
        consumer.close()
    out = agent.output()
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and "model_dir" in errors[0] and "no-such-model" in errors[0]
    status = consumer.last_status()
    assert status.state == "error" and "no-such-model" in status.last_error
    assert consumer.seqs() == set()


def _copy_model(src: Path, dst: Path, version: str) -> Path:
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["model"]["version"] = version
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def test_hot_swap_and_a_bad_model_keeps_the_old_one(tmp_path, agents, fresh_broker, model_dir, images):
    models = tmp_path / "models"
    models.mkdir()
    _copy_model(model_dir, models / "v1", "1.0.0")
    _copy_model(model_dir, models / "v2", "2.0.0")
    broken = _copy_model(model_dir, models / "v3", "3.0.0")
    for name in ("model.onnx", "model.int8.onnx"):
        (broken / name).write_bytes(b"not a model")
    current = models / "current"
    current.symlink_to(models / "v1")

    def point(target: Path) -> None:  # switch the symlink atomically, as a deployment would
        tmp = models / "current.tmp"
        tmp.symlink_to(target)
        tmp.replace(current)

    cfg, s = config(tmp_path, fresh_broker, model_dir=current, source=images, loop=True, interval=0.02)
    consumer = Consumer(fresh_broker, s["topic"])
    agent = agents(cfg, tmp_path / "agent.log")

    def versions():
        return [p.model_version for _seq, p in sorted(consumer.predictions().items())]

    try:
        assert consumer.wait_for(lambda c: len(c.seqs()) >= 10, 60), agent.output()
        point(models / "v2")
        assert consumer.wait_for(lambda c: "2.0.0" in versions(), 30), agent.output()
        assert consumer.wait_for(lambda c: c.last_status() and c.last_status().model_version == "2.0.0", 10)
        point(broken)
        assert consumer.wait_for(lambda c: c.last_status() and c.last_status().last_error
                                 and "v3" in c.last_status().last_error, 30), agent.output()
        n = max(consumer.seqs())
        assert consumer.wait_for(lambda c: len(c.seqs()) >= n + 20, 30)
        # A new configuration naming another directory is a new deployment too.
        s["model_dir"] = str(models / "v1")
        write_config(cfg, **s)
        assert consumer.wait_for(lambda c: c.last_status() and c.last_status().model_version == "1.0.0", 30)
        agent.signal(signal.SIGTERM)
        assert agent.wait(30) == 0
        last = max(consumer.seqs())
        assert consumer.wait_seqs(range(1, last + 1), 10)
    finally:
        agent.stop()
        consumer.close()
    v = versions()
    assert v[0] == "1.0.0" and "2.0.0" in v and "3.0.0" not in v
    swaps = [i for i in range(1, len(v)) if v[i] != v[i - 1]]
    assert len(swaps) == 2  # 1 -> 2, then 2 -> 1 (the broken 3 never ran)
    assert_nothing_lost(consumer, last)
    assert "new model not loaded" in agent.output()


def test_sigterm_sends_what_it_can_and_keeps_the_rest(tmp_path, agents, fresh_broker, model_dir, images):
    cfg, s = config(tmp_path, fresh_broker, model_dir, images, loop=True, interval=0.01, drain_timeout=2)
    consumer = Consumer(fresh_broker, s["topic"])
    agent = agents(cfg, tmp_path / "agent.log")
    try:
        assert consumer.wait_for(lambda c: len(c.seqs()) >= 20, 60), agent.output()
        fresh_broker.stop()
        time.sleep(1.0)  # predictions pile up in the outbox
        agent.signal(signal.SIGTERM)
        assert agent.wait(30) == 0, agent.output()
        left = outbox_rows(Path(s["outbox_path"]))
        assert left, "nothing was kept although the broker was down"
        received = consumer.seqs()
        # Everything is either acknowledged (received) or still in the outbox.
        assert set(range(1, max(left) + 1)) <= received | set(left)
    finally:
        agent.stop()
        consumer.close()
    assert "stay in the outbox" in agent.output()


@pytest.mark.parametrize("transport", ["mqtt", "iot-core"])
def test_mutual_tls_transports(tmp_path, agents, mqtt_broker, model_dir, images, transport):
    """The agent over TLS with a client certificate: paho, and awsiotsdk's MQTT5 client (the
    AWS IoT Core transport) against mosquitto's mutual-TLS listener."""
    cert, key = mqtt_broker.client_cert(f"thing-{transport}")
    tls = dict(mqtt_port=mqtt_broker.tls_port, ca_path=str(mqtt_broker.ca_path), cert_path=str(cert),
               key_path=str(key), transport=transport)
    if transport == "iot-core":
        tls["iot_endpoint"] = "localhost"  # the server certificate names localhost and 127.0.0.1
    else:
        tls["mqtt_tls"] = True
    cfg, s = config(tmp_path, mqtt_broker, model_dir, images, loop=True, max_images=12,
                    exit_when_done=True, **tls)
    consumer = Consumer(mqtt_broker, s["topic"], status_topic=f"edge-console/{s['device']}/status")
    try:
        agent = agents(cfg, tmp_path / "agent.log")
        assert agent.wait(120) == 0, agent.output()
        assert consumer.wait_seqs(range(1, 13), 10)
        assert consumer.wait_for(lambda c: c.last_status() and c.last_status().state == "stopped", 10)
    finally:
        consumer.close()
    assert_nothing_lost(consumer, 12)
    assert "mqtts://" in agent.output()


def test_watched_directory_is_not_classified_again_after_a_restart(tmp_path, agents, fresh_broker,
                                                                    model_dir, sample_images):
    watched = tmp_path / "incoming"
    watched.mkdir()
    for name in ("chelsea", "coffee"):
        shutil.copy(sample_images[name], watched / f"{name}.jpg")
    cfg, s = config(tmp_path, fresh_broker, model_dir, watched)
    consumer = Consumer(fresh_broker, s["topic"])
    try:
        first = agents(cfg, tmp_path / "agent1.log")
        assert consumer.wait_seqs({1, 2}, 60), first.output()
        first.signal(signal.SIGTERM)
        assert first.wait(30) == 0
        second = agents(cfg, tmp_path / "agent2.log")
        time.sleep(1.0)
        shutil.copy(sample_images["rocket"], watched / ".rocket.jpg.tmp")
        (watched / ".rocket.jpg.tmp").rename(watched / "rocket.jpg")  # write, then rename: never half read
        assert consumer.wait_seqs({3}, 60), second.output()
        time.sleep(1.0)
        second.signal(signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        consumer.close()
    sources = {seq: p.source for seq, p in consumer.predictions().items()}
    assert sources == {1: "chelsea.jpg", 2: "coffee.jpg", 3: "rocket.jpg"}


def test_status_on_change_and_on_interval(tmp_path, agents, fresh_broker, model_dir, images):
    """A long interval still gets a status at once on a change (connect, model swap); a short one ticks."""
    models = tmp_path / "models"
    models.mkdir()
    _copy_model(model_dir, models / "v1", "1.0.0")
    _copy_model(model_dir, models / "v2", "2.0.0")
    current = models / "current"
    current.symlink_to(models / "v1")
    cfg, s = config(tmp_path, fresh_broker, current, images, loop=True, interval=0.2, status_interval=60)
    consumer = Consumer(fresh_broker, s["topic"])
    agent = agents(cfg, tmp_path / "agent.log")
    try:
        assert consumer.wait_for(lambda c: c.last_status() and c.last_status().model_version == "1.0.0", 30)
        # The first figures (a rate, latencies) come soon after the first images, not an interval later.
        assert consumer.wait_for(lambda c: c.last_status().images_per_s and c.last_status().inference_ms[1], 15), \
            agent.output()
        tmp = models / "current.tmp"
        tmp.symlink_to(models / "v2")
        tmp.replace(current)
        assert consumer.wait_for(lambda c: c.last_status() and c.last_status().model_version == "2.0.0", 10), \
            agent.output()
        # Now a short interval, through the config file (a live setting): statuses tick without changes.
        s["status_interval"] = 0.5
        write_config(cfg, **s)
        # With no change to report, only the (now short) interval makes new statuses. How many per
        # second is a rate, not checked here; that they keep coming is.
        before = len(consumer.statuses)
        assert consumer.wait_for(lambda c: len(c.statuses) - before >= 2, 30), \
            (len(consumer.statuses) - before, agent.output())
        status = consumer.last_status()
        assert status.state == "running" and status.connected and status.images > 0
        assert status.images_per_s is not None and status.images_per_s > 0
        agent.signal(signal.SIGTERM)
        assert agent.wait(30) == 0
    finally:
        agent.stop()
        consumer.close()
