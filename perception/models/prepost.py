"""Pre- and post-processing as torch operations on the device the network runs on (CUDA next to the
torch-CUDA backend), so camera frames go up once as uint8 and only small results come back.

The same arithmetic as the numpy path (``core.letterbox``, ``core.decode``, ``pipeline.perceptor``), on
any torch device (CPU tensors too: the tests compare both paths on the CPU, ``make gpu-check`` on CUDA):

- :meth:`DevicePrePost.letterbox`: uint8 (H, W, 3) frames -> letterboxed, normalised (B, 3, H, W) float
  network input (2x2-mean halvings, then bilinear, as :func:`perception.core.letterbox.resize_image`;
  each step rounded to uint8 like OpenCV), plus each frame's :class:`LetterboxMap`;
- :meth:`DevicePrePost.preprocess`: the same from numpy frames, plus the scene-cut thumbnails (16x16 grey,
  area-pooled on the device);
- :meth:`DevicePrePost.infer`: the backend on the device tensors; only the temporal state and one
  finite/non-finite flag per frame come back;
- :meth:`DevicePrePost.postprocess`: per frame the heatmap peaks (at most ``topk``, for
  :func:`perception.core.decode.detections_from_peaks` on the host), the low-resolution segmentation
  (uint8) and attention (float32) on the grid of :func:`perception.core.decode.lowres_grid` (``Ry @ map @ Rx.T``
  with the same interpolation matrices), and the input-resolution maps computed on the device on request.

Used by the Perceptor when the backend offers ``device_prepost`` (the torch backend:
:meth:`perception.runtime.torch_backend.TorchBackend.device_prepost`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from perception.core.decode import lowres_grid, lowres_matrices, lowres_scale
from perception.core.letterbox import PAD_VALUE, LetterboxMap

_GRAY = (0.299, 0.587, 0.114)  # OpenCV's RGB2GRAY weights


@dataclass
class DeviceBatch:
    """A preprocessed batch: the network input on the device, each frame's letterbox map and scene-cut thumbnail."""

    image: torch.Tensor  # (B, 3, H, W) float32 in [0, 1]
    maps: list[LetterboxMap]
    thumbnails: np.ndarray  # (B, size, size) float32 grey levels (host)


@dataclass
class DeviceOutputs:
    """Network outputs kept on the device; the state and the non-finite report on the host."""

    outputs: dict[str, torch.Tensor]
    state: dict[str, np.ndarray]  # output name -> (B, ...) next state
    non_finite: dict[int, list[str]]  # batch index -> names of its outputs holding NaN / inf


@dataclass
class DeviceFrameOutputs:
    """One frame's post-processed outputs on the host (all small); input-resolution maps on request."""

    peaks: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # cls, row, col, score, (4, K) dist
    segmentation_lowres: np.ndarray | None  # (gh, gw) uint8
    attention_lowres: np.ndarray | None  # (gh, gw) float32
    lowres_scale: tuple[float, float]
    make_segmentation: Callable[[], np.ndarray] | None = None  # (H, W) uint8 at input resolution, on the device
    make_attention: Callable[[], np.ndarray] | None = None  # (H, W) float32 at input resolution, on the device


