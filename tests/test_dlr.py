"""DLR for SageMaker Neo artifacts: never phones home, and fails in one clear line.

Each check runs in a fresh interpreter against a private copy of the installed `dlr` package, so it
starts from the state a new device has (no ccm_config.json) and leaves the virtualenv untouched.
Sockets are blocked in those interpreters: DNS look-ups and connections are recorded and refused.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

BLOCK_NETWORK = r"""
import socket, sys
attempts = []
def _refuse(*args, **kwargs):
    attempts.append(args[:1])
    raise OSError("network blocked by the test")
socket.getaddrinfo = _refuse
socket.create_connection = _refuse
socket.socket.connect = lambda self, *a: _refuse(*a)
sys.addaudithook(lambda event, args: attempts.append(event) if event in ("socket.connect", "socket.getaddrinfo") else None)
"""


@pytest.fixture
def dlr_copy(tmp_path) -> Path:
    spec = importlib.util.find_spec("dlr")
    if spec is None:
        pytest.skip("dlr is not installed")
    site = tmp_path / "site"
    shutil.copytree(Path(list(spec.submodule_search_locations)[0]), site / "dlr",
                    ignore=shutil.ignore_patterns("__pycache__", "ccm_config.json"))
    return site


def _run(site: Path, body: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]))
    return subprocess.run([sys.executable, "-c", BLOCK_NETWORK + body], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_plain_import_of_dlr_arms_phone_home(dlr_copy):
    """The control: without our guard, importing dlr turns phone-home on, and every model load then
    posts to AWS (dlr's `call_phone_home` wraps `DLRModel.__init__` and calls `send_model_loaded`).
    This proves the blocked-socket check below can see an attempt."""
    body = (
        "import dlr\n"
        "from dlr.counter import phone_home\n"
        "print('ARMED', phone_home.MGR is not None)\n"
        "phone_home.MGR.send_model_loaded('model')\n"
        "print('ATTEMPTS', len(attempts))\n"
    )
    out = _run(dlr_copy, body)
    assert out.returncode == 0, out.stderr
    assert "ARMED True" in out.stdout
    assert "ATTEMPTS 0" not in out.stdout


def test_guarded_import_and_load_make_no_network_attempt(dlr_copy, tmp_path):
    neo = tmp_path / "neo"
    neo.mkdir()
    for name in ("compiled.so", "compiled.params", "compiled_model.json"):
        (neo / name).write_bytes(b"not a real artifact")
    body = f"""
from actions.inference.dlr_guard import import_dlr
from actions.inference import load_model
from actions.errors import ModelError
import_dlr()
from dlr.counter import phone_home
print("ARMED", phone_home.MGR is not None)
try:
    load_model({str(neo)!r})
except ModelError as exc:
    print("MODEL_ERROR", exc)
print("ATTEMPTS", len(attempts))
"""
    out = _run(dlr_copy, body)
    assert out.returncode == 0, out.stderr
    assert "ARMED False" in out.stdout and "ATTEMPTS 0" in out.stdout
    assert "MODEL_ERROR DLR cannot load the Neo artifact" in out.stdout
    config = json.loads((dlr_copy / "dlr" / "counter" / "ccm_config.json").read_text())
    assert config["enable_phone_home"] is False


def test_unwritable_switch_refuses_to_import_dlr(dlr_copy):
    # A directory where the file should be: no user, root included, can write the switch there.
    (dlr_copy / "dlr" / "counter" / "ccm_config.json").mkdir()
    body = """
from actions.inference.dlr_guard import import_dlr
from actions.errors import ModelError
try:
    import_dlr()
except ModelError as exc:
    print("REFUSED", exc)
print("IMPORTED", "dlr" in sys.modules, "ATTEMPTS", len(attempts))
"""
    out = _run(dlr_copy, body)
    assert out.returncode == 0, out.stderr
    assert "REFUSED cannot write" in out.stdout and "refusing to load dlr" in out.stdout
    assert "IMPORTED False ATTEMPTS 0" in out.stdout


def test_corrupt_compiled_meta_is_named(tmp_path):
    from actions.errors import ModelError
    from actions.inference import load_model

    for name in ("compiled.so", "compiled.params", "compiled_model.json"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "compiled.meta").write_text("{broken")
    with pytest.raises(ModelError, match="compiled.meta is corrupt"):
        load_model(tmp_path)


NEO = os.environ.get("EDGE_CONSOLE_NEO_ARTIFACT")


@pytest.mark.neo
@pytest.mark.skipif(not NEO, reason="set EDGE_CONSOLE_NEO_ARTIFACT to a real Neo output directory (X86_64/LINUX) to run")
def test_real_neo_artifact_classifies_the_sample_photos(sample_images):
    from actions.inference import load_model

    model = load_model(NEO)
    assert model.runtime == "dlr"
    result = model.classify(sample_images["coffee"].read_bytes(), top_k=5, threshold=0.0)
    assert len(result.results) == 5
    if model.labels[0] != "class 0":  # with ImageNet labels beside the artifact, check the answer too
        assert result.top1.label == "espresso"
