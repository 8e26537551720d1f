"""What the console is given to work with: the AWS context, the MQTT connection and a clock.

`make_app()` builds a `Services` and hands it to the App; screens read `self.app.services`. Tests
build one against the sandbox and a real broker; nothing in tui/ makes its own AWS client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from tui.clock import Clock


class Subscription(Protocol):
    """An open MQTT subscription; `close()` ends it (idempotent)."""

    def close(self) -> None: ...


# subscribe(topic_filter, on_message(topic, payload)) -> Subscription. `on_message` is called on
# the MQTT library's thread and must return quickly.
Subscribe = Callable[[str, Callable[[str, bytes], None]], Subscription]


@dataclass
class Services:
    """Everything the console talks to.

    Attributes:
        ctx: the `actions.context.Context` (AWS or the sandbox), or None when none could be made.
        clock: wall and monotonic time (a `FixedClock` in snapshot tests).
        subscribe: opens an MQTT subscription, or None when no broker is configured.
        where: one line that says what the console is connected to, for the header.
        defaults: form defaults (thing name, group, component names, model file) by name.
        sandbox: the running sandbox, when the console started one (`--sandbox`).
    """

    ctx: Any = None
    clock: Clock = field(default_factory=Clock)
    subscribe: Subscribe | None = None
    where: str = ""
    defaults: dict[str, str] = field(default_factory=dict)
    sandbox: Any = None
