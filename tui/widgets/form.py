"""A keyboard form in a dialog: labelled inputs with defaults, checked before it closes.

Tab and Shift+Tab move between fields, Enter on the last field (or Ctrl+S anywhere) submits,
Escape cancels. `check(values)` runs on submit; an `EdgeConsoleError` it raises is shown under the
fields as one line and the form stays open, so nothing typed is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Static

from actions.errors import EdgeConsoleError


@dataclass(frozen=True)
class Field:
    """One form field: its key, label, default value and a hint (shown while the field is empty)."""

    key: str
    label: str
    default: str = ""
    hint: str = ""
    password: bool = False


class FormScreen(ModalScreen[Any]):
    """Ask for several values; dismisses with what `check` returned, or None when cancelled.

    Args:
        title: what the form is for.
        fields: the fields, in order.
        check: turns the values into a result (e.g. a validated NeoJob) or raises EdgeConsoleError.
        intro: a line or two under the title.
    """

    DEFAULT_CSS = """
    FormScreen .form-row { height: 1; }
    FormScreen .form-label { width: 22; }
    FormScreen Input { width: 1fr; }
    FormScreen #form-error { color: $error; text-style: bold; height: auto; }
    FormScreen #form-fields { height: auto; max-height: 16; }
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Submit"),
    ]

    def __init__(self, title: str, fields: list[Field], check: Callable[[dict[str, str]], Any],
                 intro: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.fields = fields
        self.check = check
        self.intro = intro

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.title_text, style="bold"), classes="title")
            if self.intro:
                yield Static(Text(self.intro), classes="hint")
            with VerticalScroll(id="form-fields"):
                for f in self.fields:
                    with Horizontal(classes="form-row"):
                        yield Static(Text(f.label), classes="form-label")
                        yield Input(f.default, placeholder=f.hint, id=f"field-{f.key}", password=f.password,
                                    compact=True)
            yield Static(id="form-error")
            yield Static(Text("Tab next field · Enter on the last field or Ctrl+S submits · Escape cancels"),
                         classes="hint")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        if self.fields:
            self.query_one(f"#field-{self.fields[0].key}", Input).focus()

    def values(self) -> dict[str, str]:
        """What is in the fields now, stripped."""
        return {f.key: self.query_one(f"#field-{f.key}", Input).value.strip() for f in self.fields}

    @on(Input.Submitted)
    def _enter(self, event: Input.Submitted) -> None:
        last = f"field-{self.fields[-1].key}"
        if event.input.id == last:
            self.action_submit()
        else:
            self.focus_next()

    def action_submit(self) -> None:
        try:
            result = self.check(self.values())
        except EdgeConsoleError as exc:
            self.query_one("#form-error", Static).update(Text("! " + str(exc)))
            return
        except (ValueError, TypeError) as exc:
            self.query_one("#form-error", Static).update(Text(f"! {exc}"))
            return
        self.dismiss(result)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """A typed confirmation: the operator must type `word` exactly to go ahead."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, message: str, word: str) -> None:
        super().__init__()
        self.message = message
        self.word = word

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.message))
            yield Static(Text(f"Type {self.word} and press Enter to go ahead; Escape cancels.", style="bold"))
            yield Input(id="confirm-input", compact=True)
            yield Static(id="confirm-error")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _typed(self, event: Input.Submitted) -> None:
        if event.value.strip() == self.word:
            self.dismiss(True)
        else:
            self.query_one("#confirm-error", Static).update(Text(f"! That is not {self.word}; nothing was done."))

    def action_cancel(self) -> None:
        self.dismiss(False)
