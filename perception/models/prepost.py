"""Pre- and post-processing as torch operations, for the device the network runs on (CUDA next to the
torch-CUDA / TensorRT backends), so camera frames go up once as uint8 and only small results come back.

The same arithmetic as the numpy path (``core.letterbox``, ``core.decode``, ``pipeline.perceptor``), on
any torch device (CPU tensors too; the tests compare both paths on the CPU, ``make gpu-check`` on CUDA):

- :meth:`DevicePrePost.preprocess`: uint8 (H, W, 3) frames -> letterboxed, normalised (B, 3, H, W) float
  network input (2x2-mean halvings, then bilinear, as :func:`perception.core.letterbox.resize_image`;
  each step rounded to uint8 like OpenCV), plus each frame's :class:`LetterboxMap`;
- :meth:`DevicePrePost.postprocess`: network outputs -> per frame the heatmap peaks (at most ``topk``,
  for :func:`perception.core.decode.detections_from_peaks` on the host), the low-resolution
  segmentation (uint8) and attention (float32) on the grid of :func:`perception.core.decode.lowres_grid`
  (``Ry @ map @ Rx.T`` with the same interpolation matrices), and on request the input-resolution ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from perception.core.decode import lowres_grid, lowres_matrices, lowres_scale
from perception.core.letterbox import PAD_VALUE, LetterboxMap


@dataclass
class DeviceFrameOutputs:
    """One frame's post-processed outputs, moved to the host (numpy): all small."""

    peaks: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # cls, row, col, score, (4, K) dist
    segmentation_lowres: np.ndarray | None  # (gh, gw) uint8
    attention_lowres: np.ndarray | None  # (gh, gw) float32
    lowres_scale: tuple[float, float]
    segmentation: np.ndarray | None = None  # (H, W) uint8 at input resolution, when asked for
    attention: np.ndarray | None = None  # (H, W) float32 at input resolution, when asked for


def _resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(1, C, H, W) float image values (0..255) -> (1, C, h, w) as :func:`core.letterbox.resize_image`."""
    while x.shape[2] >= 2 * h and x.shape[3] >= 2 * w:
        x = torch.floor(F.avg_pool2d(x[..., : x.shape[2] // 2 * 2, : x.shape[3] // 2 * 2], 2) + 0.5)
    if x.shape[2:] != (h, w):
        x = torch.floor(F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False) + 0.5).clamp_(0, 255)
    return x


class DevicePrePost(torch.nn.Module):
    """Letterbox + normalise a batch, and decode network outputs to small results, on the tensors' device."""

    def __init__(self, input_h: int, input_w: int, stride: int = 8, pad_value: int = PAD_VALUE) -> None:
        super().__init__()
        self.input_h, self.input_w, self.stride, self.pad_value = input_h, input_w, stride, pad_value

    def preprocess(self, frames: list[torch.Tensor], out: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, list[LetterboxMap]]:
        """uint8 (H, W, 3) frames (on the target device) -> (B, 3, input_h, input_w) float32 in [0, 1].
        ``out``: a reusable (B, 3, input_h, input_w) float32 buffer on the same device."""
        b = len(frames)
        dev = frames[0].device
        if out is None or out.shape != (b, 3, self.input_h, self.input_w):
            out = torch.empty((b, 3, self.input_h, self.input_w), dtype=torch.float32, device=dev)
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

    def _matrices(self, m: LetterboxMap, h: int, w: int, grid: tuple[int, int], dev: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        ry, rx = lowres_matrices(m, h, w, grid)
        return torch.from_numpy(ry).to(dev), torch.from_numpy(rx).to(dev)

    @torch.no_grad()
    def postprocess(
        self,
        out: dict[str, torch.Tensor],
        maps: list[LetterboxMap],
        score_thresh: float = 0.3,
        topk: int = 200,
        full_resolution: bool = False,
    ) -> list[DeviceFrameOutputs]:
        """Network outputs (B, ...) on the device -> per frame :class:`DeviceFrameOutputs` on the host."""
        heat_all = torch.sigmoid(out["heatmap"].float())
        pooled = F.max_pool2d(heat_all, 3, stride=1, padding=1)
        seg_all, att_all = out.get("seg"), out.get("attention")
        finest = seg_all if seg_all is not None else att_all
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
            dist = box[:, ii, jj]
            host = [t.cpu().numpy() for t in (cls, ii, jj, scores, dist)]
            grid = lowres_grid(m, max(1, round(self.input_h / finest.shape[2]))) if finest is not None else (1, 1)
            seg_low = att_low = seg_full = att_full = None
            if seg_all is not None:
                logits = seg_all[i].float()
                ry, rx = self._matrices(m, logits.shape[1], logits.shape[2], grid, logits.device)
                seg_low = torch.argmax(ry @ logits @ rx.T, dim=0).to(torch.uint8).cpu().numpy()
                if full_resolution:
                    up = F.interpolate(logits[None], size=(m.dst_h, m.dst_w), mode="bilinear", align_corners=False)
                    lab = torch.argmax(up[0], dim=0).to(torch.uint8)
                    valid = lab[m.pad_y : m.pad_y + m.new_h, m.pad_x : m.pad_x + m.new_w]
                    up_lab = F.interpolate(valid[None, None].float(), size=(m.src_h, m.src_w), mode="nearest")
                    seg_full = up_lab[0, 0].to(torch.uint8).cpu().numpy()
            if att_all is not None:
                a = torch.nan_to_num(att_all[i].float(), nan=0.0, posinf=1.0, neginf=0.0)
                ry, rx = self._matrices(m, a.shape[1], a.shape[2], grid, a.device)
                att_low = torch.clamp(ry @ a[0] @ rx.T, min=0.0).cpu().numpy()
                if full_resolution:
                    up = F.interpolate(a[None], size=(m.dst_h, m.dst_w), mode="bilinear", align_corners=False)
                    valid = up[..., m.pad_y : m.pad_y + m.new_h, m.pad_x : m.pad_x + m.new_w]
                    full = F.interpolate(valid, size=(m.src_h, m.src_w), mode="bilinear", align_corners=False)
                    att_full = torch.clamp(full[0, 0], min=0.0).cpu().numpy()
            results.append(DeviceFrameOutputs((host[0], host[1], host[2], host[3], host[4]), seg_low, att_low,
                                              lowres_scale(m, grid), seg_full, att_full))
        return results
