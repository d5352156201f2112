"""Decode raw network outputs (numpy, one image) into detections, masks and attention maps.

Head contract (network input of ``H x W`` pixels):

* ``heatmap`` (C, H/8, W/8) logits of CenterNet-style class-centre heatmaps at stride 8;
* ``box`` (4, H/8, W/8) non-negative distances (left, top, right, bottom) from the cell
  centre to the box edges in stride units; cell (i, j) is centred at ((j + .5) s, (i + .5) s);
* ``seg`` (S, H/4, W/4) semantic logits;
* ``attention`` (1, H/8, W/8) in [0, 1].

Everything here is in network-input pixels; map to the source image with
:func:`detections_to_src` and :meth:`LetterboxMap.mask_to_src`.
"""

from __future__ import annotations

import functools
from typing import Any

import cv2
import numpy as np

from perception.core.boxes import CoreError, as_boxes, nms
from perception.core.letterbox import LetterboxMap
from perception.core.types import Detections


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable float32 logistic function."""
    x = np.asarray(x, dtype=np.float32)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def max_pool3x3(x: np.ndarray) -> np.ndarray:
    """3x3 max filter (stride 1, -inf padding) over the last two axes of (..., h, w)."""
    pad = [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)]
    p = np.pad(x, pad, mode="constant", constant_values=-np.inf)
    h, w = x.shape[-2:]
    out = p[..., 0:h, 0:w].copy()
    for dy in range(3):
        for dx in range(3):
            np.maximum(out, p[..., dy : dy + h, dx : dx + w], out=out)
    return out


def cell_centres(h: int, w: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(h, w) arrays of the x and y pixel centres of the stride-``stride`` grid cells."""
    ys, xs = np.meshgrid(
        (np.arange(h, dtype=np.float32) + 0.5) * stride, (np.arange(w, dtype=np.float32) + 0.5) * stride, indexing="ij"
    )
    return xs, ys


def decode_detections(
    heatmap_logits: np.ndarray,
    box: np.ndarray,
    stride: int = 8,
    score_thresh: float = 0.3,
    max_det: int = 100,
    nms_iou: float = 0.6,
    topk: int = 200,
    image_size: tuple[int, int] | None = None,
) -> Detections:
    """Heatmap logits (C, h, w) + box distances (4, h, w) -> :class:`Detections` in input pixels.

    Sigmoid, 3x3 max-pool peak extraction, scores >= ``score_thresh``, the ``topk`` best peaks,
    boxes from the distances at the peak cells, class-aware NMS, at most ``max_det`` results.
    ``image_size=(H, W)`` clips boxes to the image. Non-finite outputs (a backend gone wrong) give
    no detection at those cells rather than NaN boxes: NaN logits are never peaks, and peaks whose
    box distances are not finite are dropped.
    """
    if heatmap_logits.ndim != 3:
        raise CoreError(
            f"heatmap must be (C, h, w) for one image, got {heatmap_logits.shape}; "
            "use decode_detections_batch for (B, C, h, w)"
        )
    _, h, w = heatmap_logits.shape
    if box.shape != (4, h, w):
        raise CoreError(f"box must be (4, {h}, {w}) to match the heatmap, got {box.shape}")
    heat = sigmoid(heatmap_logits)
    peaks = (heat == max_pool3x3(heat)) & (heat >= score_thresh)  # False wherever heat is NaN
    cls, ii, jj = np.nonzero(peaks)
    finite = np.isfinite(box[:, ii, jj]).all(axis=0)
    if not finite.all():
        cls, ii, jj = cls[finite], ii[finite], jj[finite]
    scores = heat[cls, ii, jj]
    if len(scores) > topk:
        sel = np.argpartition(-scores, topk - 1)[:topk]
        cls, ii, jj, scores = cls[sel], ii[sel], jj[sel], scores[sel]
    return detections_from_peaks(cls, ii, jj, scores, box[:, ii, jj], stride, max_det, nms_iou, image_size)


