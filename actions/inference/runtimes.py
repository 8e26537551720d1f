"""The two runtimes an artifact can need, behind one small interface: `run(tensor) -> logits`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from actions.errors import ModelError


class OnnxRuntime:
    """ONNX Runtime on the CPU."""

    name = "onnxruntime"

    def __init__(self, model_path: Path, input_name: str, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError("onnxruntime is not installed; install it with: pip install 'edge-console[device]'") from None
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.threads = threads
        options.log_severity_level = 3  # warnings from ORT are not the operator's business
        try:
            self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types for bad files
            raise ModelError(f"{model_path} cannot be loaded by ONNX Runtime: {str(exc).splitlines()[0][:160]}") from None
        inputs = [i.name for i in self.session.get_inputs()]
        if input_name not in inputs:
            raise ModelError(f"{model_path} has inputs {inputs}, but the manifest says {input_name!r}")
        self.input_name = input_name
        self.output_name = self.session.get_outputs()[0].name

    def run(self, tensor: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: tensor})[0]


class DlrRuntime:
    """DLR for SageMaker Neo artifacts, with phone-home off before dlr is ever imported."""

    name = "dlr"

    def __init__(self, model_dir: Path, input_name: str | None) -> None:
        from actions.inference.dlr_guard import import_dlr

        dlr = import_dlr()
        try:
            self.model = dlr.DLRModel(str(model_dir), "cpu", 0)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"DLR cannot load the Neo artifact in {model_dir}: {first[:200]}") from None
        names = list(self.model.get_input_names())
        if input_name is None:
            if len(names) != 1:
                raise ModelError(f"the Neo artifact has inputs {names}; name the image input in manifest.json")
            input_name = names[0]
        elif input_name not in names:
            raise ModelError(f"the Neo artifact has inputs {names}, but the manifest says {input_name!r}")
        self.input_name = input_name

    def run(self, tensor: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.run({self.input_name: tensor})[0])


def neo_input(model_dir: Path) -> tuple[str | None, tuple[int, ...] | None]:
    """The input name and shape a Neo artifact declares in compiled.meta, when it does."""
    meta = model_dir / "compiled.meta"
    if not meta.exists():
        return None, None
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{meta} is corrupt ({exc}); re-download the compilation output") from None
    # Neo writes {"Model": {"Inputs": [{"name": ..., "shape": [...], "dtype": ...}], ...}}; tolerate variants.
    inputs = (data.get("Model") or data).get("Inputs") if isinstance(data, dict) else None
    if isinstance(inputs, list) and len(inputs) == 1 and isinstance(inputs[0], dict):
        shape = inputs[0].get("shape")
        return inputs[0].get("name"), tuple(int(v) for v in shape) if shape else None
    return None, None


def default_threads() -> int | None:
    """Threads for ONNX Runtime: EDGE_CLIENT_THREADS when set, else ORT's own choice."""
    value = os.environ.get("EDGE_CLIENT_THREADS")
    return int(value) if value and value.isdigit() and int(value) > 0 else None
