"""Image sources: a file, a watched directory, a glob, or a camera (OpenCV, when installed).

Each source is an iterator of `Image(name, data)`; `data` is encoded image bytes (or an RGB array
from a camera). Iteration blocks while waiting for new images and ends early when `stop` is set.
A file that vanishes or cannot be read is reported through `on_error` and skipped. A camera that
gives no frame for a second (unplugged, the stream ended) is reported through `on_error` once and
reopened, again and again, at most `CAMERA_RETRY_MAX` seconds apart; when frames come again that is
logged.
"""

from __future__ import annotations

import glob as _glob
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from actions.errors import ConfigError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
CAMERA_PREFIX = "camera:"
ErrorCallback = Callable[[str, str], None]  # (image name, one-line reason)
CAMERA_POLL = 0.1       # seconds between two reads of a camera that gives no frame
CAMERA_STALL = 1.0      # seconds without a frame before the camera is reported and reopened
CAMERA_RETRY_MAX = 5.0  # at most this many seconds between two reopen attempts

log = logging.getLogger("edge-client.sources")  # the agent's log ("edge-client") prints it


@dataclass(frozen=True)
class Image:
    """One image to classify: where it came from (for the message's `source`) and its contents."""

    name: str
    data: Any
    marker: str | None = None  # a watched directory's position after this image ("mtime_ns:name")


def _is_image(path: Path) -> bool:
    # Hidden and partial files are skipped: writers should write `.name.tmp` and rename.
    return (path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
            and path.is_file())


def _read(path: Path, on_error: ErrorCallback) -> Image | None:
    try:
        return Image(path.name, path.read_bytes())
    except OSError as exc:
        on_error(path.name, f"cannot read {path}: {exc.strerror or exc}")
        return None


def _ignore(name: str, reason: str) -> None:
    pass


def describe_source(spec: str) -> str:
    """What kind of source `spec` is: "camera", "directory", "file" or "glob"."""
    if spec.startswith(CAMERA_PREFIX):
        return "camera"
    path = Path(spec).expanduser()
    if path.is_dir():
        return "directory"
    if any(c in spec for c in "*?["):
        return "glob"
    return "file"


def open_source(spec: str, *, loop: bool = False, stop: threading.Event | None = None,
                poll_interval: float = 0.5, on_error: ErrorCallback | None = None,
                resume: str | None = None, idle: bool = False) -> Iterator[Image | None]:
    """Iterate over the images of `spec`.

    Args:
        spec: a file, a directory (its images by name, then each new image that appears), a glob
            ("/data/*.jpg", sorted), "camera:N" (OpenCV device N) or "camera:PATH_OR_URL" (a
            device path, video file or stream URL).
        loop: start over when done (a file or glob forever; a directory: all its images in turn).
        stop: iteration ends soon after this is set.
        poll_interval: seconds between two looks at a directory for new images.
        on_error: called with (name, reason) for an image that cannot be read, and for a camera
            that stopped giving frames or cannot be reopened (once per reason, not per attempt).
        resume: for a watched directory (without loop), the `marker` of the last image handled
            before a restart: images up to it are not classified again.
        idle: yield None before waiting for new images, so a consumer that reads ahead can
            finish what it holds instead of sitting on it while the source waits.

    Returns:
        An iterator of Image.

    Raises:
        ConfigError: the file or directory does not exist, a glob matches nothing, or OpenCV is
            missing for a camera or cannot open it.
    """
    stop = stop or threading.Event()
    on_error = on_error or _ignore
    kind = describe_source(spec)
    if kind == "camera":
        return _camera(spec, stop, on_error, idle)
    if kind == "directory":
        return _directory(Path(spec).expanduser(), loop, stop, poll_interval, on_error, resume, idle)
    if kind == "glob":
        pattern = os.path.expanduser(spec)
        if not _glob.glob(pattern):
            raise ConfigError(f"source {spec!r} matches no file: check the pattern or the directory")
        return _glob_source(pattern, loop, stop, on_error, idle)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ConfigError(f"source {spec} does not exist: set source to an image file, a directory, "
                          "a glob or camera:0")
    return _file(path, loop, stop, on_error)


def _file(path: Path, loop: bool, stop: threading.Event, on_error: ErrorCallback) -> Iterator[Image]:
    while not stop.is_set():
        image = _read(path, on_error)
        if image is not None:
            yield image
        if not loop:
            return


def _glob_source(pattern: str, loop: bool, stop: threading.Event, on_error: ErrorCallback,
                 idle: bool = False) -> Iterator[Image | None]:
    while not stop.is_set():
        paths = sorted(Path(p) for p in _glob.glob(pattern))
        yielded = False
        for path in paths:
            if stop.is_set():
                return
            if not path.is_file():
                continue
            image = _read(path, on_error)
            if image is not None:
                yielded = True
                yield image
        if not loop:
            return
        if not yielded:
            if idle:
                yield None
            stop.wait(1.0)  # nothing matches right now: do not spin


def _parse_marker(marker: str | None) -> tuple[int, str] | None:
    if not marker:
        return None
    mtime, sep, name = marker.partition(":")
    try:
        return (int(mtime), name) if sep else None
    except ValueError:
        return None