def detections_from_peaks(
    cls: np.ndarray,
    ii: np.ndarray,
    jj: np.ndarray,
    scores: np.ndarray,
    dist: np.ndarray,
    stride: int = 8,
    max_det: int = 100,
    nms_iou: float = 0.6,
    image_size: tuple[int, int] | None = None,
) -> Detections:
    """The end of :func:`decode_detections` from its peaks (class, row, column, score, and the (4, K) box
    distances there), e.g. peaks found on a GPU: boxes, class-aware NMS. Peaks whose distances are not
    finite are dropped."""
    finite = np.isfinite(dist).all(axis=0)
    if not finite.all():
        cls, ii, jj, scores, dist = cls[finite], ii[finite], jj[finite], scores[finite], dist[:, finite]
    dist = np.clip(dist.astype(np.float32), 0.0, None) * float(stride)  # (4, K)
    cx = (jj.astype(np.float32) + 0.5) * stride
    cy = (ii.astype(np.float32) + 0.5) * stride
    boxes = np.stack([cx - dist[0], cy - dist[1], cx + dist[2], cy + dist[3]], axis=1).astype(np.float32)
    if image_size is not None:
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0.0, image_size[1])
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0.0, image_size[0])
    keep = nms(boxes, scores, cls, nms_iou, max_det)
    return Detections(
        boxes=boxes[keep].reshape(-1, 4),
        scores=np.asarray(scores)[keep].astype(np.float32),
        class_ids=np.asarray(cls)[keep].astype(np.int64),
    )


def decode_detections_batch(heatmap_logits: np.ndarray, box: np.ndarray, **kwargs: Any) -> list[Detections]:
    """:func:`decode_detections` over a batch (B, C, h, w) / (B, 4, h, w)."""
    if heatmap_logits.ndim != 4 or box.ndim != 4 or len(heatmap_logits) != len(box):
        raise CoreError(f"batch decode needs (B, C, h, w) and (B, 4, h, w), got {heatmap_logits.shape}, {box.shape}")
    return [decode_detections(hm, bx, **kwargs) for hm, bx in zip(heatmap_logits, box)]


def _check_map(shape: tuple[int, ...], out_h: int, out_w: int, what: str) -> None:
    """A network map and its output size must be non-empty (OpenCV would raise cv2.error otherwise)."""
    if min(shape) < 1 or out_h < 1 or out_w < 1:
        raise CoreError(f"{what} of shape {shape} cannot be resized to {out_h}x{out_w}: empty map or size")


