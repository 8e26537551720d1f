"""On-device inference on the real fixture model and real photos."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from actions.errors import ImageError, ModelError
from actions.inference import load_model

CATS = {"tabby, tabby cat", "tiger cat", "Persian cat", "Siamese cat, Siamese", "Egyptian cat"}


@pytest.fixture(scope="module", params=["fp32", "int8"])
def model(request, model_dir):
    return load_model(model_dir, request.param)


def test_artifact_loads_with_onnx_runtime(model):
    assert model.runtime == "onnxruntime"
    assert (model.name, model.version) == ("efficientnet-lite0", "1.0.0")
    assert len(model.labels) == 1000 and model.labels[285] == "Egyptian cat"


def test_sample_photos_get_their_labels(model, sample_images):
    top = {name: model.classify(path.read_bytes(), top_k=5, threshold=0.0).results for name, path in sample_images.items()}
    assert top["chelsea"][0].label in CATS
    assert top["coffee"][0].label == "espresso"
    assert "missile" in [r.label for r in top["rocket"][:2]]
    for results in top.values():
        scores = [r.score for r in results]
        assert len(results) == 5 and scores == sorted(scores, reverse=True) and 0.0 < scores[0] <= 1.0


def test_threshold_and_top_k_filter_results(model, sample_images):
    data = sample_images["coffee"].read_bytes()
    assert [r.label for r in model.classify(data, top_k=5, threshold=0.5).results] == ["espresso"]
    assert len(model.classify(data, top_k=2, threshold=0.0).results) == 2
    assert model.classify(data, top_k=5, threshold=0.999).results == ()


def test_onnx_logits_match_pytorch_within_1e_3(model_dir, model_tar, sample_images, tmp_path):
    torch = pytest.importorskip("torch")
    with tarfile.open(model_tar) as tar:
        tar.extract("model.pth", tmp_path, filter="data")
    reference = torch.jit.load(str(tmp_path / "model.pth")).eval()
    fp32 = load_model(model_dir, "fp32")
    for path in sample_images.values():
        tensor = fp32.preprocess(path.read_bytes())
        with torch.no_grad():
            expected = reference(torch.from_numpy(tensor)).numpy()
        assert np.max(np.abs(fp32.logits(tensor) - expected)) < 1e-3


def test_int8_agrees_with_fp32_on_top1(model_dir, sample_images):
    fp32, int8 = load_model(model_dir, "fp32"), load_model(model_dir, "int8")
    for path in sample_images.values():
        data = path.read_bytes()
        assert int8.classify(data, 1, 0.0).top1.label == fp32.classify(data, 1, 0.0).top1.label


def test_preprocessing_follows_the_manifest(model_dir, sample_images):
    """Against a plain reference: full decode, resize shorter side to 256, centre crop 224, (p-127)/128."""
    from PIL import Image

    model = load_model(model_dir, "fp32")
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["preprocessing"]["mean"] == [127.0] * 3 and manifest["preprocessing"]["std"] == [128.0] * 3
    img = Image.open(sample_images["coffee"]).convert("RGB")
    w, h = img.size
    s = 256 / min(w, h)
    img = img.resize((round(w * s), round(h * s)), Image.Resampling.BOX)
    left, top = (img.width - 224) // 2, (img.height - 224) // 2
    ref = (np.asarray(img.crop((left, top, left + 224, top + 224)), np.float32) - 127) / 128
    ours = model.preprocess(sample_images["coffee"].read_bytes())
    assert ours.shape == (1, 3, 224, 224) and ours.dtype == np.float32
    # Sub-pixel differences from resizing and cropping in one step; the images must be the same.
    assert np.mean(np.abs(ours[0].transpose(1, 2, 0) - ref)) < 0.03


def test_arrays_and_png_work_like_jpeg(model, sample_images):
    from PIL import Image

    rgb = np.asarray(Image.open(sample_images["coffee"]).convert("RGB"))
    png = io.BytesIO()
    Image.fromarray(rgb).save(png, "PNG")
    assert model.classify(rgb, 1, 0.0).top1.label == "espresso"
    assert model.classify(png.getvalue(), 1, 0.0).top1.label == "espresso"



@pytest.mark.parametrize("mode, fmt", [("L", "JPEG"), ("CMYK", "JPEG"), ("P", "PNG"), ("RGBA", "PNG")])
def test_other_colour_modes_are_converted_to_rgb_first(model, sample_images, mode, fmt):
    """Grey, CMYK, palette and RGBA files give exactly the tensor of their RGB conversion."""
    from PIL import Image

    encoded = io.BytesIO()
    Image.open(sample_images["coffee"]).convert(mode).save(encoded, fmt)
    rgb = np.asarray(Image.open(io.BytesIO(encoded.getvalue())).convert("RGB"))
    ours = model.preprocess(encoded.getvalue())
    assert ours.shape == (1, 3, 224, 224)
    np.testing.assert_array_equal(ours, model.preprocess(rgb))

@pytest.mark.parametrize("data, reason", [
    (b"", "unrecognised"),
    (b"GIF89a not really", "unrecognised"),
    ("truncated", "truncated or corrupt"),
])
def test_bad_images_raise_image_error(model, sample_images, data, reason):
    if data == "truncated":
        data = sample_images["chelsea"].read_bytes()[:5000]
    with pytest.raises(ImageError, match=reason):
        model.classify(data)


def test_classify_many_keeps_order_and_survives_a_bad_image(model, sample_images):
    images = [sample_images["coffee"].read_bytes(), b"junk", sample_images["chelsea"].read_bytes()]
    out = list(model.classify_many(images, 1, 0.0))
    assert out[0].top1.label == "espresso"
    assert isinstance(out[1], ImageError)
    assert out[2].top1.label in CATS


# --- broken artifacts: each gives one line that names what is wrong --------------------------------

@pytest.fixture
def artifact_copy(model_dir, tmp_path) -> Path:
    target = tmp_path / "artifact"
    shutil.copytree(model_dir, target)
    return target


def _one_line_error(path, variant=None) -> str:
    with pytest.raises(ModelError) as info:
        load_model(path, variant)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_corrupt_model_file_is_caught_by_checksum(artifact_copy):
    with open(artifact_copy / "model.onnx", "r+b") as fh:
        fh.seek(4096)
        fh.write(b"\x00" * 16)
    assert "model.onnx is corrupt" in _one_line_error(artifact_copy, "fp32")


def test_missing_model_file(artifact_copy):
    (artifact_copy / "model.int8.onnx").unlink()
    assert "missing" in _one_line_error(artifact_copy, "int8")


def test_missing_manifest(artifact_copy):
    (artifact_copy / "manifest.json").unlink()
    assert "no manifest.json" in _one_line_error(artifact_copy)


def test_corrupt_manifest(artifact_copy):
    (artifact_copy / "manifest.json").write_text("{\"model\": ")
    assert "not JSON" in _one_line_error(artifact_copy)


def test_unknown_variant(artifact_copy):
    assert "variant 'fp16'" in _one_line_error(artifact_copy, "fp16")


def test_labels_do_not_match(artifact_copy):
    manifest = json.loads((artifact_copy / "manifest.json").read_text())
    (artifact_copy / "labels.txt").write_text("cat\ndog\n")
    manifest["files"]["labels.txt"] = __import__("hashlib").sha256(b"cat\ndog\n").hexdigest()
    (artifact_copy / "manifest.json").write_text(json.dumps(manifest))
    assert "2 labels but the model has 1000" in _one_line_error(artifact_copy, "fp32")


def test_missing_directory_and_empty_directory(tmp_path):
    assert "does not exist" in _one_line_error(tmp_path / "nope")
    assert "holds no model" in _one_line_error(tmp_path)


def test_partial_neo_artifact_names_the_missing_files(tmp_path):
    (tmp_path / "compiled.so").write_bytes(b"\x7fELF")
    (tmp_path / "compiled.params").write_bytes(b"")
    text = _one_line_error(tmp_path)
    assert "partial" in text and "compiled_model.json" in text


def test_classify_many_with_one_image_per_core_keeps_order(model_dir, sample_images):
    model = load_model(model_dir, "fp32", threads=1)
    good = [sample_images["coffee"].read_bytes(), sample_images["chelsea"].read_bytes()]
    stream = (good[i % 2] if i != 5 else b"junk" for i in range(12))
    out = list(model.classify_many(stream, 1, 0.0, workers=3))
    assert len(out) == 12 and isinstance(out[5], ImageError)
    labels = [r.top1.label for i, r in enumerate(out) if i != 5]
    assert labels[0::2][:3] == ["espresso"] * 3
    assert all(label in CATS for j, label in enumerate(labels) if (j if j < 5 else j + 1) % 2 == 1)
