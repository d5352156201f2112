"""SSD anchors (priors) for any input size, and decoding of a box list: numpy only.

The anchors follow the TensorFlow Object Detection API's ``ssd_anchor_generator`` (Liu et al. 2016,
as configured for ``ssd_mobilenet_v2_coco``): six feature maps, scales linearly from ``min_scale``
to ``max_scale``, aspect ratios ``(1, 2, 1/2, 3, 1/3)`` plus one interpolated-scale square, and three
anchors only on the first (finest) map ("reduce_boxes_in_lowest_layer"). Anchors are laid out
location-major (row, column, anchor), as the box predictors' outputs are flattened.

The optional **fine level** (``fine=True``) adds a seventh map at stride 8 with three small anchors per cell
(``FINE_SPECS``: 15 px square, 15 x 30 tall, 30 x 15 wide at ``base = 300``), for objects below the SSD's 30 px
smallest anchor; its anchors come after the six COCO maps' (so their indices do not move).

"Priors follow the input": an ``H x W`` input gives feature maps of ``ceil``-halved sizes (TF "SAME"
padding; for multiples of 32 exactly ``H/16 .. H/512``), cell centres at ``(j + 0.5) * W / fw``, and
anchor sides ``scale * base`` pixels. ``base`` is what the scales are relative to: the network was
trained at 300 x 300, where ``base = 300`` and the first map's 19 x 19 cells are ~16 px; ``base =
0`` means ``min(H, W)`` (TF's rule for non-square inputs).
"""

from __future__ import annotations

import math

import numpy as np

from perception.core.boxes import CoreError, as_boxes, iou_matrix, nms
from perception.core.classes import DETECTION_GROUP_IDS
from perception.core.types import Detections

ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
BOX_SCALES = (10.0, 10.0, 5.0, 5.0)  # (y, x, h, w) scale factors of the box coder
NUM_LAYERS = 6
FIRST_STRIDE_DOWNS = 4  # the first predictor map is at stride 16: four "SAME" halvings of the input
FINE_STRIDE_DOWNS = 3  # the fine level's map is at stride 8
FINE_SPECS: tuple[tuple[float, float], ...] = ((0.05, 1.0), (0.07, 0.5), (0.07, 2.0))  # (scale, aspect w/h)


def layer_box_specs(
    num_layers: int = NUM_LAYERS, min_scale: float = 0.2, max_scale: float = 0.95
) -> list[list[tuple[float, float]]]:
    """Per feature map, its anchors as ``(scale, aspect_ratio)`` (TF ``ssd_anchor_generator`` order)."""
    scales = [min_scale + (max_scale - min_scale) * i / (num_layers - 1) for i in range(num_layers)] + [1.0]
    specs: list[list[tuple[float, float]]] = []
    for layer in range(num_layers):
        if layer == 0:
            specs.append([(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)])
        else:
            spec = [(scales[layer], ar) for ar in ASPECT_RATIOS]
            spec.append((math.sqrt(scales[layer] * scales[layer + 1]), 1.0))
            specs.append(spec)
    return specs


def anchors_per_cell() -> tuple[int, ...]:
    return tuple(len(s) for s in layer_box_specs())


