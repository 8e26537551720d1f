"""The image classifier: an artifact directory loaded with the right runtime, used the same way
by the device agent, `edge-client classify`, the console and the benchmarks."""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from actions.errors import EdgeConsoleError, ImageError, ModelError
from actions.inference import artifact
from actions.inference.preprocess import Preprocessor
from actions.inference.runtimes import DlrRuntime, OnnxRuntime, default_threads, neo_input


@dataclass(frozen=True)
class Label:
    """One class of a classification: its name, its probability (0..1) and its index."""

    label: str
    score: float
    index: int


@dataclass(frozen=True)
class Classification:
    """The top classes of one image, best first, and what each stage cost in milliseconds."""

    results: tuple[Label, ...]
    preprocess_ms: float
    inference_ms: float

    @property
    def top1(self) -> Label | None:
        return self.results[0] if self.results else None


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax of a 1-D array, in float64."""
    z = logits.astype(np.float64).ravel()
    z -= z.max()
    np.exp(z, out=z)
    z /= z.sum()
    return z


def top_classes(probs: np.ndarray, labels: list[str], k: int, threshold: float) -> tuple[Label, ...]:
    """The k most probable classes with probability >= threshold, best first."""
    k = max(0, min(k, probs.size))
    if k == 0:
        return ()
    idx = np.argpartition(probs, -k)[-k:]
    idx = idx[np.argsort(probs[idx])[::-1]]
    return tuple(Label(labels[i], float(probs[i]), int(i)) for i in idx if probs[i] >= threshold)


class ImageClassifier:
    """A loaded model: `classify(image_bytes)` gives the top classes.

    Attributes:
        name, version: from the manifest (a bare Neo artifact is named after its directory).
        runtime: "onnxruntime" or "dlr".
        variant: which model file was loaded ("fp32", "int8", or "neo").
        directory: the artifact directory.
    """

    def __init__(self, directory: Path, engine: Any, manifest: artifact.Manifest, labels: list[str], variant: str,
                 output_kind: str = "logits", threads: int | None = None) -> None:
        self.directory = directory
        self.threads = threads
        self.manifest = manifest
        self.name = manifest.name
        self.version = manifest.version
        self.runtime = engine.name
        self.variant = variant
        self.labels = labels
        self._engine = engine
        self._preprocess = Preprocessor(manifest.preprocessing)
        self._probabilities = output_kind == "probabilities"

    @property
    def workers(self) -> int:
        """Images worth classifying at once: one per core on a single-threaded session, else one."""
        return (os.cpu_count() or 1) if self.threads == 1 else 1

    def preprocess(self, image: Any) -> np.ndarray:
        """Image bytes (or an RGB array) -> the input tensor. Raises ImageError."""
        return self._preprocess(image)

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Input tensor -> class probabilities (1-D)."""
        out = self._engine.run(tensor)
        return out.astype(np.float64).ravel() if self._probabilities else softmax(out)

    def logits(self, tensor: np.ndarray) -> np.ndarray:
        """The model's raw output for a tensor (for comparisons against the source framework)."""
        return np.asarray(self._engine.run(tensor))

    def classify(self, image: Any, top_k: int = 5, threshold: float = 0.3) -> Classification:
        """Classify one image.

        Args:
            image: encoded image bytes (JPEG, PNG, ...) or an HxWx3 uint8 RGB array.
            top_k: at most this many classes.
            threshold: only classes with probability at least this (0..1).

        Raises:
            ImageError: the bytes are not a readable image.
        """
        t0 = time.perf_counter()
        tensor = self._preprocess(image)
        t1 = time.perf_counter()
        probs = self.infer(tensor)
        t2 = time.perf_counter()
        return Classification(top_classes(probs, self.labels, top_k, threshold), (t1 - t0) * 1e3, (t2 - t1) * 1e3)

    def classify_many(self, images: Iterable[Any], top_k: int = 5, threshold: float = 0.3,
                      workers: int | None = None) -> Iterator[Classification | ImageError]:
        """Classify a stream of images, in input order, using every core.

        Decoding, resizing and ONNX Runtime all release the GIL. With a single-threaded session
        (`load_model(..., threads=1)`) `workers` images are in flight at once, each decoded and run
        on its own core: on a small CPU that beats splitting one image's layers across cores. With a
        multi-threaded session the next image is decoded while the current one runs.

        Args:
            images: encoded images (bytes) or RGB arrays; read lazily, at most 2 x workers ahead.
            top_k, threshold: as for `classify`.
            workers: images in flight (default: the CPU count for a single-threaded session, else 1).

        Yields:
            A Classification, or the ImageError of an image that could not be read: one bad image
            never stops the stream.
        """
        if workers is None:
            workers = self.workers

        def one(image: Any) -> Classification | ImageError:
            try:
                t0 = time.perf_counter()
                tensor = self._preprocess(image)
                t1 = time.perf_counter()
                probs = self.infer(tensor)
                t2 = time.perf_counter()
            except ImageError as exc:
                return exc
            return Classification(top_classes(probs, self.labels, top_k, threshold), (t1 - t0) * 1e3, (t2 - t1) * 1e3)

        def prepare(image: Any) -> tuple[np.ndarray | None, float, ImageError | None]:
            t0 = time.perf_counter()
            try:
                return self._preprocess(image), (time.perf_counter() - t0) * 1e3, None
            except ImageError as exc:
                return None, 0.0, exc

        in_flight: deque = deque()
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="classify") as pool:
            if workers > 1:
                for image in images:
                    in_flight.append(pool.submit(one, image))
                    if len(in_flight) >= 2 * workers:
                        yield in_flight.popleft().result()
                while in_flight:
                    yield in_flight.popleft().result()
                return
            for image in images:  # one worker: decode image n+1 while image n runs
                in_flight.append(pool.submit(prepare, image))
                if len(in_flight) > 1:
                    yield self._finish(in_flight.popleft().result(), top_k, threshold)
            while in_flight:
                yield self._finish(in_flight.popleft().result(), top_k, threshold)

    def _finish(self, prepared, k: int, threshold: float) -> Classification | ImageError:
        tensor, pre_ms, error = prepared
        if error is not None:
            return error
        t1 = time.perf_counter()
        probs = self.infer(tensor)
        return Classification(top_classes(probs, self.labels, k, threshold), pre_ms, (time.perf_counter() - t1) * 1e3)

    def __repr__(self) -> str:
        return f"<ImageClassifier {self.name} {self.version} {self.runtime}/{self.variant} from {self.directory}>"



