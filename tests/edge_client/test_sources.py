"""Image sources: file, glob, watched directory, camera."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

import pytest

from actions.errors import ConfigError
from edge_client.sources import describe_source, open_source
from tests.edge_client.helpers import even_rgb, write_video


def test_file_once_and_looped(tmp_path):
    f = tmp_path / "a.jpg"
    f.write_bytes(b"1")
    assert [i.name for i in open_source(str(f))] == ["a.jpg"]
    stop = threading.Event()
    looped = []
    for image in open_source(str(f), loop=True, stop=stop):
        looped.append(image.data)
        if len(looped) == 5:
            stop.set()
    assert looped == [b"1"] * 5


def test_glob_sorted(tmp_path):
    for name in ("b.jpg", "a.png", "c.txt"):
        (tmp_path / name).write_bytes(name.encode())
    assert [i.name for i in open_source(str(tmp_path / "*.*g"))] == ["a.png", "b.jpg"]


def test_directory_watch_sees_new_images_and_skips_partial(tmp_path):
    (tmp_path / "1.jpg").write_bytes(b"one")
    stop = threading.Event()
    seen = []

    def consume():
        for image in open_source(str(tmp_path), stop=stop, poll_interval=0.05):
            seen.append(image.name)

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.2)
    (tmp_path / ".2.jpg.tmp").write_bytes(b"partial")  # a writer's temp file: ignored
    (tmp_path / "notes.txt").write_text("not an image")
    time.sleep(0.2)
    (tmp_path / ".2.jpg.tmp").rename(tmp_path / "2.jpg")
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    t.join(5)
    assert seen == ["1.jpg", "2.jpg"]


def test_directory_loop_goes_round(tmp_path):
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"x")
    stop = threading.Event()
    names = []
    for image in open_source(str(tmp_path), loop=True, stop=stop, poll_interval=0.01):
        names.append(image.name)
        if len(names) == 6:
            stop.set()
    assert names == ["a.jpg", "b.jpg"] * 3


def test_missing_sources_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        open_source(str(tmp_path / "nope.jpg"))
    with pytest.raises(ConfigError, match="matches no file"):
        open_source(str(tmp_path / "*.jpg"))


def test_camera_without_opencv_says_what_to_install(monkeypatch):
    # As on a device without OpenCV: a None in sys.modules makes `import cv2` raise ImportError.
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(ConfigError, match="opencv"):
        open_source("camera:0")


def test_describe(tmp_path):
    assert describe_source("camera:0") == "camera"
    assert describe_source(str(tmp_path)) == "directory"
    assert describe_source(str(tmp_path / "*.jpg")) == "glob"
    assert describe_source(str(tmp_path / "x.jpg")) == "file"


def test_directory_resumes_after_its_marker(tmp_path):
    import os

    for i, name in enumerate(("b.jpg", "a.jpg", "c.jpg")):
        (tmp_path / name).write_bytes(name.encode())
        os.utime(tmp_path / name, ns=(1_000_000_000 * (i + 1),) * 2)  # b oldest, then a, then c
    stop = threading.Event()
    first = []
    for image in open_source(str(tmp_path), stop=stop, poll_interval=0.01):
        first.append((image.name, image.marker))
        if len(first) == 3:
            stop.set()
    assert [n for n, _m in first] == ["b.jpg", "a.jpg", "c.jpg"]  # oldest first
    # Restarted after a.jpg: only c.jpg and what comes later.
    stop = threading.Event()
    again = []
    (tmp_path / "d.jpg").write_bytes(b"d")
    for image in open_source(str(tmp_path), stop=stop, poll_interval=0.01, resume=first[1][1]):
        again.append(image.name)
        if len(again) == 2:
            stop.set()
    assert again == ["c.jpg", "d.jpg"]


def test_idle_marker_before_waiting(tmp_path):
    """With idle=True a watched directory says it is about to wait (None), so a reader that
    decodes ahead passes on the image it holds instead of sitting on it."""
    (tmp_path / "1.jpg").write_bytes(b"one")
    stop = threading.Event()
    items = []
    for item in open_source(str(tmp_path), stop=stop, poll_interval=0.01, idle=True):
        items.append(item and item.name)
        if len(items) == 2:
            stop.set()
    assert items == ["1.jpg", None]


# --- camera: a real video file opened the way a device path or stream URL is (no mocks) -------------

def _take(iterator, n: int, timeout: float = 10.0) -> list:
    """The first n images of a source (idle markers skipped), failing instead of hanging."""
    images = []
    deadline = time.monotonic() + timeout
    for item in iterator:
        if item is not None:
            images.append(item)
        if len(images) == n:
            return images
        assert time.monotonic() < deadline, f"only {len(images)} of {n} frames in {timeout:g} s"
    return images


def test_camera_video_file_yields_rgb_frames_of_its_size(tmp_path, sample_images):
    import numpy as np

    pytest.importorskip("cv2")
    for name, jpeg in sample_images.items():
        photo = even_rgb(jpeg)
        video = write_video(tmp_path / f"{name}.avi", [photo] * 3)
        frames = open_source(f"camera:{video}")
        try:
            images = _take(frames, 3)
        finally:
            frames.close()
        assert len(images) == 3
        for image in images:
            assert isinstance(image.data, np.ndarray) and image.data.dtype == np.uint8
            assert image.data.shape == photo.shape
        # RGB, not OpenCV's BGR: each channel's mean matches Pillow's decoding of the photo. The
        # photos' red and blue means differ by 30 to 107 levels, so swapped channels cannot pass.
        got = images[0].data.reshape(-1, 3).mean(axis=0)
        want = photo.reshape(-1, 3).mean(axis=0)
        assert abs(want[0] - want[2]) > 20
        assert np.allclose(got, want, atol=4), (name, got, want)


def test_camera_frame_classifies_like_the_jpeg(tmp_path, sample_images, model_dir):
    from actions.inference import load_model

    pytest.importorskip("cv2")
    model = load_model(model_dir, threads=1)
    labels = {}
    for name, jpeg in sample_images.items():
        video = write_video(tmp_path / f"{name}.avi", [even_rgb(jpeg)] * 2)
        frames = open_source(f"camera:{video}")
        try:
            (frame,) = _take(frames, 1)
        finally:
            frames.close()
        from_video = model.classify(frame.data, top_k=1, threshold=0.0).top1.label
        from_jpeg = model.classify(jpeg.read_bytes(), top_k=1, threshold=0.0).top1.label
        assert from_video == from_jpeg, name
        labels[name] = from_jpeg
    assert len(set(labels.values())) == len(labels)  # three different photos, three labels


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


def test_camera_end_of_stream_is_reported_once_then_reopened(tmp_path, sample_images):
    import numpy as np

    pytest.importorskip("cv2")
    photos = [even_rgb(sample_images["chelsea"])]
    photos.append(np.ascontiguousarray(photos[0][::-1]))  # a second, different frame: upside down
    video = write_video(tmp_path / "short.avi", [photos[0], photos[1], photos[0]])
    errors = []
    logger = logging.getLogger("edge-client.sources")  # the agent's log is its parent
    notes = _Lines()
    logger.addHandler(notes)
    level = logger.level
    logger.setLevel(logging.INFO)
    frames = open_source(f"camera:{video}", idle=True, on_error=lambda name, why: errors.append((name, why)))
    started = time.monotonic()
    try:
        images = _take(frames, 6)  # 3 frames, the end (reported, reopened), the 3 frames again
    finally:
        frames.close()
        logger.removeHandler(notes)
        logger.setLevel(level)
    elapsed = time.monotonic() - started
    assert len(images) == 6
    # The reopened video starts over: frames 4-6 are frames 1-3 again.
    for i in range(3):
        assert np.abs(images[i].data.astype(int) - images[i + 3].data).mean() < 2
    assert len(errors) == 1, errors  # once, not once per failed read or reopen
    name, why = errors[0]
    assert name == f"camera:{video}"
    assert f"no frame from camera:{video}" in why and "check the cable" in why and "\n" not in why
    assert 0.9 < elapsed < 5  # about a second of failed reads before the reopen
    assert notes.lines == [f"INFO camera:{video} gives frames again"]


def test_camera_reports_only_when_the_reason_changes(tmp_path, sample_images, monkeypatch):
    import edge_client.sources as sources

    pytest.importorskip("cv2")
    monkeypatch.setattr(sources, "CAMERA_STALL", 0.05)  # real waits, only shorter
    monkeypatch.setattr(sources, "CAMERA_RETRY_MAX", 0.2)
    photo = even_rgb(sample_images["coffee"])
    video = write_video(tmp_path / "clip.avi", [photo] * 2)
    kept = video.read_bytes()
    errors = []
    frames = open_source(f"camera:{video}", idle=True, on_error=lambda name, why: errors.append(why))
    try:
        assert len(_take(frames, 2)) == 2
        video.unlink()  # the stream ends and cannot be opened again: many reopen attempts fail
        (tmp_path / "clip.tmp").write_bytes(kept)
        restore = threading.Timer(1.5, os.replace, (tmp_path / "clip.tmp", video))  # atomic: no half file
        restore.start()
        started = time.monotonic()
        assert len(_take(frames, 1)) == 1  # comes back once the file is there again
        assert time.monotonic() - started > 1.4
        restore.join()
        assert len(errors) == 2, errors  # the end, then the failed reopens: not one per attempt
        assert errors[0].startswith(f"no frame from camera:{video}")
        assert f"{video} does not exist: check the device path" in errors[1]
        # It recovered: the next end of the stream is news again (reported once more).
        assert len(_take(frames, 2)) == 2  # the clip's 2nd frame, its end, its 1st frame again
    finally:
        frames.close()
    assert len(errors) == 3, errors
    assert errors[2] == errors[0]


def test_camera_stop_ends_a_retrying_source_promptly(tmp_path, sample_images):
    pytest.importorskip("cv2")
    video = write_video(tmp_path / "gone.avi", [even_rgb(sample_images["rocket"])])
    stop = threading.Event()
    errors = []
    frames = open_source(f"camera:{video}", stop=stop, on_error=lambda name, why: errors.append(why))
    assert len(_take(frames, 1)) == 1
    video.unlink()
    done = threading.Event()

    def drain():
        for _ in frames:
            pass
        done.set()

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    deadline = time.monotonic() + 5
    while len(errors) < 2 and time.monotonic() < deadline:  # now waiting before a reopen attempt
        time.sleep(0.02)
    assert len(errors) == 2, errors
    stop.set()
    assert done.wait(0.5), "the camera source did not end within 0.5 s of stop"


def _open_fds_to(path) -> int:
    fds = "/proc/self/fd"
    count = 0
    for fd in os.listdir(fds):
        try:
            count += os.readlink(os.path.join(fds, fd)) == str(path)
        except OSError:
            pass
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to see open files")
def test_camera_is_released_when_the_iterator_is_closed(tmp_path, sample_images, monkeypatch):
    import edge_client.sources as sources

    pytest.importorskip("cv2")
    monkeypatch.setattr(sources, "CAMERA_STALL", 0.05)
    video = write_video(tmp_path / "held.avi", [even_rgb(sample_images["chelsea"])])
    started = open_source(f"camera:{video}", idle=True)
    assert len(_take(started, 2)) == 2  # the one frame, the end, the reopened video's frame
    never_started = open_source(f"camera:{video}")
    assert _open_fds_to(video) == 2
    started.close()
    never_started.close()
    assert _open_fds_to(video) == 0


def test_camera_that_cannot_be_opened_is_a_config_error(tmp_path):
    pytest.importorskip("cv2")
    missing = tmp_path / "no-such-camera.avi"
    with pytest.raises(ConfigError, match=f"cannot open camera:{missing}: {missing} does not exist: "
                                          "check the device path"):
        open_source(f"camera:{missing}")
    with pytest.raises(ConfigError, match=r"cannot open camera:57: no video device 57, or it is busy: "
                                          r"check the cable and the index"):
        open_source("camera:57")
