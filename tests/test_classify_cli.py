"""`edge-client classify` as an operator runs it: JSON lines out, one-line errors, the rest still done."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from actions.messages.prediction import parse_prediction

BIN = Path(sys.executable).parent / "edge-client"
CAT_LABELS = {"tabby, tabby cat", "tiger cat", "Persian cat", "Siamese cat, Siamese", "Egyptian cat"}


def _classify(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), "classify", *args], capture_output=True, text=True, timeout=120, env=env)


def test_prints_one_message_per_image(model_dir, sample_images):
    paths = [str(p) for p in sample_images.values()]
    out = _classify(*paths, "--model", str(model_dir), "--threshold", "0", "--device", "cam-7")
    assert out.returncode == 0, out.stderr
    messages = [parse_prediction(line) for line in out.stdout.splitlines()]
    assert [m.source for m in messages] == ["chelsea.jpg", "coffee.jpg", "rocket.jpg"]
    assert [m.seq for m in messages] == [1, 2, 3]
    assert {m.device for m in messages} == {"cam-7"}
    assert messages[1].top[0] == "espresso"
    assert all(len(m.results) == 5 for m in messages)
    assert json.loads(out.stdout.splitlines()[0])["inference-description"] == "Top 5 predictions with score 0 or above "


def test_bad_files_get_one_line_each_and_the_rest_are_classified(model_dir, sample_images, tmp_path):
    (tmp_path / "notes.jpg").write_text("this is text")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(sample_images["coffee"].read_bytes()[:3000])
    out = _classify(str(tmp_path / "notes.jpg"), str(sample_images["coffee"]), str(tmp_path / "missing.jpg"),
                    str(truncated), "--model", str(model_dir))
    assert out.returncode == 1
    errors = out.stderr.strip().splitlines()
    assert len(errors) == 3 and "Traceback" not in out.stderr
    assert "notes.jpg: not an image file" in errors[0]
    assert "missing.jpg: cannot read it" in errors[1]
    assert "cut.jpg: image data is truncated or corrupt" in errors[2]
    [message] = [parse_prediction(line) for line in out.stdout.splitlines()]
    assert message.top[0] == "espresso"


def test_model_from_the_environment(model_dir, sample_images):
    import os

    out = _classify(str(sample_images["coffee"]), env=dict(os.environ, EDGE_CLIENT_MODEL_DIR=str(model_dir)))
    assert out.returncode == 0 and parse_prediction(out.stdout).top[0] == "espresso"


def test_bad_model_or_option_exits_2_with_one_line(tmp_path, sample_images, model_dir):
    img = str(sample_images["coffee"])
    for args, expected in [
        ((img,), "no model"),
        ((img, "--model", str(tmp_path / "none")), "does not exist"),
        ((img, "--model", str(model_dir), "--threshold", "30"), "between 0 and 1"),
        ((img, "--model", str(model_dir), "--top-k", "0"), "at least 1"),
    ]:
        env = {k: v for k, v in __import__("os").environ.items() if k != "EDGE_CLIENT_MODEL_DIR"}
        out = _classify(*args, env=env)
        assert out.returncode == 2, args
        assert expected in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_model_copied_elsewhere_still_loads(model_dir, sample_images, tmp_path):
    shutil.copytree(model_dir, tmp_path / "m")
    out = _classify(str(sample_images["chelsea"]), "--model", str(tmp_path / "m"), "--variant", "int8")
    assert out.returncode == 0, out.stderr
    message = parse_prediction(out.stdout)
    assert message.source == "chelsea.jpg"
    assert message.top[0] in CAT_LABELS, message.top
