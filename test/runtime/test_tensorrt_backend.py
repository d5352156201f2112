"""TensorRT backend on a GPU: the engine (built on first use by the deploy layer's builder) matches ONNX
Runtime, with and without CUDA graphs. Skips without TensorRT and a CUDA device."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from perception.runtime.tensorrt_engine import EngineConfig


def _gpu_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
        import torch

        return bool(torch.cuda.is_available())
    except (ImportError, OSError):
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_tensorrt(), reason="needs TensorRT and a CUDA device")
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_tensorrt_backend_on_gpu(cuda_graph: bool, shipped_onnx: Callable[[str], Path], tmp_path: Path) -> None:
    from perception.deploy.ondemand import OnDemand
    from perception.runtime.base import BackendError
    from perception.runtime.onnx_backend import OnnxRuntimeBackend
    from perception.runtime.tensorrt_backend import TensorRTBackend, TensorRTConfig

    onnx_path = shipped_onnx("stan_s_temporal")
    engine = EngineConfig(precision="fp32", cache_dir=str(tmp_path))
    with pytest.raises(BackendError, match=r"no cached engine.*perception build-engine"):
        TensorRTBackend(onnx_path, TensorRTConfig(engine=engine)).load()  # the runtime alone builds nothing
    cfg = TensorRTConfig(engine=engine, cuda_graph=cuda_graph, builder=OnDemand().build_engine)
    with TensorRTBackend(onnx_path, cfg) as trt_b, OnnxRuntimeBackend(onnx_path) as ort_b:
        x = {"image": np.random.default_rng(0).random((2, 3, 256, 448), dtype=np.float32), **ort_b.initial_state(2)}
        for _ in range(3):
            a, b = trt_b.infer(x), ort_b.infer(x)
            for k in a:
                np.testing.assert_allclose(a[k], b[k], atol=2e-2)
            x = {"image": x["image"], **{k: a[o] for k, o in trt_b.state_pairs.items()}}