def _load_onnx(directory: Path, variant: str | None, verify: bool, threads: int | None) -> ImageClassifier:
    manifest = artifact.read_manifest(directory)
    if manifest is None:
        raise ModelError(f"{directory} has .onnx files but no manifest.json; compile it with `edge-console compile --local` to get one")
    variants = manifest.variants or {"fp32": "model.onnx"}
    chosen = variant or manifest.default_variant or ("fp32" if "fp32" in variants else next(iter(variants)))
    if chosen not in variants:
        raise ModelError(f"variant {chosen!r} is not in {directory}; it has {', '.join(sorted(variants))}")
    model_file = directory / variants[chosen]
    if not model_file.is_file():
        raise ModelError(f"{model_file} is missing; the artifact is incomplete")
    labels_path = directory / manifest.labels_file if manifest.labels_file else None
    if verify:
        names = [variants[chosen]] + ([manifest.labels_file] if manifest.labels_file else [])
        unlisted = [n for n in names if n not in manifest.files]
        if unlisted:
            raise ModelError(f"the manifest in {directory} has no checksum for {', '.join(unlisted)}; rebuild the artifact")
        artifact.verify_files(directory, manifest, names)
    engine = OnnxRuntime(model_file, manifest.input_name, threads if threads is not None else default_threads())
    classes = engine.session.get_outputs()[0].shape[-1]
    if not isinstance(classes, int):
        classes = int(np.asarray(engine.run(np.zeros(manifest.input_shape, np.float32))).size)
    labels = artifact.read_labels(labels_path, classes)
    output_kind = str((manifest.raw.get("output") or {}).get("kind", "logits"))
    return ImageClassifier(directory, engine, manifest, labels, chosen, output_kind, engine.threads)


def _load_neo(directory: Path, verify: bool) -> ImageClassifier:
    manifest = artifact.read_manifest(directory)
    meta_name, meta_shape = neo_input(directory)
    if manifest is None:
        shape = meta_shape or (1, 3, 224, 224)
        manifest = artifact.Manifest(
            name=directory.name, version="unknown", input_name=meta_name or "", input_shape=tuple(shape),
            layout="NCHW", dtype="float32",
            preprocessing=artifact.Preprocessing.from_dict(artifact.IMAGENET_PREPROCESSING),
            labels_file=next((n for n in ("labels.txt", "synset.txt") if (directory / n).exists()), None),
        )
    elif verify:
        artifact.verify_files(directory, manifest)
    engine = DlrRuntime(directory, manifest.input_name or None)
    classes = int(engine.run(np.zeros(manifest.input_shape, np.float32)).size)
    labels_path = directory / manifest.labels_file if manifest.labels_file else None
    labels = artifact.read_labels(labels_path, classes)
    output_kind = str((manifest.raw.get("output") or {}).get("kind", "logits"))
    return ImageClassifier(directory, engine, manifest, labels, "neo", output_kind)


def load_model(path: str | Path, variant: str | None = None, *, verify: bool = True,
               threads: int | None = None) -> ImageClassifier:
    """Load a compiled model artifact, choosing the runtime from what the directory holds.

    Args:
        path: the artifact directory (ONNX Runtime artifact with manifest.json, or a Neo output).
        variant: "fp32" or "int8" for an ONNX artifact; None takes the manifest's default.
        verify: check each file's sha256 against the manifest before loading.
        threads: ONNX Runtime intra-op threads (None: EDGE_CLIENT_THREADS or ORT's default, every
            core on one image). For a stream of images use 1, and `classify_many` runs one image per
            core, which gives more images per second on small CPUs.

    Raises:
        ModelError: missing, partial or corrupt artifact, with one line saying which and what to do.
    """
    directory = Path(path).expanduser()
    kind = artifact.detect_kind(directory)
    try:
        if kind == "neo":
            return _load_neo(directory, verify)
        return _load_onnx(directory, variant, verify, threads)
    except EdgeConsoleError:
        raise
    except OSError as exc:
        raise ModelError(f"cannot read the model in {directory}: {exc.strerror or exc}") from None
