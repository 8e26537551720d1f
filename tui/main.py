"""`edge-console`: headless subcommands for scripts, or the console app when none is given.

Headless subcommands never import textual, so scripts and CI stay fast and light.
"""

from __future__ import annotations

import sys

# Subcommand -> module whose `main(argv) -> int` handles it.
HEADLESS = {
    "setup": "actions.cli",
    "compile": "actions.cli",
    "package": "actions.cli",
    "deploy": "actions.cli",
    "fleet": "actions.cli",
    "logs": "actions.cli",
    "leftovers": "actions.cli",
    "sandbox": "fixtures.sandbox.cli",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in HEADLESS:
        import importlib

        return importlib.import_module(HEADLESS[argv[0]]).main(argv)
    from tui.app import run_console

    return run_console(argv)


if __name__ == "__main__":
    sys.exit(main())
