"""Image sources: a file, a watched directory, a glob, or a camera (OpenCV, when installed).

Each source is an iterator of `Image(name, data)`; `data` is encoded image bytes (or an RGB array
from a camera). Iteration blocks while waiting for new images and ends early when `stop` is set.
A file that vanishes or cannot be read is reported through `on_error` and skipped.
"""

from __future__ import annotations

import glob as _glob
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from actions.errors import ConfigError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
CAMERA_PREFIX = "camera:"
ErrorCallback = Callable[[str, str], None]  # (image name, one-line reason)


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
            ("/data/*.jpg", sorted), or "camera:N" (OpenCV device N).
        loop: start over when done (a file or glob forever; a directory: all its images in turn).
        stop: iteration ends soon after this is set.
        poll_interval: seconds between two looks at a directory for new images.
        on_error: called with (name, reason) for an image that cannot be read.
        resume: for a watched directory (without loop), the `marker` of the last image handled
            before a restart: images up to it are not classified again.
        idle: yield None before waiting for new images, so a consumer that reads ahead can
            finish what it holds instead of sitting on it while the source waits.

    Returns:
        An iterator of Image.

    Raises:
        ConfigError: the file or directory does not exist, a glob matches nothing, or OpenCV is
            missing for a camera.
    """
    stop = stop or threading.Event()
    on_error = on_error or _ignore
    kind = describe_source(spec)
    if kind == "camera":
        return _camera(spec, stop, idle)
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


def _camera(spec: str, stop: threading.Event, idle: bool = False) -> Iterator[Image | None]:
    try:
        import cv2
    except ImportError:
        raise ConfigError(f"source {spec} needs OpenCV, which is not installed: pip install "
                          "opencv-python-headless, or use a file, directory or glob source") from None
    try:
        index: int | str = int(spec[len(CAMERA_PREFIX):] or 0)
    except ValueError:
        index = spec[len(CAMERA_PREFIX):]  # a device path or stream URL
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise ConfigError(f"cannot open camera {index!r}: check that it is connected and readable")

    def frames() -> Iterator[Image]:
        n = 0
        try:
            while not stop.is_set():
                ok, frame = capture.read()
                if not ok:
                    if idle:
                        yield None
                    stop.wait(0.1)
                    continue
                n += 1
                yield Image(f"camera{index}-{n}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        finally:
            capture.release()

    return frames()
