"""Progress events: what long actions yield so the console and the CLI can show where they are."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# States an event can report; "done" and "skipped" and "failed" end a step.
PENDING, RUNNING, DONE, SKIPPED, FAILED = "pending", "running", "done", "skipped", "failed"


@dataclass(frozen=True)
class Progress:
    """One thing that happened during a long action.

    Attributes:
        step: which step (e.g. "iam-role", "compile", a device name during a deployment).
        state: one of pending, running, done, skipped, failed.
        message: a short sentence for a person.
        percent: 0-100 when known, else None.
        data: extra facts for machines (IDs, ARNs, S3 URIs), shown by `--json`.
    """

    step: str
    state: str
    message: str = ""
    percent: float | None = None
    data: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready dict."""
        return asdict(self)
