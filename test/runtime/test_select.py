"""Backend selection and fallback with real failures (corrupt model file, out-of-profile batch)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from perception.runtime.base import BackendError
from perception.runtime.onnx_backend import OnnxRuntimeBackend, resolve_providers
from perception.runtime.select import ModelSource, RuntimeConfig, backend_chain, build_backend
from perception.runtime.torch_backend import TorchBackend
from perception.weights import weights_path

H, W = 256, 448


def _inputs(backend: object, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"image": rng.random((batch, 3, H, W), dtype=np.float32), **backend.initial_state(batch)}  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def source() -> ModelSource:
    return ModelSource(checkpoint=weights_path("stan_s_temporal"))


def test_auto_on_cpu_runs_onnxruntime_and_matches_torch(source: ModelSource, tmp_path: Path,
                                                        shipped_onnx: Callable[[str], Path]) -> None:
    cfg = RuntimeConfig(backend="auto", onnx=str(shipped_onnx("stan_s_temporal")), cache_dir=str(tmp_path))
    assert backend_chain(source, cfg) == ["onnxruntime", "torch"]  # no CUDA here: tensorrt is not a candidate
    with build_backend(source, cfg) as b, TorchBackend(source.checkpoint, (H, W)) as t:  # type: ignore[arg-type]
        assert b.active_name == "onnxruntime" and b.status()["backend.fallbacks"] == "0"
        assert b.state_pairs == t.state_pairs == {"memory": "memory_next", "memory_valid": "memory_valid_next"}
        x = _inputs(b)
        got, ref = b.infer(x), t.infer(x)
        assert set(got) == set(ref)
        for k in ref:
            np.testing.assert_allclose(got[k], ref[k], atol=1e-4)


def test_a_bare_checkpoint_runs_on_torch_and_onnx_backends_say_how_to_get_a_model(
        source: ModelSource, tmp_path: Path) -> None:
    """The runtime runs files, it never makes them: without an ONNX model or an artifact maker (the deploy
    layer's on-demand export) auto picks torch, and a requested ONNX backend falls back, saying what to run."""
    assert source.artifacts is None
    assert backend_chain(source, RuntimeConfig(backend="auto")) == ["torch"]
    with build_backend(source, RuntimeConfig(backend="onnxruntime", cache_dir=str(tmp_path))) as b:
        assert b.active_name == "torch"
        assert b.events[0].backend == "onnxruntime" and "perception export" in b.events[0].error
    assert not (tmp_path / "onnx").exists()  # nothing was exported


def test_requested_tensorrt_without_gpu_falls_back_and_says_why(source: ModelSource, tmp_path: Path,
                                                                 shipped_onnx: Callable[[str], Path]) -> None:
    cfg = RuntimeConfig(backend="tensorrt", onnx=str(shipped_onnx("stan_s_temporal")), cache_dir=str(tmp_path))
    with build_backend(source, cfg) as b:
        assert b.chain == ["tensorrt", "onnxruntime", "torch"] and b.active_name == "onnxruntime"
        assert [(e.backend, e.phase) for e in b.events] == [("tensorrt", "load")]
        status = b.status()
        assert status["backend.fallbacks"] == "1" and "tensorrt load" in status["backend.last_error"]


def test_corrupt_onnx_file_falls_back_to_torch(source: ModelSource, tmp_path: Path,
                                               shipped_onnx: Callable[[str], Path]) -> None:
    good = shipped_onnx("stan_s_temporal").read_bytes()
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(good[: len(good) // 3])  # a truncated copy, as after a failed deployment
    cfg = RuntimeConfig(backend="onnxruntime", onnx=str(corrupt), cache_dir=str(tmp_path))
    with build_backend(source, cfg) as b:
        assert b.active_name == "torch"
        assert b.events[0].backend == "onnxruntime" and "corrupt.onnx" in b.events[0].error
        out = b.infer(_inputs(b))
        assert out["heatmap"].shape == (1, 5, H // 8, W // 8)
    with pytest.raises(BackendError, match="no backend could run"):
        build_backend(source, RuntimeConfig(backend="onnxruntime", onnx=str(corrupt), fallback=False))


def test_fault_while_running_reruns_the_frame_on_the_next_backend(source: ModelSource, tmp_path: Path,
                                                                  shipped_onnx: Callable[[str], Path]) -> None:
    """The ONNX model takes batches of 1..4; a batch of 6 faults in onnxruntime, torch takes over mid-stream
    with the same state and produces the frame's outputs."""
    cfg = RuntimeConfig(backend="onnxruntime", onnx=str(shipped_onnx("stan_s_temporal")), cache_dir=str(tmp_path))
    with build_backend(source, cfg) as b, TorchBackend(source.checkpoint, (H, W)) as t:  # type: ignore[arg-type]
        x = _inputs(b, batch=1, seed=1)
        first = b.infer(x)
        state = {k: first[o] for k, o in b.state_pairs.items()}
        big = {"image": np.repeat(x["image"], 6, axis=0), **{k: np.repeat(v, 6, axis=0) for k, v in state.items()}}
        got = b.infer(big)
        assert b.active_name == "torch" and [(e.backend, e.phase) for e in b.events] == [("onnxruntime", "infer")]
        ref = t.infer(big)
        for k in ref:
            np.testing.assert_allclose(got[k], ref[k], atol=1e-5)


def test_untrained_network_runs_on_torch_only() -> None:
    from perception.models.registry import build_model

    src = ModelSource(module_factory=lambda: build_model("stan_tiny"), input_size=(64, 128))
    assert backend_chain(src, RuntimeConfig()) == ["torch"]
    with build_backend(src, RuntimeConfig()) as b:
        assert b.active_name == "torch" and not b.events


def test_config_and_provider_errors_are_clear() -> None:
    with pytest.raises(BackendError, match="backend must be one of"):
        RuntimeConfig(backend="caffe")
    with pytest.raises(BackendError, match="precision"):
        RuntimeConfig(precision="int4")
    assert resolve_providers(("auto",), ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(BackendError, match="onnxruntime-gpu"):
        resolve_providers(("cuda",), ["CPUExecutionProvider"])
    with pytest.raises(BackendError, match="unknown execution provider"):
        resolve_providers(("tpu",), ["CPUExecutionProvider"])
    with pytest.raises(BackendError, match="before load"):
        OnnxRuntimeBackend("x.onnx").input_specs  # noqa: B018


def test_tensorrt_backend_checks_for_cuda_before_touching_tensorrt(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: covered by test_tensorrt_backend_on_gpu")
    from perception.runtime.tensorrt_backend import TensorRTBackend

    with pytest.raises(BackendError, match="no CUDA device"):
        TensorRTBackend(tmp_path / "model.onnx").load()


def test_a_replacement_with_other_inputs_is_refused(tmp_path: Path) -> None:
    """An ONNX model exported at another size cannot be replaced mid-stream by the checkpoint's torch network:
    the pipeline letterboxes to the first backend's size and holds state of its shapes."""
    from perception.deploy.export import ExportConfig, export_checkpoint

    small = tmp_path / "small.onnx"
    export_checkpoint(weights_path("stan_s_temporal"), small, ExportConfig(input_size=(128, 224), max_batch=1))
    src = ModelSource(checkpoint=weights_path("stan_s_temporal"))  # torch would run 256x448
    with build_backend(src, RuntimeConfig(backend="onnxruntime", onnx=str(small), cache_dir=str(tmp_path))) as b:
        assert b.active_name == "onnxruntime"
        two = {"image": np.zeros((2, 3, 128, 224), np.float32), **b.initial_state(2)}
        with pytest.raises(BackendError, match="no backend could run"):
            b.infer(two)  # batch 2 > 1 faults onnxruntime; torch is refused: other input size
        assert [(e.backend, e.phase) for e in b.events] == [("onnxruntime", "infer"), ("torch", "load")]
        assert "export model.onnx at the checkpoint's input size" in b.events[-1].error
