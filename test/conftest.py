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
def model_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``model_checkpoint(name)``: the shipped checkpoint ``name``, or for a registered network that
    ships none (e.g. ``stan_lite0_temporal``) the network as built — pretrained trunk where it has
    one, seeded random heads — saved once per session as a checkpoint trained "at" 256x448."""
    cache: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("checkpoints")

    def get(name: str) -> Path:
        if name not in cache:
            from perception.weights import shipped_checkpoints, weights_path

            if name in shipped_checkpoints():
                cache[name] = weights_path(name)
            else:
                import torch

                from perception.models.checkpoint import save_checkpoint
                from perception.models.registry import build_model

                torch.manual_seed(0)
                model = build_model(name).eval()
                save_checkpoint(root / name, model, name, model.cfg, {"input_size": [256, 448]})
                cache[name] = root / name
        return cache[name]

    return get


@pytest.fixture(scope="session")
def model_onnx(tmp_path_factory: pytest.TempPathFactory,
               model_checkpoint: Callable[[str], Path]) -> Callable[[str], Path]:
    """``model_onnx(name)``: :func:`model_checkpoint` ``name`` exported to ONNX once per session (fp32,
    batch 1..4, the training size)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    cache: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("onnx")

    def get(name: str) -> Path:
        if name not in cache:
            from perception.deploy.export import export_checkpoint

            path = root / f"{name}.onnx"
            export_checkpoint(model_checkpoint(name), path, max_batch=4)
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


@pytest.fixture(scope="session")
def shipped_onnx(model_onnx: Callable[[str], Path]) -> Callable[[str], Path]:
    """``shipped_onnx(name)``: the shipped checkpoint ``name`` exported to ONNX once per session (fp32,
    batch 1..4, the training size)."""

    def get(name: str) -> Path:
        from perception.weights import shipped_checkpoints

        assert name in shipped_checkpoints(), f"{name} is not a shipped checkpoint; use model_onnx"
        return model_onnx(name)

    return get


@pytest.fixture(scope="session")
def int8_onnx(model_onnx: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``int8_onnx(name)``: :func:`model_onnx` ``name`` quantised to an INT8 QDQ model (s8, the
    TensorRT-compatible form), calibrated on 2 synthetic drives x 4 frames, once per session."""
    cache: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("int8")

    def get(name: str) -> Path:
        if name not in cache:
            from perception.deploy.quantize import (
                QuantizeConfig,
                calibration_inputs,
                quantize_int8,
                synthetic_calibration_drives,
            )

            fp32 = model_onnx(name)
            cfg = QuantizeConfig(calibration_seeds=(900, 901), frames_per_seed=4)
            out = root / f"{name}-int8.onnx"
            quantize_int8(fp32, out, calibration_inputs(fp32, synthetic_calibration_drives(cfg, (256, 448))), cfg)
            cache[name] = out
        return cache[name]

    return get
