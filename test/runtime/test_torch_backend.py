"""Torch backend: the shared I/O contract, torch.compile with a correct temporal state, CUDA graphs on GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from perception.models.registry import build_model
from perception.runtime.base import BackendError
from perception.runtime.torch_backend import TorchBackend, TorchBackendConfig

H, W = 64, 128


def _stream(backend: TorchBackend, frames: int = 4) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    state = backend.initial_state(2)
    outs = []
    for _ in range(frames):
        out = backend.infer({"image": rng.random((2, 3, H, W), dtype=np.float32), **state})
        state = {k: out[o] for k, o in backend.state_pairs.items()}
        outs.append(out)
    return outs


def test_contract_names_state_outputs_like_every_backend() -> None:
    torch.manual_seed(0)
    with TorchBackend(build_model("stan_tiny_temporal"), (H, W)) as b:
        assert [s.name for s in b.input_specs] == ["image", "memory", "memory_valid"]
        assert [s.name for s in b.output_specs][-2:] == ["memory_next", "memory_valid_next"]
        out = _stream(b, 2)[-1]
        assert out["memory_valid_next"].tolist() == [[1.0, 1.0, 0.0]] * 2
    with pytest.raises(ValueError, match="cuda_graph needs device=cuda"):
        TorchBackendConfig(cuda_graph=True)
    with pytest.raises(BackendError, match="multiples of 32"):
        TorchBackend(build_model("stan_tiny"), (60, 128)).load()


def test_compiled_state_matches_eager() -> None:
    """torch.compile runs with inductor freezing off: freezing corrupts the temporal state output."""
    torch.manual_seed(0)
    model = build_model("stan_tiny_temporal")
    with TorchBackend(model, (H, W)) as eager, TorchBackend(model, (H, W), TorchBackendConfig(compile=True)) as comp:
        for a, b in zip(_stream(eager), _stream(comp), strict=True):
            for k in a:
                np.testing.assert_allclose(a[k], b[k], atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_matches_eager_on_gpu() -> None:
    torch.manual_seed(0)
    model = build_model("stan_tiny_temporal")
    cfg = TorchBackendConfig(device="cuda", cuda_graph=True)
    with TorchBackend(model, (H, W), TorchBackendConfig(device="cuda")) as eager, \
            TorchBackend(model, (H, W), cfg) as graph:
        for a, b in zip(_stream(eager), _stream(graph), strict=True):
            for k in a:
                np.testing.assert_allclose(a[k], b[k], atol=1e-4)
