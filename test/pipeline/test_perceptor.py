"""Perceptor with a real (small, randomly initialised) network through the torch backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from perception.core.temporal import ResetReason
from perception.models.registry import build_model
from perception.pipeline.perceptor import FrameInput, Perceptor, PerceptorConfig, PipelineError
from perception.runtime.torch_backend import TorchBackend


@pytest.fixture(scope="module")
def backend() -> TorchBackend:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    b = TorchBackend(build_model("stan_tiny_temporal"), (64, 128))
    b.load()
    return b


def _frame(cam: str, t: float, seed: int = 0, h: int = 90, w: int = 160) -> FrameInput:
    rng = np.random.default_rng(seed)
    return FrameInput(cam, rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8), t)


def test_outputs_are_at_input_resolution(backend: TorchBackend) -> None:
    p = Perceptor(backend, PerceptorConfig(score_thresh=0.0, max_det=20))
    r = p.process(_frame("a", 0.0))
    assert r.segmentation is not None and r.segmentation.shape == (90, 160)
    assert r.attention is not None and r.attention.shape == (90, 160) and r.attention.dtype == np.float32
    assert r.reset is ResetReason.FIRST_FRAME
    d = r.detections
    assert len(d) > 0 and d.attention is not None and len(d.attention) == len(d)
    assert (d.boxes[:, [0, 2]] >= 0).all() and (d.boxes[:, [0, 2]] <= 160).all()
    assert (d.boxes[:, [1, 3]] >= 0).all() and (d.boxes[:, [1, 3]] <= 90).all()


def test_state_per_camera_and_resets(backend: TorchBackend) -> None:
    p = Perceptor(backend)
    assert p.process(_frame("a", 1.0)).reset is ResetReason.FIRST_FRAME
    assert p.process(_frame("a", 1.1)).reset is ResetReason.NONE
    assert p.process(_frame("b", 5.0, seed=1)).reset is ResetReason.FIRST_FRAME  # own state
    assert p.process(_frame("a", 0.5)).reset is ResetReason.TIME_BACKWARDS
    assert p.process(_frame("a", 3.0)).reset is ResetReason.TIME_JUMP
    assert p.process(_frame("a", 3.1, seed=7)).reset is ResetReason.SCENE_CUT
    p.reset("a")
    assert p.process(_frame("a", 3.2, seed=7)).reset is ResetReason.FIRST_FRAME


def test_memory_changes_outputs_and_batching_matches_single(backend: TorchBackend) -> None:
    cfg = PerceptorConfig(score_thresh=0.0, max_det=10)
    single = Perceptor(backend, cfg)
    batched = Perceptor(backend, cfg)
    seq = [(0.0, 0), (0.1, 0), (0.2, 0)]
    outs_single = {c: [single.process(_frame(c, t, s + k)) for t, s in seq] for k, c in enumerate("ab")}
    outs_batch = [batched.process_batch([_frame("a", t, s), _frame("b", t, s + 1)]) for t, s in seq]
    for i in range(len(seq)):
        for j, c in enumerate("ab"):
            a, b = outs_single[c][i], outs_batch[i][j]
            assert a.attention is not None and b.attention is not None
            np.testing.assert_allclose(a.attention, b.attention, atol=1e-4)
    # after three frames the memory holds three valid slots, for each camera separately
    for p in (single, batched):
        for c in "ab":
            st = p.state(c)
            assert st["memory_valid"].sum() == 3 and np.abs(st["memory"]).max() > 0
    assert single.state("never-seen") == {}


def test_bad_input_is_rejected(backend: TorchBackend) -> None:
    p = Perceptor(backend)
    with pytest.raises(PipelineError, match="uint8 RGB"):
        p.process(FrameInput("a", np.zeros((40, 60), dtype=np.uint8), 0.0))
    with pytest.raises(PipelineError, match="one frame per camera"):
        p.process_batch([_frame("a", 0.0), _frame("a", 0.1)])
