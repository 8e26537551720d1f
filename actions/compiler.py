"""The local compiler: a SageMaker-Neo-style PyTorch `model.tar.gz` -> an ONNX Runtime artifact.

It is what the sandbox's Neo runs and what `edge-console compile --local` runs for operators who
skip Neo. Input: the layout Neo takes for PyTorch, a gzipped tar with a TorchScript `model.pth` at
its root, and the `DataInputConfig` (`{"input0": [1, 3, 224, 224]}`). The tar may also carry
`labels.txt` (one class name a line) and `preprocessing.json` (resize, crop, mean, std in pixel
units); Neo ignores them, we put them in the manifest.

Output: a directory with `model.onnx` (fp32), `model.int8.onnx` when calibration images are given
(static quantization, QDQ, per-channel weights), `labels.txt` and `manifest.json` (name, version,
input, preprocessing, the sha256 of every file). The directory appears whole or not at all.

torch, onnx and onnxruntime.quantization are imported inside the functions: the console and the
devices import this module without paying for them.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from actions.errors import CompileError
from actions.files import check_artifact_target, replace_dir
from actions.inference.artifact import (
    IMAGENET_PREPROCESSING, MANIFEST, MANIFEST_FORMAT, Preprocessing, sha256_file,
)

OPSET = 17
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
LABELS_FILE = "labels.txt"
PARITY_TOLERANCE = 1e-3  # max |logit difference| between the TorchScript model and its ONNX export
# int8 becomes the default variant when its top-1 agrees with fp32 on at least this share of the
# calibration images (some of which, like textures, have no clear top class to agree on).
INT8_MIN_AGREEMENT = 0.9


def parse_data_input_config(config: str | dict[str, Any]) -> tuple[str, tuple[int, ...]]:
    """Validate Neo's DataInputConfig for an image classifier: one input, NCHW, 3 channels.

    Raises:
        CompileError: says what is wrong and shows the expected form.
    """
    example = '{"input0": [1, 3, 224, 224]}'
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError:
            raise CompileError(f"DataInputConfig is not JSON; expected something like {example}") from None
    if not isinstance(config, dict) or len(config) != 1:
        raise CompileError(f"DataInputConfig must name exactly one input, like {example}")
    (name, shape), = config.items()
    if not isinstance(shape, list) or len(shape) != 4 or not all(isinstance(v, int) and v > 0 for v in shape):
        raise CompileError(f"DataInputConfig shape for {name!r} must be four positive integers [N, C, H, W], like {example}")
    if shape[1] != 3:
        raise CompileError(f"DataInputConfig shape {shape} has {shape[1]} channels; an RGB image classifier takes 3 (NCHW)")
    return str(name), tuple(shape)


def _extract(model_tar_gz: Path, into: Path) -> None:
    if not model_tar_gz.is_file():
        raise CompileError(f"{model_tar_gz} does not exist; give the path of the model.tar.gz to compile")
    try:
        with tarfile.open(model_tar_gz, "r:*") as tar:
            tar.extractall(into, filter="data")  # refuses absolute paths, .. and device files
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise CompileError(f"{model_tar_gz.name} is not a readable tar.gz ({exc}); package the model with tar -czf model.tar.gz model.pth") from None


def _load_torchscript(path: Path):
    import torch

    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception:
        raise CompileError(
            "model.pth is not a TorchScript model; save it with torch.jit.save(torch.jit.trace(model, example), 'model.pth')"
        ) from None


def _read_extras(root: Path, classes: int) -> tuple[list[str] | None, dict[str, Any] | None]:
    labels = None
    if (root / LABELS_FILE).is_file():
        labels = (root / LABELS_FILE).read_text(encoding="utf-8").splitlines()
        if len(labels) != classes:
            raise CompileError(f"labels.txt in the tar has {len(labels)} lines but the model has {classes} classes")
    pre = None
    if (root / "preprocessing.json").is_file():
        try:
            pre = json.loads((root / "preprocessing.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise CompileError(f"preprocessing.json in the tar is not JSON ({exc.msg})") from None
    return labels, pre


def compile_pytorch(model_tar_gz: str | Path, out_dir: str | Path, *,
                    data_input_config: str | dict[str, Any],
                    model_name: str | None = None, model_version: str = "1.0.0",
                    calibration_images: Iterable[Any] | None = None,
                    preprocessing: dict[str, Any] | None = None,
                    progress: Callable[[str], None] | None = None) -> Path:
    """Compile a Neo-style PyTorch model.tar.gz into an ONNX Runtime artifact directory.

    Args:
        model_tar_gz: the gzipped tar with a TorchScript `model.pth` at its root.
        out_dir: the artifact directory to write (replaced whole if it is one already; any other
            existing non-empty directory is refused with ConfigError).
        data_input_config: Neo's DataInputConfig, a JSON string or dict: `{"input0": [1, 3, 224, 224]}`.
        model_name: the name in the manifest (default: the tar's name without extensions).
        model_version: the version in the manifest.
        calibration_images: encoded images (bytes) or HxWx3 uint8 arrays; when given, an int8
            model is built with static quantization calibrated on them.
        preprocessing: overrides the tar's preprocessing.json (resize, crop, mean, std in pixels).
        progress: called with a short text at each stage.

    Returns:
        out_dir.

    Raises:
        CompileError: the reason, in words a person can act on.
    """
    say = progress or (lambda _msg: None)
    model_tar_gz, out_dir = Path(model_tar_gz), Path(out_dir)
    input_name, shape = parse_data_input_config(data_input_config)
    try:
        import torch
    except ImportError:
        raise CompileError("local compilation needs torch and onnx: pip install 'edge-console[compile]'") from None

    check_artifact_target(out_dir)  # before any work: never replace a directory that is not ours
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".compile-", dir=out_dir.parent) as tmp:
        tmp = Path(tmp)
        src, build = tmp / "src", tmp / "artifact"
        src.mkdir()
        build.mkdir()
        say("extracting")
        _extract(model_tar_gz, src)
        if not (src / "model.pth").is_file():
            found = ", ".join(sorted(p.name for p in src.iterdir())[:6]) or "nothing"
            raise CompileError(f"{model_tar_gz.name} has no model.pth at its root (found {found}); Neo's PyTorch layout needs it there")
        model = _load_torchscript(src / "model.pth")

        say("checking the input shape")
        example = torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
        try:
            with torch.no_grad():
                reference = model(example)
        except Exception as exc:
            first = str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else type(exc).__name__
            raise CompileError(f"the model does not accept {input_name} of shape {list(shape)} ({first}); fix DataInputConfig") from None
        if not isinstance(reference, torch.Tensor) or reference.dim() != 2 or reference.shape[0] != shape[0]:
            raise CompileError(f"the model's output has shape {list(getattr(reference, 'shape', []))}; an image classifier returns [N, classes]")
        classes = int(reference.shape[1])
        labels, tar_pre = _read_extras(src, classes)
        pre_dict = preprocessing or tar_pre or dict(IMAGENET_PREPROCESSING, crop=shape[2], resize=round(shape[2] / 0.875))
        try:
            pre = Preprocessing.from_dict(pre_dict)
        except Exception as exc:  # ModelError from the validator: same words, compile context
            raise CompileError(f"preprocessing is invalid: {exc}") from None
        if pre.crop != shape[2] or shape[2] != shape[3]:
            raise CompileError(f"preprocessing crops {pre.crop}x{pre.crop} but DataInputConfig says {shape[2]}x{shape[3]}")

        say("exporting to ONNX")
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter warns about constant folding of Slice
            try:
                torch.onnx.export(model, (example,), str(build / FP32_FILE), input_names=[input_name],
                                  output_names=["output0"], opset_version=OPSET, dynamo=False)
            except Exception as exc:
                raise CompileError(f"ONNX export failed: {str(exc).strip().splitlines()[0][:200]}") from None

        say("checking ONNX against PyTorch")
        import onnxruntime as ort

        session = ort.InferenceSession(str(build / FP32_FILE), providers=["CPUExecutionProvider"])
        got = session.run(None, {input_name: example.numpy()})[0]
        diff = float(np.max(np.abs(got - reference.numpy())))
        if diff > PARITY_TOLERANCE:
            raise CompileError(f"the ONNX model differs from PyTorch by {diff:.2e} (> {PARITY_TOLERANCE}); the model uses an operator the exporter mishandles")

        variants = {"fp32": FP32_FILE}
        int8_agreement = None
        if calibration_images is not None:
            say("quantizing to int8")
            int8_agreement = _quantize(build, input_name, pre, list(calibration_images), session)
            variants["int8"] = INT8_FILE

        if labels is not None:
            (build / LABELS_FILE).write_text("\n".join(labels) + "\n", encoding="utf-8")
        files = {p.name: sha256_file(p) for p in sorted(build.iterdir()) if p.is_file()}
        manifest = {
            "format": MANIFEST_FORMAT,
            "model": {"name": model_name or model_tar_gz.name.split(".")[0], "version": model_version},
            "input": {"name": input_name, "shape": list(shape), "layout": "NCHW", "dtype": "float32"},
            "output": {"name": "output0", "kind": "logits", "classes": classes},
            "preprocessing": pre.to_dict(),
            "labels": LABELS_FILE if labels is not None else None,
            "variants": variants,
            "default_variant": "int8" if (int8_agreement or 0.0) >= INT8_MIN_AGREEMENT else "fp32",
            "int8_top1_agreement": int8_agreement,
            "files": files,
            "compiler": {"torch": torch.__version__, "onnxruntime": ort.__version__, "opset": OPSET},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (build / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        say("writing the artifact")
        _replace_dir(build, out_dir)
    return out_dir


def _quantize(build: Path, input_name: str, pre: Preprocessing, images: list[Any], fp32_session) -> float:
    """Static int8 quantization calibrated on `images`; returns top-1 agreement with fp32 on them."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from actions.inference.preprocess import Preprocessor

    if not images:
        raise CompileError("int8 quantization needs at least one calibration image")
    prep = Preprocessor(pre)
    tensors = [prep(img) for img in images]
    # Mirror images double the calibration set for free and cover both orientations of the scene.
    calibration = tensors + [np.ascontiguousarray(t[..., ::-1]) for t in tensors]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calibration)

        def get_next(self):
            t = next(self._it, None)
            return None if t is None else {input_name: t}

    prepared = build / "model.prep.onnx"
    quant_pre_process(str(build / FP32_FILE), str(prepared))
    try:
        quantize_static(str(prepared), str(build / INT8_FILE), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        prepared.unlink(missing_ok=True)
    import onnxruntime as ort

    int8 = ort.InferenceSession(str(build / INT8_FILE), providers=["CPUExecutionProvider"])
    agree = sum(
        int(np.argmax(int8.run(None, {input_name: t})[0])) == int(np.argmax(fp32_session.run(None, {input_name: t})[0]))
        for t in tensors
    )
    return agree / len(tensors)


def _replace_dir(new: Path, target: Path) -> None:
    """Put `new` at `target` so that readers see the old directory or the new one, never half of one.

    Refuses (ConfigError) a `target` that exists and is not a model artifact or an empty directory.
    """
    replace_dir(new, target)
