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
