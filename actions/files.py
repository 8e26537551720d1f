"""Local files written safely: a temp file beside the target, then an atomic rename."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: str | bytes, mode: int = 0o600) -> Path:
    """Write `data` to `path` so readers see the old file or the new one, never half of one.

    Args:
        path: the target file; its directory is created if needed.
        data: text (UTF-8) or bytes.
        mode: the file's permissions (0600 by default: state can name accounts and ARNs).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, value: Any, mode: int = 0o600) -> Path:
    """`write_atomic` of `value` as indented JSON."""
    return write_atomic(path, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n", mode)


# A directory we may replace holds one of these: our compiler's manifest or Neo's compiled library.
ARTIFACT_MARKERS = ("manifest.json", "compiled.so")


def check_artifact_target(target: Path) -> None:
    """Refuse to replace `target` unless it is absent, an empty directory, or a model artifact.

    The operator names the output directory (`compile --out DIR`); replacing whatever is there would
    delete a home directory passed by mistake.

    Raises:
        ConfigError: `target` exists and is not a model artifact.
    """
    from actions.errors import ConfigError

    target = Path(target)
    if not target.exists() and not target.is_symlink():
        return
    if target.is_dir() and not target.is_symlink():
        if not any(target.iterdir()) or any((target / m).is_file() for m in ARTIFACT_MARKERS):
            return
    raise ConfigError(f"{target} exists and is not a model artifact; choose an empty or new directory.")


def replace_dir(new: Path, target: Path) -> Path:
    """Put directory `new` at `target` whole: readers see the old directory or the new one, never half.

    `new` must be on the same filesystem as `target` (make it beside `target`). An existing `target`
    is renamed aside, `new` renamed in, then the old one removed; it must pass check_artifact_target.
    """
    import shutil

    new, target = Path(new), Path(target)
    check_artifact_target(target)
    if not target.exists():
        os.replace(new, target)
        return target
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
    os.replace(target, old)  # onto the empty directory mkdtemp made: atomic, and the name is ours
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)  # put the old one back
        raise
    shutil.rmtree(old, ignore_errors=True)
    return target
