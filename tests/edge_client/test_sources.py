"""Image sources: file, glob, watched directory, camera."""

from __future__ import annotations

import threading
import time

import pytest

from actions.errors import ConfigError
from edge_client.sources import describe_source, open_source


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


def test_camera_without_opencv_says_what_to_install():
    try:
        import cv2  # noqa: F401
        pytest.skip("OpenCV is installed here; no camera to open either")
    except ImportError:
        pass
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
