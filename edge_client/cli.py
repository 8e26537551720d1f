"""`edge-client`: the device agent's command line."""

from __future__ import annotations

import sys

SUBCOMMANDS = {
    "classify": "edge_client.classify",  # classify image files once, print JSON lines
    "run": "edge_client.agent",  # the long-running agent
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in SUBCOMMANDS or argv[0] in ("-h", "--help"):
        print("usage: edge-client {classify,run} ...", file=sys.stderr)
        print("  classify IMAGE... [--model DIR] [--top-k 5] [--threshold 0.3]", file=sys.stderr)
        print("  run --config FILE", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    import importlib

    return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
