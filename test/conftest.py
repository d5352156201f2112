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
            from perception.deploy.export import export_checkpoint
            from perception.weights import weights_path

            path = root / f"{name}.onnx"
            export_checkpoint(weights_path(name), path, max_batch=4)
            cache[name] = path
        return cache[name]

    return get
