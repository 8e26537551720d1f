"""On-device inference: load a compiled artifact (ONNX Runtime or DLR) and classify images.

    model = load_model(".cache/models/efficientnet-lite0/onnx")
    result = model.classify(open("cat.jpg", "rb").read(), top_k=5, threshold=0.3)
    result.results[0].label  # "tabby, tabby cat"
"""

from actions.inference.artifact import Manifest, Preprocessing, detect_kind, read_manifest
from actions.inference.classifier import Classification, ImageClassifier, Label, load_model, softmax, top_classes

__all__ = [
    "Classification", "ImageClassifier", "Label", "Manifest", "Preprocessing",
    "detect_kind", "load_model", "read_manifest", "softmax", "top_classes",
]
