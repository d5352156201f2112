"""DevicePrePost (torch pre/post-processing for the network's device) equals the numpy path: on CPU tensors
here, on CUDA in `make gpu-check`."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from perception.core.decode import (
    attention_lowres,
    decode_detections,
    decode_segmentation,
    detections_from_peaks,
    lowres_grid,
    segmentation_lowres,
    upsample_attention,
)
from perception.core.temporal import ResetReason
from perception.core.types import Detections
from perception.models.prepost import DevicePrePost
from perception.models.registry import build_model
from perception.pipeline.perceptor import FrameInput, Perceptor, PerceptorConfig, PipelineError, network_input
from perception.runtime.torch_backend import TorchBackend, TorchBackendConfig

H, W = 64, 128
SIZES = [(90, 160), (300, 100), (64, 128), (333, 517)]


def _frames() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for h, w in SIZES:
        smooth = cv2.resize(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
        out.append(np.clip(smooth + rng.integers(0, 20, smooth.shape), 0, 255).astype(np.uint8))
    return out


def _check(device: str) -> None:
    torch.manual_seed(0)
    model = build_model("stan_tiny_temporal").eval().to(device)
    pp = DevicePrePost(H, W, device)
    frames = _frames()
    image, maps = pp.letterbox([torch.from_numpy(f).to(device) for f in frames])
    ref = np.stack([network_input(f, H, W)[0] for f in frames])
    diff = np.abs(image.cpu().numpy() - ref)
    assert diff.max() <= 2.5 / 255 and diff.mean() < 0.3 / 255, (diff.max() * 255, diff.mean() * 255)
    with torch.no_grad():
        out = model(torch.from_numpy(ref).to(device))  # no memory: a first frame
    out = {k: v for k, v in out.items() if k in ("heatmap", "box", "seg", "attention")}
    host = {k: v.cpu().numpy() for k, v in out.items()}
    res = pp.postprocess(out, maps, score_thresh=0.05)
    for i, (m, r) in enumerate(zip(maps, res, strict=True)):
        want = decode_detections(host["heatmap"][i], host["box"][i], 8, score_thresh=0.05)
        got = detections_from_peaks(*r.peaks, stride=8)
        assert len(want) > 0
        np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
        grid = lowres_grid(m, 4)
        assert r.segmentation_lowres is not None and r.attention_lowres is not None
        assert (r.segmentation_lowres == segmentation_lowres(host["seg"][i], m, grid)).mean() > 0.99
        np.testing.assert_allclose(r.attention_lowres, attention_lowres(host["attention"][i], m, grid), atol=1e-5)
        seg = m.mask_to_src(decode_segmentation(host["seg"][i], H, W), cv2.INTER_NEAREST)
        att = m.mask_to_src(upsample_attention(host["attention"][i], H, W), cv2.INTER_LINEAR)
        assert r.make_segmentation is not None and r.make_attention is not None
        full_seg, full_att = r.make_segmentation(), r.make_attention()
        assert full_seg.shape == seg.shape and (full_seg == seg).mean() > 0.99
        np.testing.assert_allclose(full_att, att, atol=1e-3)


def _same_detections(got: Detections, want: Detections) -> None:
    """Every wanted detection has one of the same class within 0.5 px and 0.01 score (order may differ
    among equal scores), and vice versa."""
    for a, b in ((got, want), (want, got)):
        for box, score, cls in zip(a.boxes, a.scores, a.class_ids, strict=True):
            close = ((np.abs(b.boxes - box).max(axis=1) <= 0.5) & (np.abs(b.scores - score) <= 0.01)
                     & (b.class_ids == cls))
            assert close.any(), (box, score, cls)


def _check_perceptor(device: str) -> None:
    """The Perceptor with pre/post-processing on the device equals the numpy Perceptor over a stream of
    two cameras (batched) with a scene cut: resets, detections, low- and input-resolution maps."""
    torch.manual_seed(0)
    model = build_model("stan_tiny_temporal")
    cfg = PerceptorConfig(score_thresh=0.05, max_det=1000)
    with TorchBackend(model, (H, W), TorchBackendConfig(device=device)) as backend:
        host = Perceptor(backend, dataclasses.replace(cfg, device_prepost="off"))
        dev = Perceptor(backend, dataclasses.replace(cfg, device_prepost="on"))
        assert dev.device_prepost and not host.device_prepost
        # frames at the network size: both paths give the network the same bits (resampling: test above)
        rng = np.random.default_rng(5)
        frames = [f[:H, :W] for f in _frames()[:2]] + [rng.integers(0, 255, (H, W, 3), dtype=np.uint8)]
        stream = [[FrameInput("a", frames[0], 0.0), FrameInput("b", frames[1], 0.0)],
                  [FrameInput("a", frames[0], 0.1), FrameInput("b", frames[1], 0.1)],
                  [FrameInput("a", frames[2], 0.2), FrameInput("b", frames[1], 0.2)]]  # a: scene cut
        resets = []
        for batch in stream:
            for want, got in zip(host.process_batch(batch), dev.process_batch(batch), strict=True):
                resets.append(got.reset)
                assert got.reset is want.reset
                assert len(got.detections) == len(want.detections) > 0
                _same_detections(got.detections, want.detections)
                assert got.lowres_scale == want.lowres_scale
                assert want.segmentation_lowres is not None and got.segmentation_lowres is not None
                assert (got.segmentation_lowres == want.segmentation_lowres).mean() > 0.97
                assert got.attention_lowres is not None and want.attention_lowres is not None
                np.testing.assert_allclose(got.attention_lowres, want.attention_lowres, atol=0.02)
                assert got.segmentation is not None and want.segmentation is not None
                assert (got.segmentation == want.segmentation).mean() > 0.97
                got_att, want_att = got.attention, want.attention
                assert got_att is not None and want_att is not None
                np.testing.assert_allclose(got_att, want_att, atol=0.02)
        first, none, cut = ResetReason.FIRST_FRAME, ResetReason.NONE, ResetReason.SCENE_CUT
        assert resets == [first, first, none, none, cut, none]
        assert [r.reset for r in dev.process_batch(stream[0])] == [ResetReason.TIME_BACKWARDS] * 2


def test_device_prepost_matches_numpy_on_cpu() -> None:
    torch.set_num_threads(1)
    _check("cpu")
    _check_perceptor("cpu")


def test_device_prepost_is_off_on_cpu_by_default_and_needs_a_capable_backend() -> None:
    with TorchBackend(build_model("stan_tiny"), (H, W)) as backend:
        assert not Perceptor(backend).device_prepost  # auto: on CUDA only

    class NoDevice(TorchBackend):
        device_prepost = None  # type: ignore[assignment]

    with NoDevice(build_model("stan_tiny"), (H, W)) as backend, pytest.raises(PipelineError, match="device_prepost"):
        Perceptor(backend, PerceptorConfig(device_prepost="on"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_prepost_matches_numpy_on_cuda() -> None:
    _check("cuda")
    _check_perceptor("cuda")
    torch.manual_seed(0)
    with TorchBackend(build_model("stan_tiny_temporal"), (H, W), TorchBackendConfig(device="cuda")) as backend:
        assert Perceptor(backend).device_prepost  # auto: on for CUDA
