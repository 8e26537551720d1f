"""The console never makes an AWS client of its own: every AWS call goes through actions/."""

from __future__ import annotations

import re
from pathlib import Path

TUI = Path(__file__).resolve().parents[2] / "tui"


def test_tui_sources_make_no_aws_clients():
    offenders = []
    for path in TUI.rglob("*.py"):
        text = path.read_text()
        if re.search(r"^\s*(import|from)\s+(boto3|botocore)\b", text, re.M) or re.search(r"\.client\(", text):
            offenders.append(path.name)
    assert offenders == []


def test_the_check_can_fail(tmp_path):
    sample = "import boto3\nboto3.client('s3')\n"
    assert re.search(r"^\s*(import|from)\s+(boto3|botocore)\b", sample, re.M)
