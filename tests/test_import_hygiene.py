"""The walls between the parts (DESIGN.md): actions never loads textual or rich; the device agent
loads neither those nor boto3 nor the console. Checked in a fresh interpreter per module."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _modules(package: str) -> list[str]:
    root = REPO / package
    found = [package]
    for info in pkgutil.walk_packages([str(root)], prefix=f"{package}."):
        found.append(info.name)
    return sorted(found)


def _loaded_after_import(module: str, forbidden: tuple[str, ...]) -> list[str]:
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        f"print(','.join(m for m in {forbidden!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"importing {module} failed: {out.stderr.strip().splitlines()[-1:]}"
    return [m for m in out.stdout.strip().split(",") if m]


@pytest.mark.parametrize("module", _modules("actions"))
def test_actions_never_load_the_ui(module):
    assert _loaded_after_import(module, ("textual", "rich")) == []


@pytest.mark.parametrize("module", _modules("edge_client"))
def test_the_device_agent_loads_no_console_and_no_boto3(module):
    assert _loaded_after_import(module, ("textual", "rich", "tui", "boto3", "botocore")) == []


def test_the_check_itself_can_fail():
    # tui imports textual at its app module; if this passed, the checks above would prove nothing.
    assert "textual" in _loaded_after_import("tui.app", ("textual",))
