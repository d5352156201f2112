"""Perceptor with a real (small, randomly initialised) network through the torch backend."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from perception.core.decode import attention_scores, decode_segmentation, upsample_attention
from perception.core.temporal import ResetReason
from perception.core.types import Detections
from perception.models.registry import build_model
from perception.pipeline.perceptor import (
    FrameInput,
    PerceptionResult,
    Perceptor,
    PerceptorConfig,
    PipelineError,
    network_input,
)
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


def _reference_maps(backend: TorchBackend, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pre-zero-waste outputs of a first frame (zero state): input-resolution mask and attention by
    upsampling to the network input and mapping back, and per-object attention scores on them."""
    chw, m = network_input(rgb, 64, 128)
    out = backend.infer({"image": chw[None], **backend.initial_state(1)})
    seg = m.mask_to_src(decode_segmentation(out["seg"][0], 64, 128), cv2.INTER_NEAREST)
    att = m.mask_to_src(upsample_attention(out["attention"][0], 64, 128), cv2.INTER_LINEAR)
    return seg, att, out["seg"][0]


@pytest.mark.parametrize("size", [(90, 160), (200, 120), (64, 128)])
def test_input_resolution_maps_are_lazy_and_unchanged(backend: TorchBackend, size: tuple[int, int]) -> None:
    p = Perceptor(backend, PerceptorConfig(score_thresh=0.0, max_det=20))
    f = _frame("a", 0.0, h=size[0], w=size[1])
    r = p.process(f)
    assert r.maps._seg is None and r.maps._att is None  # nothing made at input resolution yet
    seg, att, _ = _reference_maps(backend, f.rgb)
    assert r.segmentation is not None and r.attention is not None
    np.testing.assert_array_equal(r.segmentation, seg)
    np.testing.assert_allclose(r.attention, att, atol=1e-5)
    assert r.segmentation is r.segmentation  # made once, then kept
    # a copy (as the ROS runner makes with new detections) shares the maps
    assert dataclasses.replace(r, detections=Detections()).segmentation is r.segmentation
    other = np.zeros((2, 2), np.uint8)
    swapped = dataclasses.replace(r, segmentation=other)  # type: ignore[call-arg]  # keeps the other map
    assert swapped.segmentation is other and swapped.attention is r.attention
    # per-object attention from the low-resolution map is close to the input-resolution one
    d = r.detections
    assert d.attention is not None and len(d) > 0
    np.testing.assert_allclose(d.attention, attention_scores(att, d.boxes), rtol=0.05, atol=0.02)


def test_lowres_maps_cover_the_input(backend: TorchBackend) -> None:
    p = Perceptor(backend)
    f = _frame("a", 0.0, h=90, w=160)  # letterboxed to 114x64 in the 128x64 input: padding columns
    r = p.process(f)
    assert r.segmentation_lowres is not None and r.attention_lowres is not None
    gh, gw = r.segmentation_lowres.shape
    assert r.attention_lowres.shape == (gh, gw) and r.attention_lowres.dtype == np.float32
    assert r.segmentation_lowres.dtype == np.uint8
    sx, sy = r.lowres_scale
    assert (round(gw * sx), round(gh * sy)) == (160, 90)
    seg = r.segmentation
    assert seg is not None
    ys = ((np.arange(gh) + 0.5) * sy).astype(int)
    xs = ((np.arange(gw) + 0.5) * sx).astype(int)
    assert (r.segmentation_lowres == seg[np.ix_(ys, xs)]).mean() > 0.9
    # finer timings next to the three stages
    assert {"preprocess", "infer", "postprocess", "preprocess.letterbox", "postprocess.decode"} <= set(r.timings_ms)
    # the frame's total counts each stage once (the finer keys break a stage down; eval, demo, fleet and the
    # node's diagnostics report this total)
    t = r.timings_ms
    assert r.total_ms == pytest.approx(t["preprocess"] + t["infer"] + t["postprocess"])
    assert r.total_ms < sum(t.values())


def test_results_built_from_input_resolution_maps_keep_working() -> None:
    seg = np.ones((6, 8), np.uint8)
    r = PerceptionResult("cam", 1.0, Detections(), seg, None, ResetReason.NONE, {})
    assert r.segmentation is seg and r.attention is None
    assert r.segmentation_lowres is seg and r.lowres_scale == (1.0, 1.0)


def test_reused_buffers_do_not_leak_between_batches(backend: TorchBackend) -> None:
    """A batch of 2 after a batch of 1 and frames of other sizes: each result as if processed alone."""
    cfg = PerceptorConfig(score_thresh=0.0, max_det=10)
    p = Perceptor(backend, cfg)
    p.process(_frame("x", 0.0, seed=5, h=300, w=100))
    a, b = p.process_batch([_frame("a", 0.0, seed=1), _frame("b", 0.0, seed=2, h=64, w=128)])
    for r, f in ((a, _frame("a", 0.0, seed=1)), (b, _frame("b", 0.0, seed=2, h=64, w=128))):
        alone = Perceptor(backend, cfg).process(f)
        assert r.segmentation_lowres is not None and alone.segmentation_lowres is not None
        assert (r.segmentation_lowres == alone.segmentation_lowres).mean() > 0.99
        np.testing.assert_allclose(r.detections.scores, alone.detections.scores, atol=1e-4)