def feature_shapes(height: int, width: int, num_layers: int = NUM_LAYERS) -> list[tuple[int, int]]:
    """``(h, w)`` of each predictor map for an input of ``height x width`` ("SAME" stride-2 halvings)."""
    if height <= 0 or width <= 0:
        raise CoreError(f"input size must be positive, got {height}x{width}")
    h, w = height, width
    for _ in range(FIRST_STRIDE_DOWNS):
        h, w = -(-h // 2), -(-w // 2)
    shapes = [(h, w)]
    for _ in range(num_layers - 1):
        h, w = -(-h // 2), -(-w // 2)
        shapes.append((h, w))
    return shapes


def fine_shape(height: int, width: int) -> tuple[int, int]:
    """``(h, w)`` of the fine level's stride-8 map ("SAME" halvings, as :func:`feature_shapes`)."""
    if height <= 0 or width <= 0:
        raise CoreError(f"input size must be positive, got {height}x{width}")
    h, w = height, width
    for _ in range(FINE_STRIDE_DOWNS):
        h, w = -(-h // 2), -(-w // 2)
    return h, w


def num_anchors(height: int, width: int, fine: bool = False) -> int:
    n = sum(fh * fw * a for (fh, fw), a in zip(feature_shapes(height, width), anchors_per_cell()))
    if fine:
        fh, fw = fine_shape(height, width)
        n += fh * fw * len(FINE_SPECS)
    return n


def ssd_anchors(height: int, width: int, base: float = 300.0, fine: bool = False) -> np.ndarray:
    """``(N, 4)`` float32 anchors ``(cx, cy, w, h)`` in input pixels for an ``height x width`` input;
    ``base`` 0 means ``min(height, width)``; ``fine`` appends the stride-8 level's anchors."""
    side = float(min(height, width)) if base <= 0 else float(base)
    out = []
    levels = list(zip(feature_shapes(height, width), layer_box_specs()))
    if fine:
        levels.append((fine_shape(height, width), list(FINE_SPECS)))
    for (fh, fw), spec in levels:
        cy = (np.arange(fh, dtype=np.float64) + 0.5) * height / fh
        cx = (np.arange(fw, dtype=np.float64) + 0.5) * width / fw
        wh = np.array([(s * side * math.sqrt(a), s * side / math.sqrt(a)) for s, a in spec])  # (A, 2)
        gy, gx = np.meshgrid(cy, cx, indexing="ij")  # (fh, fw)
        a = len(spec)
        layer = np.empty((fh, fw, a, 4), np.float64)
        layer[..., 0] = gx[:, :, None]
        layer[..., 1] = gy[:, :, None]
        layer[..., 2] = wh[None, None, :, 0]
        layer[..., 3] = wh[None, None, :, 1]
        out.append(layer.reshape(-1, 4))
    return np.concatenate(out, axis=0).astype(np.float32)


def decode_box_list(
    boxes: np.ndarray,
    scores: np.ndarray,
    score_thresh: float = 0.3,
    max_det: int = 100,
    nms_iou: float = 0.6,
    topk: int = 400,
    image_size: tuple[int, int] | None = None,
    fine_from: int | None = None,
    fine_iou: float = 0.3,
    vehicle_nms_iou: float = 1.0,
) -> Detections:
    """An anchor head's outputs for one image -- ``boxes`` (N, 4) xyxy input pixels and ``scores`` (N, C)
    in [0, 1] -- to :class:`Detections`: every (anchor, class) pair scoring >= ``score_thresh`` (the
    ``topk`` best), class-aware NMS, at most ``max_det``. Non-finite boxes or scores are dropped.

    ``fine_from``: the index of the first fine-level anchor (:func:`num_anchors` without it). Where a kept
    fine-level detection and a kept COCO-level one of the same class overlap by IoU >= ``fine_iou``, both are
    boxes of one small object (the levels localise a 30-50 px object differently, often below the NMS IoU) and
    the COCO-level box goes: the stride-8 level, trained for objects of that size, localises them better
    (measured: `perception eval --labels --canvas 2`, the real set seen by a 2x larger camera).

    ``vehicle_nms_iou`` < 1: :func:`suppress_in_groups` after the class-aware NMS (one van, not a car and a truck)."""
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise CoreError(f"boxes must be (N, 4) for one image, got {boxes.shape}")
    if scores.ndim != 2 or scores.shape[0] != boxes.shape[0]:
        raise CoreError(f"scores must be (N, C) with N = {boxes.shape[0]} boxes, got {scores.shape}")
    s = np.where(np.isfinite(scores), scores, -1.0)
    ai, ci = np.nonzero(s >= score_thresh)
    ok = np.isfinite(boxes[ai]).all(axis=1)
    ai, ci = ai[ok], ci[ok]
    sc = s[ai, ci].astype(np.float32)
    if len(sc) > topk:
        sel = np.argpartition(-sc, topk - 1)[:topk]
        ai, ci, sc = ai[sel], ci[sel], sc[sel]
    b = boxes[ai].astype(np.float32).reshape(-1, 4)
    if image_size is not None:
        b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0.0, image_size[1])
        b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0.0, image_size[0])
    valid = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    b, ci, sc = b[valid], ci[valid], sc[valid]
    ai = ai[valid]
    keep = nms(b, sc, class_ids=ci, iou_thresh=nms_iou, max_det=max_det)
    if fine_from is not None and len(keep):
        keep = _drop_fine_duplicates(keep, b, ci, ai >= fine_from, fine_iou)
    det = Detections(boxes=b[keep], scores=sc[keep], class_ids=ci[keep].astype(np.int64))
    return suppress_in_groups(det, vehicle_nms_iou)


def suppress_in_groups(det: Detections, iou: float) -> Detections:
    """``det`` without the boxes :func:`group_keep` drops (order kept; ``iou`` >= 1: ``det`` unchanged)."""
    return det if iou >= 1.0 or len(det) < 2 else det.select(group_keep(det.boxes, det.scores, det.class_ids, iou))


def group_keep(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou: float) -> np.ndarray:
    """Boolean mask: False for each box overlapping a higher-scoring box of ANOTHER class of its group
    (:data:`~perception.core.classes.DETECTION_GROUP_IDS`: car and truck) by more than ``iou`` -- one object scored
    as two classes keeps its best-scoring class. Same-class overlaps are NMS's business and left alone."""
    cls = np.asarray(class_ids, np.int64).reshape(-1)
    sc = np.asarray(scores, np.float64).reshape(-1)
    keep = np.ones(len(cls), bool)
    if iou >= 1.0 or len(cls) < 2:
        return keep
    known = (cls >= 0) & (cls < len(DETECTION_GROUP_IDS))
    groups = np.where(known, DETECTION_GROUP_IDS[np.where(known, cls, 0)], -1 - np.abs(cls))  # unknown ids: alone
    rival = (groups[:, None] == groups[None, :]) & (cls[:, None] != cls[None, :])
    cand = np.nonzero(rival.any(axis=1))[0]  # per frame: only boxes with a rival class present (usually few or none)
    if not len(cand):
        return keep
    b = as_boxes(boxes)[cand]
    overlap = rival[np.ix_(cand, cand)] & (iou_matrix(b, b) > iou)
    sub = np.ones(len(cand), bool)
    for i in np.argsort(-sc[cand], kind="stable"):
        if sub[i] and overlap[i].any():
            later = overlap[i] & (sc[cand] <= sc[cand][i])
            later[i] = False
            sub &= ~later
    keep[cand] = sub
    return keep


def _drop_fine_duplicates(keep: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray, fine: np.ndarray,
                          iou: float) -> np.ndarray:
    """``keep`` without the COCO-level entries that overlap a kept fine-level entry of the same class."""
    k_fine, k_coarse = keep[fine[keep]], keep[~fine[keep]]
    if not len(k_fine) or not len(k_coarse):
        return keep
    same = class_ids[k_fine][:, None] == class_ids[k_coarse][None, :]
    overlap = (iou_matrix(boxes[k_fine], boxes[k_coarse]) >= iou) & same
    dropped = set(k_coarse[overlap.any(axis=0)].tolist())
    return np.array([k for k in keep if k not in dropped], dtype=keep.dtype)