def decode_segmentation(seg_logits: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """(S, h, w) logits -> uint8 (out_h, out_w) class ids: bilinear upsampling of logits, then argmax.

    One ``cv2.resize`` over an HWC copy (OpenCV handles many channels), then argmax;
    about 9 ms for 13 classes at 640x480 on one core.
    """
    if seg_logits.ndim != 3:
        raise CoreError(f"seg logits must be (S, h, w) for one image, got {seg_logits.shape}")
    if seg_logits.shape[0] > 255:
        raise CoreError(f"{seg_logits.shape[0]} classes do not fit a uint8 mask")
    _check_map(seg_logits.shape, out_h, out_w, "seg logits")
    hwc = np.ascontiguousarray(seg_logits.transpose(1, 2, 0), dtype=np.float32)
    if hwc.shape[:2] != (out_h, out_w):
        hwc = np.asarray(cv2.resize(hwc, (out_w, out_h), interpolation=cv2.INTER_LINEAR), dtype=np.float32)
    if hwc.ndim == 2:  # a single channel comes back without its channel axis
        return np.zeros((out_h, out_w), dtype=np.uint8)
    return np.argmax(hwc, axis=2).astype(np.uint8)


def upsample_attention(att: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """(1, h, w) or (h, w) attention -> float32 (out_h, out_w), bilinear, clipped to >= 0 (NaN -> 0)."""
    a = np.asarray(att, dtype=np.float32)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise CoreError(f"attention must be (1, h, w) or (h, w), got {np.shape(att)}")
    _check_map(a.shape, out_h, out_w, "attention")
    if a.shape != (out_h, out_w):
        a = np.asarray(cv2.resize(a, (out_w, out_h), interpolation=cv2.INTER_LINEAR), dtype=np.float32)
    return np.clip(np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=0.0), 0.0, None)


def box_pixel_bounds(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, 4) int pixel index bounds [x0, y0, x1, y1) covering each box, at least one pixel."""
    b = as_boxes(boxes)
    x0 = np.clip(np.floor(b[:, 0]), 0, width - 1).astype(np.int64)
    y0 = np.clip(np.floor(b[:, 1]), 0, height - 1).astype(np.int64)
    x1 = np.clip(np.ceil(b[:, 2]), x0 + 1, width).astype(np.int64)
    y1 = np.clip(np.ceil(b[:, 3]), y0 + 1, height).astype(np.int64)
    return np.stack([x0, y0, x1, y1], axis=1)


def attention_scores(att_full: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N,) mean attention inside each box divided by the image mean (> 1: attention concentrates on it).

    Boxes are expanded to whole pixels. An all-zero map gives 1.0 (no preference).
    """
    if att_full.ndim != 2:
        raise CoreError(f"attention map must be (H, W) at image resolution, got {att_full.shape}")
    # the low-resolution form with one cell per pixel: whole-pixel boxes hit the integral image's grid exactly
    return attention_scores_lowres(att_full, boxes, (1.0, 1.0), att_full.shape)


def detections_to_src(det: Detections, lb_map: LetterboxMap) -> Detections:
    """Map detections from network-input pixels to the source image (clipped to it)."""
    return Detections(
        boxes=lb_map.boxes_to_src(det.boxes),
        scores=det.scores,
        class_ids=det.class_ids,
        attention=det.attention,
    )


def with_attention(det: Detections, att_full: np.ndarray) -> Detections:
    """``det`` with its per-object attention scores computed from an image-resolution map."""
    return Detections(det.boxes, det.scores, det.class_ids, attention_scores(att_full, det.boxes))


# -- low-resolution outputs: network-output grids with the letterbox padding cut away -----------------------------
#
# A low-resolution map covers the whole INPUT image with ``gh x gw`` cells of ``sx x sy`` input pixels
# (``lowres_scale``): cell (v, u) covers input pixels [u sx, (u + 1) sx) x [v sy, (v + 1) sy), so a
# consumer maps it back like a CameraInfo binning (``binning_x = sx``). The grid has the stride of the
# finest output map (segmentation, stride 4); maps are resampled onto it bilinearly (separable
# interpolation matrices, the same arithmetic in numpy and torch: ``Ry @ map @ Rx.T``).


def lowres_grid(m: LetterboxMap, stride: int) -> tuple[int, int]:
    """(gh, gw): the low-resolution grid covering the letterboxed image at ``stride`` network pixels per cell."""
    return max(1, round(m.new_h / stride)), max(1, round(m.new_w / stride))


def lowres_scale(m: LetterboxMap, grid: tuple[int, int]) -> tuple[float, float]:
    """(sx, sy): input pixels per low-resolution cell."""
    return m.src_w / grid[1], m.src_h / grid[0]


def interp_matrix(n_out: int, n_in: int, start: float, step: float) -> np.ndarray:
    """(n_out, n_in) float32 linear-interpolation weights sampling ``n_in`` pixels at ``start + step * k``
    (pixel-centre coordinates of the input, clamped to its edges like OpenCV's replicated border)."""
    pos = np.clip(start + step * np.arange(n_out, dtype=np.float64), 0.0, n_in - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    f = pos - i0
    r = np.zeros((n_out, n_in), np.float64)
    np.add.at(r, (np.arange(n_out), i0), 1.0 - f)
    np.add.at(r, (np.arange(n_out), i1), f)
    return r.astype(np.float32)


@functools.lru_cache(maxsize=64)
def lowres_matrices(m: LetterboxMap, map_h: int, map_w: int, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(Ry, Rx): a (C, map_h, map_w) network output map -> ``Ry @ map @ Rx.T`` on the low-resolution grid.
    Cached per geometry (a camera keeps its size): treat the arrays as read-only."""
    gh, gw = grid
    fy, fx = map_h / m.dst_h, map_w / m.dst_w  # map cells per network pixel
    cell_y, cell_x = m.new_h / gh, m.new_w / gw  # network pixels per grid cell
    ry = interp_matrix(gh, map_h, (m.pad_y + 0.5 * cell_y) * fy - 0.5, cell_y * fy)
    rx = interp_matrix(gw, map_w, (m.pad_x + 0.5 * cell_x) * fx - 0.5, cell_x * fx)
    return ry, rx


def resample_lowres(maps: np.ndarray, m: LetterboxMap, grid: tuple[int, int]) -> np.ndarray:
    """(C, h, w) network output maps -> (C, gh, gw) float32 on the low-resolution grid (bilinear)."""
    if maps.ndim != 3 or min(maps.shape) < 1:
        raise CoreError(f"maps must be (C, h, w) and non-empty, got {maps.shape}")
    c, h, w = maps.shape
    ry, rx = lowres_matrices(m, h, w, grid)
    out = np.asarray(maps, np.float32)
    if ry.shape != (h, h) or not np.array_equal(ry, np.eye(h, dtype=np.float32)):  # one GEMM per axis
        out = np.tensordot(ry, out, axes=(1, 1)).transpose(1, 0, 2)  # (C, gh, w)
    if rx.shape != (w, w) or not np.array_equal(rx, np.eye(w, dtype=np.float32)):
        out = (out.reshape(-1, w) @ rx.T).reshape(c, out.shape[1], rx.shape[0])
    return np.ascontiguousarray(out, dtype=np.float32)


def segmentation_lowres(seg_logits: np.ndarray, m: LetterboxMap, grid: tuple[int, int]) -> np.ndarray:
    """(S, h, w) logits -> uint8 (gh, gw) class ids on the low-resolution grid (bilinear logits, argmax)."""
    if seg_logits.ndim != 3 or seg_logits.shape[0] > 255:
        raise CoreError(f"seg logits must be (S, h, w) with S <= 255, got {seg_logits.shape}")
    return np.argmax(resample_lowres(seg_logits, m, grid), axis=0).astype(np.uint8)


def attention_lowres(att: np.ndarray, m: LetterboxMap, grid: tuple[int, int]) -> np.ndarray:
    """(1, h, w) attention -> float32 (gh, gw) on the low-resolution grid, clipped to >= 0 (NaN -> 0)."""
    a = np.asarray(att, np.float32)
    a = a[None] if a.ndim == 2 else a
    if a.ndim != 3 or a.shape[0] != 1:
        raise CoreError(f"attention must be (1, h, w) or (h, w), got {np.shape(att)}")
    a = np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(resample_lowres(a, m, grid)[0], 0.0, None)


def attention_scores_lowres(att_low: np.ndarray, boxes: np.ndarray, scale: tuple[float, float],
                            image_size: tuple[int, int]) -> np.ndarray:
    """:func:`attention_scores` from a low-resolution map: (N,) mean attention inside each box (input pixels,
    expanded to whole pixels) / the map's mean. Exact area means of the cells a box covers in part or whole
    (the integral image is bilinear inside a cell), so it needs no input-resolution map."""
    if att_low.ndim != 2:
        raise CoreError(f"attention map must be (h, w), got {att_low.shape}")
    b = as_boxes(boxes)
    if len(b) == 0:
        return np.zeros((0,), dtype=np.float32)
    gh, gw = att_low.shape
    integral = cv2.integral(np.asarray(att_low, dtype=np.float64))  # (gh+1, gw+1)
    total_mean = integral[gh, gw] / (gh * gw)
    if total_mean <= 0:
        return np.ones(len(b), dtype=np.float32)
    px = box_pixel_bounds(b, image_size[0], image_size[1]).astype(np.float64)
    sx, sy = scale
    x0, x1 = np.clip(px[:, 0] / sx, 0, gw), np.clip(px[:, 2] / sx, 0, gw)
    y0, y1 = np.clip(px[:, 1] / sy, 0, gh), np.clip(px[:, 3] / sy, 0, gh)

    def at(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # the integral image at fractional (x, y)
        xi = np.minimum(np.floor(x).astype(np.int64), gw - 1)
        yi = np.minimum(np.floor(y).astype(np.int64), gh - 1)
        fx, fy = x - xi, y - yi
        return ((1 - fy) * ((1 - fx) * integral[yi, xi] + fx * integral[yi, xi + 1])
                + fy * ((1 - fx) * integral[yi + 1, xi] + fx * integral[yi + 1, xi + 1]))

    sums = at(x1, y1) - at(x0, y1) - at(x1, y0) + at(x0, y0)
    means = sums / np.maximum((x1 - x0) * (y1 - y0), 1e-12)
    return (means / total_mean).astype(np.float32)
