"""Turn any failure that reaches the UI into one line a person can read."""

from __future__ import annotations

from actions.errors import EdgeConsoleError
from tui.safe_text import clean


def describe(exc: BaseException | None, doing: str = "") -> str:
    """One line for an exception: typed errors say what to do; others get their type and text.

    Args:
        exc: the failure.
        doing: what was being attempted, prefixed when the error does not already say it.
    """
    if exc is None:
        return f"{doing} failed" if doing else "failed"
    if isinstance(exc, EdgeConsoleError):
        text = str(exc)
    else:
        # An unexpected failure: still one line, with the type so it can be reported.
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if doing:
            text = f"Could not {doing}: {text}"
    # Error texts can carry what a device or a server said: control characters are escaped here,
    # and callers show the result as plain text (Text objects, notify(markup=False)).
    return clean(" ".join(text.split()), 500)
