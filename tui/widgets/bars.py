"""Score bars drawn with block characters: readable in monochrome, no colour needed."""

from __future__ import annotations

from rich.text import Text

_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(fraction: float, width: int) -> str:
    """A bar `width` cells wide filled to `fraction` (0..1), with eighth-cell precision."""
    fraction = max(0.0, min(1.0, fraction))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full
    if part and full < width:
        text += _EIGHTHS[part]
    return text.ljust(width, "·")


def score_line(label: Text, score: float, width: int, indent: int = 3) -> Text:
    """One result line: label, a bar and the score in percent, fitted to `width` cells."""
    score_text = f"{score:5.1f}%"
    bar_width = max(5, min(24, width // 3))
    label_width = max(8, width - indent - bar_width - len(score_text) - 2)
    line = Text(" " * indent)
    label = label.copy()
    label.truncate(label_width, overflow="ellipsis", pad=True)
    line.append_text(label)
    line.append(" ")
    line.append(bar(score / 100.0, bar_width), style="bold")
    line.append(" " + score_text)
    return line
