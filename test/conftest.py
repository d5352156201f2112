"""Session-wide test settings shared by every test package."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def perception_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """On-demand ONNX exports and engines go to a session temp dir (inherited by node subprocesses),
    never into the user's ~/.cache/perception."""
    path = tmp_path_factory.mktemp("perception_cache")
    old = os.environ.get("PERCEPTION_CACHE")
    os.environ["PERCEPTION_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("PERCEPTION_CACHE", None)
    else:
        os.environ["PERCEPTION_CACHE"] = old


@pytest.fixture(scope="session")
def shipped_onnx(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``shipped_onnx(name)``: the shipped checkpoint ``name`` exported to ONNX once per session (fp32,
    batch 1..4, the training size)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    cache: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("onnx")

    def get(name: str) -> Path:
        if name not in cache:
            from perception.models.export import export_checkpoint
            from perception.weights import weights_path

            path = root / f"{name}.onnx"
            export_checkpoint(weights_path(name), path, max_batch=4)
            cache[name] = path
        return cache[name]

    return get


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained stan_tiny_temporal checkpoint (64x128 input), saved once per session."""
    import torch

    from perception.models.checkpoint import save_checkpoint
    from perception.models.registry import build_model, model_config

    torch.manual_seed(0)
    stem = tmp_path_factory.mktemp("ckpt") / "tiny"
    name = "stan_tiny_temporal"
    save_checkpoint(stem, build_model(name), name, model_config(name), {"input_size": [64, 128]})
    return stem


@pytest.fixture(scope="session")
def vtest() -> Path:
    """OpenCV's vtest.avi (real footage, 795 frames 768x576), fetched by scripts/get_real_data.sh (make test does)."""
    from perception.footage import GET_DATA, vtest_path

    path = vtest_path()
    if not path.is_file():
        pytest.skip(f"real footage {path} absent: run `{GET_DATA}` (make test does)")
    return path


@pytest.fixture(scope="session")
def reference_model() -> Path:
    """The evaluation-only reference detector's folder, fetched by scripts/get_real_data.sh (make test does)."""
    from perception.footage import FootageError
    from perception.footage.reference import find_reference_model

    try:
        return find_reference_model()
    except FootageError as e:
        pytest.skip(str(e))
