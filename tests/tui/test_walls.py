"""The console never makes an AWS client of its own: every AWS call goes through actions/."""

from __future__ import annotations

import re
from pathlib import Path

TUI = Path(__file__).resolve().parents[2] / "tui"


def aws_client_offenders(folder: Path) -> list[str]:
    """The .py files under `folder` that import boto3/botocore or call `.client(`."""
    offenders = []
    for path in sorted(folder.rglob("*.py")):
        text = path.read_text()
        if re.search(r"^\s*(import|from)\s+(boto3|botocore)\b", text, re.M) or re.search(r"\.client\(", text):
            offenders.append(path.relative_to(folder).as_posix())
    return offenders


def test_tui_sources_make_no_aws_clients():
    assert aws_client_offenders(TUI) == []


def test_the_check_can_fail(tmp_path):
    # The same scan, on a folder with one file for each branch of it and one clean file.
    (tmp_path / "imports.py").write_text("import os\n    from botocore.config import Config\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "calls.py").write_text("def f(session):\n    return session.client('s3')\n")
    (tmp_path / "clean.py").write_text("import textual  # boto3 named in a comment only\nclient = None\n")
    assert aws_client_offenders(tmp_path) == ["imports.py", "sub/calls.py"]
