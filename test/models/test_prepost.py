"""DevicePrePost (torch pre/post-processing for the network's device) equals the numpy path: on CPU tensors
here, on CUDA in `make gpu-check`."""

from __future__ import annotations

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
from perception.models.prepost import DevicePrePost
from perception.models.registry import build_model
from perception.pipeline.perceptor import network_input

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
    pp = DevicePrePost(H, W).to(device)
    frames = _frames()
    image, maps = pp.preprocess([torch.from_numpy(f).to(device) for f in frames])
    ref = np.stack([network_input(f, H, W)[0] for f in frames])
    diff = np.abs(image.cpu().numpy() - ref)
    assert diff.max() <= 2.5 / 255 and diff.mean() < 0.3 / 255, (diff.max() * 255, diff.mean() * 255)
    with torch.no_grad():
        out = model(torch.from_numpy(ref).to(device))  # no memory: a first frame
    out = {k: v for k, v in out.items() if k in ("heatmap", "box", "seg", "attention")}
    host = {k: v.cpu().numpy() for k, v in out.items()}
    res = pp.postprocess(out, maps, score_thresh=0.05, full_resolution=True)
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
        assert r.segmentation is not None and r.attention is not None
        assert r.segmentation.shape == seg.shape and (r.segmentation == seg).mean() > 0.99
        np.testing.assert_allclose(r.attention, att, atol=1e-3)


def test_device_prepost_matches_numpy_on_cpu() -> None:
    torch.set_num_threads(1)
    _check("cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_prepost_matches_numpy_on_cuda() -> None:
    _check("cuda")