def _directory(directory: Path, loop: bool, stop: threading.Event, poll_interval: float,
               on_error: ErrorCallback, resume: str | None = None,
               idle: bool = False) -> Iterator[Image | None]:
    """Watch mode: images oldest first (by modification time, then name), then new ones as they
    appear; a rewritten image counts as new. Loop mode: all images by name, round and round."""
    seen: dict[str, tuple[int, int]] = {}  # name -> (mtime_ns, size) of the version classified
    after = None if loop else _parse_marker(resume)
    while not stop.is_set():
        try:
            entries = [p for p in directory.iterdir() if _is_image(p)]
        except OSError as exc:
            on_error(directory.name, f"cannot list {directory}: {exc.strerror or exc}")
            if idle:
                yield None
            stop.wait(poll_interval)
            continue
        fresh = []
        for path in entries:
            try:
                st = path.stat()
            except OSError:
                continue  # removed between listing and stat
            key = (st.st_mtime_ns, st.st_size)
            if after is not None and (st.st_mtime_ns, path.name) <= after:
                continue  # handled before the restart
            if loop or seen.get(path.name) != key:
                fresh.append((path, key))
        fresh.sort(key=lambda item: item[0].name if loop else (item[1][0], item[0].name))
        for path, key in fresh:
            if stop.is_set():
                return
            image = _read(path, on_error)
            seen[path.name] = key
            if image is not None:
                yield Image(image.name, image.data, None if loop else f"{key[0]}:{path.name}")
        if len(seen) > 100_000:
            # A directory that is never cleaned must not grow our memory: forget names now gone.
            present = {p.name for p in entries}
            seen = {k: v for k, v in seen.items() if k in present}
        if not fresh or not loop:
            if idle:
                yield None
            stop.wait(poll_interval)


def _camera_target(spec: str) -> int | str:
    """`camera:N` -> device index N (empty: 0); anything else after `camera:` is a device path or
    stream URL."""
    target = spec[len(CAMERA_PREFIX):]
    try:
        return int(target or 0)
    except ValueError:
        return target if "://" in target else os.path.expanduser(target)


def _cannot_open(spec: str, target: int | str) -> str:
    if isinstance(target, int):
        return (f"cannot open {spec}: no video device {target}, or it is busy: check the cable and "
                "the index (ls /dev/video*)")
    if "://" not in target and not os.path.exists(target):
        return f"cannot open {spec}: {target} does not exist: check the device path"
    return (f"cannot open {spec}: check that the device or stream is up and readable and that the "
            "path or URL is right")


def _camera(spec: str, stop: threading.Event, on_error: ErrorCallback,
            idle: bool = False) -> Iterator[Image | None]:
    try:
        import cv2
    except ImportError:
        raise ConfigError(f"source {spec} needs OpenCV, which is not installed: pip install "
                          "opencv-python-headless, or use a file, directory or glob source") from None
    target = _camera_target(spec)
    capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        capture.release()
        raise ConfigError(_cannot_open(spec, target))
    return _CameraFrames(capture, _camera_frames(cv2, capture, spec, target, stop, on_error, idle))


class _CameraFrames:
    """The camera's frame iterator; `close()` releases the device even if no frame was taken yet
    (a generator closed before its first step never runs its `finally`)."""

    def __init__(self, capture: Any, frames: Iterator[Image | None]) -> None:
        self._first_capture = capture
        self._frames = frames

    def __iter__(self) -> _CameraFrames:
        return self

    def __next__(self) -> Image | None:
        return next(self._frames)

    def close(self) -> None:
        self._frames.close()           # releases the capture in use, if it started
        self._first_capture.release()  # the capture opened up front, if it never started


def _camera_frames(cv2: Any, capture: Any, spec: str, target: int | str, stop: threading.Event,
                   on_error: ErrorCallback, idle: bool) -> Iterator[Image | None]:
    """RGB frames from an open capture. After `CAMERA_STALL` seconds of failed reads (unplugged, the
    stream ended) the failure is reported and the capture reopened, waiting longer each time up to
    `CAMERA_RETRY_MAX`. A failure is reported again only when its reason changes, or after frames
    came again (which is logged)."""
    n = 0
    failing_since: float | None = None  # monotonic time of the first failed read in a row
    wait = CAMERA_STALL                 # before the next reopen: doubled up to CAMERA_RETRY_MAX
    reported: str | None = None         # the reason last given to on_error, until frames come again

    def report(reason: str, last: str | None) -> str:
        if reason != last:
            on_error(spec, reason)
        return reason

    try:
        while not stop.is_set():
            ok, frame = capture.read() if capture is not None else (False, None)
            if ok:
                if reported is not None:
                    log.info("%s gives frames again", spec)
                failing_since, wait, reported = None, CAMERA_STALL, None
                n += 1
                yield Image(f"camera{target}-{n}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                continue
            if capture is not None:
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                if now - failing_since < wait:
                    if idle:
                        yield None
                    stop.wait(CAMERA_POLL)
                    continue
                capture.release()
                reported = report(f"no frame from {spec} for {CAMERA_STALL:g} s (unplugged, or the "
                                  "stream ended): check the cable, the device path or the stream; "
                                  f"reopening it, every {CAMERA_RETRY_MAX:g} s at most", reported)
            capture = cv2.VideoCapture(target)
            if not capture.isOpened():
                capture.release()
                capture = None
                reported = report(f"{_cannot_open(spec, target)}; retrying every "
                                  f"{CAMERA_RETRY_MAX:g} s at most", reported)
                if idle:
                    yield None
                stop.wait(wait)
            failing_since = None
            wait = min(wait * 2, CAMERA_RETRY_MAX)
    finally:
        if capture is not None:
            capture.release()
