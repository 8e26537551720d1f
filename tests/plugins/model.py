"""Pytest fixtures for the fixture model: built once per machine, cached under .cache/."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def model_root() -> Path:
    """The fixture model's root: model.tar.gz, onnx/, images/."""
    from fixtures.models import ensure_model

    return ensure_model()


@pytest.fixture(scope="session")
def model_dir(model_root: Path) -> Path:
    """The ONNX Runtime artifact directory (model.onnx, model.int8.onnx, labels.txt, manifest.json)."""
    return model_root / "onnx"


@pytest.fixture(scope="session")
def model_tar(model_root: Path) -> Path:
    """The Neo-style PyTorch model.tar.gz (TorchScript model.pth, input0 [1, 3, 224, 224])."""
    return model_root / "model.tar.gz"


@pytest.fixture(scope="session")
def sample_images(model_root: Path) -> dict[str, Path]:
    """Real JPEGs with known labels: chelsea (a cat), coffee (espresso), rocket (missile)."""
    from fixtures.models import sample_images as _samples

    return _samples(model_root)
