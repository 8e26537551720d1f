"""The fixture model: Neo's PyTorch layout, a complete ONNX Runtime artifact, rebuilt only when needed."""

from __future__ import annotations

import hashlib
import json
import tarfile

import pytest

from actions.errors import CompileError


def test_model_tar_has_neo_pytorch_layout(model_tar):
    with tarfile.open(model_tar) as tar:
        names = tar.getnames()
    assert "model.pth" in names  # at the root, as Neo wants it
    assert {"labels.txt", "preprocessing.json"} <= set(names)


def test_model_pth_is_torchscript_taking_input0(model_tar, tmp_path):
    torch = pytest.importorskip("torch")
    with tarfile.open(model_tar) as tar:
        tar.extract("model.pth", tmp_path, filter="data")
    model = torch.jit.load(str(tmp_path / "model.pth"))
    with torch.no_grad():
        assert tuple(model(torch.zeros(1, 3, 224, 224)).shape) == (1, 1000)


def test_manifest_describes_the_artifact(model_dir):
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["model"] == {"name": "efficientnet-lite0", "version": "1.0.0"}
    assert manifest["input"] == {"name": "input0", "shape": [1, 3, 224, 224], "layout": "NCHW", "dtype": "float32"}
    assert {"resize", "crop", "mean", "std"} <= set(manifest["preprocessing"])
    assert manifest["variants"] == {"fp32": "model.onnx", "int8": "model.int8.onnx"}
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((model_dir / name).read_bytes()).hexdigest() == digest
    assert set(manifest["files"]) == {"model.onnx", "model.int8.onnx", "labels.txt"}


def test_int8_model_is_smaller(model_dir):
    assert (model_dir / "model.int8.onnx").stat().st_size < 0.4 * (model_dir / "model.onnx").stat().st_size


def test_nothing_big_is_committed():
    import subprocess

    files = subprocess.run(["git", "ls-files", "-z"], capture_output=True, check=True,
                           timeout=30).stdout.split(b"\0")
    from pathlib import Path

    big = [f.decode() for f in files if f and Path(f.decode()).is_file() and Path(f.decode()).stat().st_size > 2_000_000]
    assert big == []


def test_build_is_cached(model_root):
    from fixtures.models.build import build

    before = (model_root / "onnx" / "model.onnx").stat().st_mtime_ns
    build(model_root, quiet=True)
    assert (model_root / "onnx" / "model.onnx").stat().st_mtime_ns == before


# --- the compiler's refusals -------------------------------------------------------------------

def test_compile_rejects_a_tar_without_model_pth(tmp_path):
    from actions.compiler import compile_pytorch

    (tmp_path / "readme.txt").write_text("hi")
    with tarfile.open(tmp_path / "bad.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "readme.txt", arcname="readme.txt")
    with pytest.raises(CompileError, match="no model.pth at its root"):
        compile_pytorch(tmp_path / "bad.tar.gz", tmp_path / "out", data_input_config={"input0": [1, 3, 224, 224]})
    assert not (tmp_path / "out").exists()


def test_compile_rejects_a_wrong_input_shape(model_tar, tmp_path):
    from actions.compiler import compile_pytorch

    with pytest.raises(CompileError, match="does not accept input0 of shape"):
        compile_pytorch(model_tar, tmp_path / "out", data_input_config='{"input0": [1, 3, 7, 7]}')
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("config, reason", [
    ("{", "not JSON"),
    ('{"a": [1, 3, 224, 224], "b": [1]}', "exactly one input"),
    ('{"input0": [1, 224, 224]}', "four positive integers"),
    ('{"input0": [1, 1, 224, 224]}', "3 (NCHW)"),
])
def test_compile_rejects_bad_data_input_config(config, reason):
    from actions.compiler import parse_data_input_config

    with pytest.raises(CompileError, match=None) as info:
        parse_data_input_config(config)
    assert reason in str(info.value)


def test_compile_rejects_a_non_torchscript_pth(tmp_path):
    from actions.compiler import compile_pytorch

    (tmp_path / "model.pth").write_bytes(b"pickled state dict, not TorchScript")
    with tarfile.open(tmp_path / "m.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "model.pth", arcname="model.pth")
    with pytest.raises(CompileError, match="not a TorchScript model"):
        compile_pytorch(tmp_path / "m.tar.gz", tmp_path / "out", data_input_config={"input0": [1, 3, 224, 224]})
