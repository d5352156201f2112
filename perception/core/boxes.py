"""Axis-aligned box helpers over ``(N, 4)`` float arrays.

Formats: ``xyxy`` (x1, y1, x2, y2), ``xywh`` (x1, y1, width, height) and ``cxcywh`` (centre,
width, height), all in pixels with the origin at the top-left corner of the top-left pixel.
Areas are continuous (``w * h``, no "+1" pixel convention). Non-maximum suppression wraps
OpenCV's maintained ``cv2.dnn.NMSBoxesBatched``.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np


class CoreError(ValueError):
    """Bad input to a ``perception.core`` function; the message says what to pass instead."""


def as_boxes(boxes: np.ndarray | list[list[float]], name: str = "boxes") -> np.ndarray:
    """``boxes`` as a float32 (N, 4) array; raises :class:`CoreError` for any other shape."""
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise CoreError(f"{name} must have shape (N, 4), got {arr.shape}; stack boxes as rows")
    return arr


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    b = as_boxes(boxes)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    b = as_boxes(boxes)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    b = as_boxes(boxes)
    return np.concatenate([(b[:, :2] + b[:, 2:]) * 0.5, b[:, 2:] - b[:, :2]], axis=1)


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    b = as_boxes(boxes)
    half = b[:, 2:] * 0.5
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)


def clip_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Clip xyxy boxes to the image ``[0, width] x [0, height]``."""
    b = as_boxes(boxes).copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0.0, width)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0.0, height)
    return b


def box_mask(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(height, width) bool: the union of xyxy ``boxes`` in pixels (outward-rounded, clipped to the image)."""
    mask = np.zeros((height, width), dtype=bool)
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float32).reshape(-1, 4):
        c0, r0 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
        c1, r1 = min(width, int(np.ceil(x2))), min(height, int(np.ceil(y2)))
        mask[r0:r1, c0:c1] = True
    return mask


def box_area(boxes: np.ndarray) -> np.ndarray:
    """(N,) areas of xyxy boxes; inverted boxes count as 0."""
    b = as_boxes(boxes)
    return np.clip(b[:, 2] - b[:, 0], 0.0, None) * np.clip(b[:, 3] - b[:, 1], 0.0, None)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) intersection-over-union of xyxy boxes ``a`` (N, 4) and ``b`` (M, 4)."""
    a, b = as_boxes(a, "a"), as_boxes(b, "b")
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float32)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def inside_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) share of each box of ``a``'s area lying inside each box of ``b`` (xyxy; an empty ``a`` box: 0)."""
    a, b = as_boxes(a, "a"), as_boxes(b, "b")
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float32)
    wh = np.clip(np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0.0, None)
    area = box_area(a)[:, None]
    return np.where(area > 0, wh[..., 0] * wh[..., 1] / np.maximum(area, 1e-12), 0.0).astype(np.float32)


def scale_boxes(boxes: np.ndarray, sx: float, sy: float | None = None) -> np.ndarray:
    """Multiply x coordinates by ``sx`` and y coordinates by ``sy`` (default ``sx``)."""
    sy = sx if sy is None else sy
    return as_boxes(boxes) * np.array([sx, sy, sx, sy], dtype=np.float32)


def translate_boxes(boxes: np.ndarray, dx: float, dy: float) -> np.ndarray:
    return as_boxes(boxes) + np.array([dx, dy, dx, dy], dtype=np.float32)


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray | None = None,
    iou_thresh: float = 0.6,
    max_det: int = 100,
) -> np.ndarray:
    """Class-aware non-maximum suppression (boxes of different classes never suppress each other).

    Returns the int64 indices of the kept boxes, highest score first, at most ``max_det``.
    A box is suppressed when its IoU with a kept, higher-scoring box of its class exceeds
    ``iou_thresh``. ``class_ids=None`` treats all boxes as one class.
    """
    b = as_boxes(boxes)
    s = np.asarray(scores, dtype=np.float32).reshape(-1)
    if len(s) != len(b):
        raise CoreError(f"nms: {len(b)} boxes but {len(s)} scores; pass one score per box")
    c = np.zeros(len(b), np.int32) if class_ids is None else np.asarray(class_ids).astype(np.int32).reshape(-1)
    if len(c) != len(b):
        raise CoreError(f"nms: {len(b)} boxes but {len(c)} class ids; pass one class id per box")
    if len(b) == 0 or max_det <= 0:
        return np.zeros((0,), dtype=np.int64)
    xywh = xyxy_to_xywh(b).astype(np.float64)
    score_floor = float(np.min(s)) - 1.0  # keep every box; thresholding is the caller's job
    nms_batched: Any = cv2.dnn.NMSBoxesBatched  # the stubs ask for lists; arrays are faster and accepted
    keep = np.asarray(nms_batched(xywh, s, c, score_floor, float(iou_thresh), 1.0, int(max_det)), np.int64).ravel()
    # OpenCV returns score order already; make ties deterministic (stable by score, then index)
    order = np.lexsort((keep, -s[keep]))
    return keep[order]
