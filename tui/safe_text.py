"""Device data shown as plain text: never Rich markup, never terminal escapes.

Everything a device sends (names, labels, raw payloads, log lines) passes through `clean()` before
it reaches a widget, and widgets get `rich.text.Text` objects, which Rich does not parse for markup.
"""

from __future__ import annotations

import re

from rich.text import Text

# C0 controls (but tab and newline, handled by the caller), DEL, C1 controls, and the Unicode
# bidirectional overrides that can make a line read differently from what it contains.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match) -> str:
    # A visible stand-in, so an operator sees that something was there.
    return f"\\x{ord(match.group()):02x}" if ord(match.group()) < 0x100 else f"\\u{ord(match.group()):04x}"


def clean(value: object, max_len: int = 200, keep_newlines: bool = False) -> str:
    """Make a device-supplied value safe to put on the screen.

    Args:
        value: anything; `None` becomes an empty string.
        max_len: longer strings are cut and end with an ellipsis.
        keep_newlines: keep newlines (multi-line raw views); otherwise they become spaces.

    Returns:
        A string with control characters shown as `\\xNN` escapes.
    """
    text = "" if value is None else str(value)
    if len(text) > max_len * 4:
        text = text[: max_len * 4]  # bound the regex work on hostile input
    text = text.replace("\t", " ")
    if not keep_newlines:
        text = text.replace("\r", " ").replace("\n", " ")
    else:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _UNSAFE.sub(_escape, text)
    if len(text) > max_len:
        text = text[: max_len - 1] + "…"
    return text


def plain(value: object, max_len: int = 200, style: str = "", keep_newlines: bool = False) -> Text:
    """`clean()` wrapped in a `rich.text.Text`, which is never parsed as markup."""
    return Text(clean(value, max_len, keep_newlines), style=style, no_wrap=not keep_newlines)
