"""The distribution: a device installs without the console's dependencies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_device_extra_pulls_in_no_console_dependencies(tmp_path):
    report = tmp_path / "report.json"
    out = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--no-warn-conflicts",
         "--report", str(report), f"{REPO}[device]"],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"onnxruntime", "dlr", "paho-mqtt", "awsiotsdk", "numpy", "pillow"} <= names
    assert names.isdisjoint({"textual", "rich", "boto3", "botocore", "torch", "moto"})

