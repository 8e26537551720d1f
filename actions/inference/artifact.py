"""Model artifact directories: what kind they are, their manifest, and checksum verification.

Two kinds are recognised from the files present:
- an ONNX Runtime artifact (ours): `manifest.json`, one or more `.onnx` files, `labels.txt`;
- a SageMaker Neo (DLR) artifact: `compiled.so`, `compiled.params`, `compiled_model.json`, usually
  `compiled.meta`, `manifest`, maybe `libdlr.so`. Neo writes no labels or preprocessing; when our
  packager has put a `manifest.json` beside them it is used, otherwise ImageNet defaults apply.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actions.errors import ModelError

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "edge-console/model-artifact@1"
NEO_REQUIRED = ("compiled.so", "compiled.params", "compiled_model.json")

# ImageNet statistics in pixel units (0..255): what torchvision-style models expect.
IMAGENET_PREPROCESSING = {
    "resize": 256,
    "crop": 224,
    "interpolation": "box",
    "mean": [123.675, 116.28, 103.53],
    "std": [58.395, 57.12, 57.375],
    "color": "RGB",
}


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input tensor (all in pixel units, 0..255).

    The image is decoded to RGB, its shorter side resized to `resize`, center-cropped to `crop` x
    `crop`, then each channel maps to (pixel - mean) / std.
    """

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    interpolation: str = "box"
    color: str = "RGB"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preprocessing":
        try:
            pre = cls(
                resize=int(data["resize"]),
                crop=int(data["crop"]),
                mean=tuple(float(v) for v in data["mean"]),
                std=tuple(float(v) for v in data["std"]),
                interpolation=str(data.get("interpolation", "box")),
                color=str(data.get("color", "RGB")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"manifest preprocessing is invalid ({exc!s}); it needs resize, crop, mean and std") from None
        if len(pre.mean) != 3 or len(pre.std) != 3 or any(s == 0 for s in pre.std):
            raise ModelError("manifest preprocessing needs three means and three non-zero stds")
        if not 0 < pre.crop <= pre.resize:
            raise ModelError(f"manifest preprocessing crop {pre.crop} must be positive and at most resize {pre.resize}")
        if pre.interpolation not in ("box", "bilinear", "bicubic"):
            raise ModelError(f"manifest preprocessing interpolation {pre.interpolation!r} is not box, bilinear or bicubic")
        if pre.color not in ("RGB", "BGR"):
            raise ModelError(f"manifest preprocessing color {pre.color!r} is not RGB or BGR")
        return pre

    def to_dict(self) -> dict[str, Any]:
        return {"resize": self.resize, "crop": self.crop, "interpolation": self.interpolation,
                "mean": list(self.mean), "std": list(self.std), "color": self.color}


@dataclass(frozen=True)
class Manifest:
    """What a model artifact declares about itself."""

    name: str
    version: str
    input_name: str
    input_shape: tuple[int, ...]
    layout: str
    dtype: str
    preprocessing: Preprocessing
    labels_file: str | None
    variants: dict[str, str] = field(default_factory=dict)
    default_variant: str | None = None
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def detect_kind(directory: Path) -> str:
    """Return "onnx" or "neo" for an artifact directory, or raise ModelError saying what is missing."""
    if not directory.exists():
        raise ModelError(f"model directory {directory} does not exist; pass --model with a compiled artifact directory")
    if not directory.is_dir():
        raise ModelError(f"{directory} is a file, not a model directory; pass the directory that holds it")
    present = {p.name for p in directory.iterdir()}
    neo = [f for f in NEO_REQUIRED if f in present]
    if neo:
        missing = [f for f in NEO_REQUIRED if f not in present]
        if missing:
            raise ModelError(f"Neo artifact in {directory} is partial: missing {', '.join(missing)}; re-download the compilation output")
        return "neo"
    if any(name.endswith(".onnx") for name in present):
        return "onnx"
    raise ModelError(f"{directory} holds no model: expected .onnx files or a Neo artifact (compiled.so, compiled.params, compiled_model.json)")


def parse_manifest(data: dict[str, Any], where: Path) -> Manifest:
    """Validate a manifest.json document."""
    try:
        model = data["model"]
        inp = data["input"]
        return Manifest(
            name=str(model["name"]),
            version=str(model["version"]),
            input_name=str(inp["name"]),
            input_shape=tuple(int(v) for v in inp["shape"]),
            layout=str(inp.get("layout", "NCHW")),
            dtype=str(inp.get("dtype", "float32")),
            preprocessing=Preprocessing.from_dict(data["preprocessing"]),
            labels_file=data.get("labels"),
            variants={str(k): str(v) for k, v in (data.get("variants") or {}).items()},
            default_variant=data.get("default_variant"),
            files={str(k): str(v) for k, v in (data.get("files") or {}).items()},
            raw=data,
        )
    except ModelError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{where} is not a valid manifest: missing or bad {exc!s}") from None


def read_manifest(directory: Path) -> Manifest | None:
    """Read `manifest.json` from an artifact directory, or None when there is none."""
    path = directory / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path} is unreadable or not JSON ({exc}); rebuild or re-download the artifact") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path} must hold a JSON object")
    manifest = parse_manifest(data, path)
    if manifest.layout != "NCHW" or len(manifest.input_shape) != 4:
        raise ModelError(f"{path}: only NCHW image inputs of rank 4 are supported, got {manifest.layout} {list(manifest.input_shape)}")
    return manifest


def verify_files(directory: Path, manifest: Manifest, names: list[str] | None = None) -> None:
    """Check the sha256 of each file the manifest lists (or only `names`).

    Raises:
        ModelError: a file is missing or its checksum differs, naming the file.
    """
    for rel, expected in manifest.files.items():
        if names is not None and rel not in names:
            continue
        path = directory / rel
        if not path.is_file():
            raise ModelError(f"{path} is listed in the manifest but missing; the artifact is incomplete")
        actual = sha256_file(path)
        if actual != expected:
            raise ModelError(f"{path} is corrupt: sha256 {actual[:12]}... but the manifest says {expected[:12]}...; re-download the artifact")


def read_labels(path: Path | None, count: int) -> list[str]:
    """Read one label per line; without a file, classes are named `class N`."""
    if path is None or not path.exists():
        return [f"class {i}" for i in range(count)]
    try:
        labels = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read labels {path}: {exc}") from None
    if len(labels) != count:
        raise ModelError(f"{path} has {len(labels)} labels but the model has {count} classes; use the labels file built with the model")
    return labels