def _resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(1, C, H, W) float image values (0..255) -> (1, C, h, w) as :func:`core.letterbox.resize_image`."""
    while x.shape[2] >= 2 * h and x.shape[3] >= 2 * w:
        x = torch.floor(F.avg_pool2d(x[..., : x.shape[2] // 2 * 2, : x.shape[3] // 2 * 2], 2) + 0.5)
    if x.shape[2:] != (h, w):
        x = torch.floor(F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False) + 0.5).clamp_(0, 255)
    return x


def full_segmentation(logits: torch.Tensor, m: LetterboxMap) -> np.ndarray:
    """(S, h, w) logits -> (src_h, src_w) uint8 labels: bilinear to the network input, argmax, padding cut,
    nearest to the input size (as ``InputResolutionMaps`` does on the host)."""
    up = F.interpolate(logits[None].float(), size=(m.dst_h, m.dst_w), mode="bilinear", align_corners=False)
    lab = torch.argmax(up[0], dim=0).to(torch.uint8)
    valid = lab[m.pad_y : m.pad_y + m.new_h, m.pad_x : m.pad_x + m.new_w]
    full = F.interpolate(valid[None, None].float(), size=(m.src_h, m.src_w), mode="nearest")
    return full[0, 0].to(torch.uint8).cpu().numpy()


def full_attention(att: torch.Tensor, m: LetterboxMap) -> np.ndarray:
    """(1, h, w) attention -> (src_h, src_w) float32: bilinear to the network input, padding cut, bilinear to
    the input size, clipped to >= 0 (NaN -> 0)."""
    a = torch.nan_to_num(att[None].float(), nan=0.0, posinf=1.0, neginf=0.0)
    up = F.interpolate(a, size=(m.dst_h, m.dst_w), mode="bilinear", align_corners=False)
    valid = up[..., m.pad_y : m.pad_y + m.new_h, m.pad_x : m.pad_x + m.new_w]
    full = F.interpolate(valid, size=(m.src_h, m.src_w), mode="bilinear", align_corners=False)
    return torch.clamp(full[0, 0], min=0.0).cpu().numpy()


class DevicePrePost(torch.nn.Module):
    """Letterbox + normalise a batch, and decode network outputs to small results, on ``device``."""

    def __init__(self, input_h: int, input_w: int, device: str = "cpu", pad_value: int = PAD_VALUE,
                 thumbnail: int = 16) -> None:
        super().__init__()
        self.input_h, self.input_w, self.pad_value, self.thumbnail = input_h, input_w, pad_value, thumbnail
        self.device = torch.device(device)
        self._image: torch.Tensor | None = None  # reusable network-input buffer

    @torch.no_grad()
    def letterbox(self, frames: list[torch.Tensor], out: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, list[LetterboxMap]]:
        """uint8 (H, W, 3) frames (on one device) -> (B, 3, input_h, input_w) float32 in [0, 1] and their maps.
        ``out``: a reusable (B, 3, input_h, input_w) float32 buffer on the same device."""
        b = len(frames)
        if out is None or out.shape != (b, 3, self.input_h, self.input_w):
            out = torch.empty((b, 3, self.input_h, self.input_w), dtype=torch.float32, device=frames[0].device)
        out.fill_(self.pad_value / 255.0)
        maps = []
        for k, f in enumerate(frames):
            if f.ndim != 3 or f.shape[2] != 3 or f.dtype != torch.uint8:
                raise ValueError(f"expected an (H, W, 3) uint8 frame, got {tuple(f.shape)} {f.dtype}")
            m = LetterboxMap.compute(int(f.shape[1]), int(f.shape[0]), self.input_w, self.input_h)
            x = _resize(f.permute(2, 0, 1)[None].float(), m.new_h, m.new_w)
            out[k, :, m.pad_y : m.pad_y + m.new_h, m.pad_x : m.pad_x + m.new_w] = x[0] * (1.0 / 255.0)
            maps.append(m)
        return out, maps

    @torch.no_grad()
    def preprocess(self, frames: list[np.ndarray]) -> DeviceBatch:
        """Host uint8 RGB frames -> :class:`DeviceBatch` (frames go up as uint8; the input buffer is reused)."""
        up = [torch.from_numpy(np.ascontiguousarray(f)).to(self.device, non_blocking=True) for f in frames]
        self._image, maps = self.letterbox(up, self._image)
        thumbs = []
        gray = torch.tensor(_GRAY, device=self.device).view(1, 3, 1, 1)
        for k, m in enumerate(maps):
            valid = self._image[k : k + 1, :, m.pad_y : m.pad_y + m.new_h, m.pad_x : m.pad_x + m.new_w]
            g = (valid * gray).sum(dim=1, keepdim=True) * 255.0
            thumbs.append(F.adaptive_avg_pool2d(g, self.thumbnail)[0, 0])
        return DeviceBatch(self._image, maps, torch.stack(thumbs).cpu().numpy())

    @torch.no_grad()
    def infer(self, infer_tensors: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]], batch: DeviceBatch,
              state: dict[str, np.ndarray], state_outputs: list[str]) -> DeviceOutputs:
        """Run ``infer_tensors`` (the backend's) on the batch and the host ``state``; bring back only the next
        state and which frames had non-finite outputs."""
        inputs = {"image": batch.image}
        inputs.update({k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device) for k, v in state.items()})
        out = infer_tensors(inputs)
        n = batch.image.shape[0]
        names = [k for k, v in out.items() if v.is_floating_point() and v.ndim > 0 and v.shape[0] == n]
        finite = torch.stack([torch.isfinite(out[k].reshape(n, -1)).all(dim=1) for k in names]).cpu().numpy()
        bad: dict[int, list[str]] = {}
        for j, i in zip(*np.nonzero(~finite), strict=True):
            bad.setdefault(int(i), []).append(names[int(j)])
        host_state = {k: out[k].float().cpu().numpy() for k in state_outputs}
        return DeviceOutputs(out, host_state, bad)

    @torch.no_grad()
    def postprocess(self, out: dict[str, torch.Tensor], maps: list[LetterboxMap], score_thresh: float = 0.3,
                    topk: int = 200, segmentation: bool = True, attention: bool = True) -> list[DeviceFrameOutputs]:
        """Network outputs (B, ...) on the device -> per frame :class:`DeviceFrameOutputs` on the host."""
        heat_all = torch.sigmoid(out["heatmap"].float())
        pooled = F.max_pool2d(heat_all, 3, stride=1, padding=1)
        seg_all = out.get("seg") if segmentation else None
        att_all = out.get("attention") if attention else None
        finest = out.get("seg", out.get("attention"))
        results = []
        for i, m in enumerate(maps):
            heat = heat_all[i]
            box = out["box"][i].float()
            peaks = (heat == pooled[i]) & (heat >= score_thresh) & torch.isfinite(box).all(dim=0)[None]
            cls, ii, jj = torch.nonzero(peaks, as_tuple=True)
            scores = heat[cls, ii, jj]
            if scores.numel() > topk:
                sel = torch.topk(scores, topk).indices
                cls, ii, jj, scores = cls[sel], ii[sel], jj[sel], scores[sel]
            host = [t.cpu().numpy() for t in (cls, ii, jj, scores, box[:, ii, jj])]
            grid = lowres_grid(m, max(1, round(self.input_h / finest.shape[2]))) if finest is not None else (1, 1)
            res = DeviceFrameOutputs((host[0], host[1], host[2], host[3], host[4]), None, None, lowres_scale(m, grid))
            if seg_all is not None:
                logits = seg_all[i].float().clone()  # kept for the input-resolution mask (backends reuse outputs)
                ry, rx = self._matrices(m, logits.shape[1], logits.shape[2], grid)
                res.segmentation_lowres = torch.argmax(ry @ logits @ rx.T, dim=0).to(torch.uint8).cpu().numpy()
                res.make_segmentation = lambda logits=logits, m=m: full_segmentation(logits, m)
            if att_all is not None:
                att = att_all[i].float().clone()
                a = torch.nan_to_num(att, nan=0.0, posinf=1.0, neginf=0.0)
                ry, rx = self._matrices(m, a.shape[1], a.shape[2], grid)
                res.attention_lowres = torch.clamp(ry @ a[0] @ rx.T, min=0.0).cpu().numpy()
                res.make_attention = lambda att=att, m=m: full_attention(att, m)
            results.append(res)
        return results

    def _matrices(self, m: LetterboxMap, h: int, w: int, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        ry, rx = lowres_matrices(m, h, w, grid)
        return torch.from_numpy(ry).to(self.device), torch.from_numpy(rx).to(self.device)
