"""A keyboard-driven list that draws only the rows on screen.

`DataTable` keeps a rendered copy of every row; with 10,000 devices refreshed several times a
second that is the bottleneck. This list keeps only keys: the screen owns the data and answers
`render_row(key, line, width, selected)` for the few rows that are visible, so loading, sorting
and filtering cost what a Python sort or list comprehension costs.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Sequence

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

RowRenderer = Callable[[Hashable, int, int, bool], Text]


class VirtualList(ScrollView, can_focus=True):
    """Rows of `row_height` lines each, with a cursor; rows are drawn by `renderer`."""

    DEFAULT_CSS = """
    VirtualList { height: 1fr; scrollbar-size-vertical: 1; }
    VirtualList > .virtual-list--cursor { text-style: reverse; }
    """

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("enter", "select", "Open"),
    ]

    cursor: reactive[int] = reactive(0, always_update=True, repaint=False)

    class Highlighted(Message):
        """The cursor moved to another row."""

        def __init__(self, list_: "VirtualList", key: Hashable | None) -> None:
            super().__init__()
            self.list = list_
            self.key = key

        @property
        def control(self) -> "VirtualList":
            return self.list

    class Selected(Highlighted):
        """Enter was pressed on a row."""

    def __init__(self, renderer: RowRenderer, *, row_height: int = 1, empty: str = "",
                 name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.renderer = renderer
        self.row_height = row_height
        self.empty = empty
        self._keys: list[Hashable] = []
        self._index: dict[Hashable, int] = {}

    # -- data ---------------------------------------------------------------------------------

    @property
    def keys(self) -> Sequence[Hashable]:
        """The keys in display order."""
        return self._keys

    @property
    def cursor_key(self) -> Hashable | None:
        """The key under the cursor, or None when the list is empty."""
        return self._keys[self.cursor] if 0 <= self.cursor < len(self._keys) else None

    def set_keys(self, keys: list[Hashable], keep_cursor: bool = True) -> None:
        """Replace the rows (sorted and filtered by the caller); the cursor stays on its key."""
        old = self.cursor_key if keep_cursor else None
        self._keys = keys
        self._index = {k: i for i, k in enumerate(keys)}
        self.virtual_size = Size(self.size.width, len(keys) * self.row_height)
        if old is not None and old in self._index:
            self.cursor = self._index[old]
        else:
            self.cursor = min(self.cursor, max(0, len(keys) - 1))
        self.refresh()

    def refresh_keys(self, keys: Any) -> None:
        """Redraw the given rows if they are on screen (others are drawn when scrolled to)."""
        top = int(self.scroll_offset.y)
        bottom = top + self.size.height
        h = self.row_height
        for key in keys:
            i = self._index.get(key)
            if i is not None and top - h < i * h < bottom:
                self.refresh_lines(i * h - top, h)

    # -- cursor --------------------------------------------------------------------------------

    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, len(self._keys) - 1)) if self._keys else 0

    def watch_cursor(self, old: int, new: int) -> None:
        self._scroll_to_cursor()
        self.refresh()
        self.post_message(self.Highlighted(self, self.cursor_key))

    def _scroll_to_cursor(self) -> None:
        h = self.row_height
        top = self.cursor * h
        if top < self.scroll_offset.y:
            self.scroll_to(y=top, animate=False, immediate=True)
        elif top + h > self.scroll_offset.y + self.size.height:
            self.scroll_to(y=top + h - self.size.height, animate=False, immediate=True)

    def action_cursor(self, step: int) -> None:
        self.cursor += step

    def action_page(self, step: int) -> None:
        self.cursor += step * max(1, self.size.height // self.row_height - 1)

    def action_jump(self, where: int) -> None:
        self.cursor = where if where >= 0 else len(self._keys) - 1

    def action_select(self) -> None:
        if self.cursor_key is not None:
            self.post_message(self.Selected(self, self.cursor_key))

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self._keys) * self.row_height)

    # -- drawing -------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width  # without the scrollbar
        base = self.rich_style
        absolute = int(self.scroll_offset.y) + y
        if not self._keys:
            if y == 0 and self.empty:
                return Strip([Segment(self.empty, base + Style(dim=True))]).crop_extend(0, width, base)
            return Strip.blank(width, base)
        index, line = divmod(absolute, self.row_height)
        if index >= len(self._keys):
            return Strip.blank(width, base)
        selected = index == self.cursor
        text = self.renderer(self._keys[index], line, width, selected)
        text.no_wrap = True
        text.overflow = "crop"
        if selected:
            # Reverse video shows the cursor on a monochrome terminal too.
            highlight = self.get_component_rich_style("virtual-list--cursor", partial=True) \
                if self.has_focus else Style(bold=True, underline=line == self.row_height - 1)
            text.stylize(highlight)
        # Rich renders a Text without spans as segments without a style, dropping `text.style` and
        # upsetting Textual's monochrome filter; re-applying the style as a span avoids both.
        if text.style:
            text.stylize(text.style, 0, len(text))
            text.style = ""
        null = Style.null()
        segments = [seg if seg.style is not None else Segment(seg.text, null)
                    for seg in text.render(self.app.console)]
        return Strip(segments).crop_extend(0, width, base).simplify()

    COMPONENT_CLASSES = {"virtual-list--cursor"}
