"""`make bench`: run every tests/bench/bench_*.py module and print its report.

Each module defines `run(report)`; `report(name, value, unit, ratio=None, target=None)` prints one
line. Ratios are against a baseline measured in the same process, so a busy machine moves both.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def report(name: str, value: float, unit: str, ratio: float | None = None,
           target: str | None = None, ok: bool | None = None) -> None:
    """Print one benchmark line: value, ratio to the baseline, and the target it is held to."""
    line = f"  {name:<52} {value:>10.2f} {unit:<10}"
    if ratio is not None:
        line += f" {ratio:>6.2f}x"
    if target is not None:
        verdict = "" if ok is None else ("  ok" if ok else "  MISSED")
        line += f"   target {target}{verdict}"
    print(line, flush=True)


def main(argv: list[str]) -> int:
    wanted = set(argv)
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    failed = 0
    for name in names:
        if wanted and name not in wanted and name.removeprefix("bench_") not in wanted:
            continue
        module = importlib.import_module(f"tests.bench.{name}")
        print(f"{name.removeprefix('bench_')}: {(module.__doc__ or '').strip().splitlines()[0]}", flush=True)
        start = time.perf_counter()
        try:
            module.run(report)
        except Exception as exc:  # one benchmark's failure must not hide the others' figures
            failed += 1
            print(f"  FAILED: {type(exc).__name__}: {exc}", flush=True)
        print(f"  ({time.perf_counter() - start:.1f} s)\n", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
