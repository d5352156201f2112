"""Attention-guided refinement, the merge: one frame's detections from pass 1 and its native-resolution crops.

Pure numpy (no network): crop boxes are brought to frame pixels without those an inner crop edge cuts
(:func:`crop_detections_to_frame`) or that see a part of a larger pass-1 object (:func:`partial_views`); pass-1
boxes a crop resolves give way to it (:func:`superseded`); the rest is fused class-aware
(:func:`merge_detections`), and a car and a truck box of one vehicle keep the better class. :func:`merge_passes`
does it all; :class:`perception.pipeline.refine.RefiningPerceptor` calls it for every frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from perception.core.anchors import group_keep
from perception.core.boxes import as_boxes, box_area, inside_matrix, iou_matrix
from perception.core.types import Detections

if TYPE_CHECKING:
    from perception.pipeline.refine import RefineConfig


def inside_inner_edges(boxes: np.ndarray, region: np.ndarray, frame_hw: tuple[int, int], margin: float) -> np.ndarray:
    """Boolean mask: which boxes (frame pixels) lie inside ``region`` clear of its INNER edges by more than ``margin``
    pixels; an edge of the region that is an edge of the frame bounds nothing (an object there ends with the image)."""
    b = as_boxes(boxes)
    x0, y0, x1, y1 = (float(v) for v in region)
    fh, fw = frame_hw
    lo_x, lo_y = (x0 + margin if x0 > 0 else -np.inf), (y0 + margin if y0 > 0 else -np.inf)
    hi_x, hi_y = (x1 - margin if x1 < fw else np.inf), (y1 - margin if y1 < fh else np.inf)
    return np.asarray((b[:, 0] > lo_x) & (b[:, 1] > lo_y) & (b[:, 2] < hi_x) & (b[:, 3] < hi_y), bool)


def crop_detections_to_frame(det: Detections, region: np.ndarray, frame_hw: tuple[int, int],
                             edge_margin: float) -> Detections:
    """Crop detections in frame pixels, without those cut by an edge of the crop that is not a frame edge."""
    x0, y0 = float(region[0]), float(region[1])
    b = as_boxes(det.boxes) + np.array([x0, y0, x0, y0], np.float32)
    keep = inside_inner_edges(b, region, frame_hw, edge_margin)
    return Detections(b[keep], det.scores[keep], det.class_ids[keep])


def partial_views(crop: Detections, region: np.ndarray, pass1: Detections, frame_hw: tuple[int, int],
                  cover: float) -> Detections:
    """Crop detections (frame pixels) without the views of a part of a larger object: a box lying at least
    ``cover`` of its area inside a pass-1 box of its class that crosses an inner edge of the crop (the crop saw a
    part of that object; a detector's box of a truncated object seldom reaches the crop's edge, so
    :func:`crop_detections_to_frame`'s margin alone misses it)."""
    if len(crop) == 0 or len(pass1) == 0 or cover > 1.0:
        return crop
    p = as_boxes(pass1.boxes)
    crosses = ~inside_inner_edges(p, region, frame_hw, 0.0)
    if not crosses.any():
        return crop
    inside = inside_matrix(crop.boxes, p) >= cover
    same = np.asarray(crop.class_ids)[:, None] == np.asarray(pass1.class_ids)[None, :]
    return crop.select(~(inside & same & crosses[None, :]).any(axis=1))


def superseded(det: Detections, regions: np.ndarray, frame_hw: tuple[int, int], scale: float, cfg: RefineConfig,
               crop_dets: list[Detections] | None = None) -> Detections:
    """Pass-1 detections without those a crop resolves. A pass-1 box lying wholly inside a crop (clear of its inner
    edges by ``cfg.edge_margin``) gives way when it is small (``cfg.supersede_size`` network pixels at pass-1
    ``scale``), when the crop found a box of its class overlapping it by IoU >= ``cfg.supersede_iou`` (``crop_dets[k]``:
    crop k's detections in frame pixels) -- unless it is confident (``cfg.supersede_keep``) and at least
    ``cfg.resolved_size`` network pixels tall --, or when the crop did not find it and it scores under
    ``cfg.supersede_keep``. The crop saw that place at a higher resolution: kept, a low-resolution guess blurs the
    fused box or, misplaced by more than the fusion's IoU, adds a duplicate beside it, and an unsure one the closer
    look did not confirm is a likely false positive. A confident pass-1 box the crop missed stays: the crop's scale
    can be one the network misses an object at; so does a confident one pass 1 saw large enough to resolve, fused
    with the crop's box (the crop's alone was misplaced on real views). Measured on real views: `perception eval
    --labels ... --refine --canvas K [--shrink S] | --camera HxW | --closer F`, docs/real_eyes.md."""
    if len(det) == 0 or len(regions) == 0:
        return det
    b = det.boxes
    small = (b[:, 3] - b[:, 1]) * scale <= cfg.supersede_size
    drop = np.zeros(len(b), bool)
    for k, region in enumerate(regions):
        inside = inside_inner_edges(b, region, frame_hw, cfg.edge_margin)
        found = np.zeros(len(b), bool)
        if crop_dets is not None and k < len(crop_dets) and len(crop_dets[k]):
            c = crop_dets[k]
            same = np.asarray(det.class_ids)[:, None] == np.asarray(c.class_ids)[None, :]
            found = ((iou_matrix(b, c.boxes) >= cfg.supersede_iou) & same).any(axis=1)
        unsure = np.asarray(det.scores) < cfg.supersede_keep
        resolved = ~unsure & ((b[:, 3] - b[:, 1]) * scale >= cfg.resolved_size)
        drop |= inside & (small | (found & ~resolved) | unsure)
    return det.select(~drop)


def zoom_superseded(det: Detections, zoom: Detections, scale: float, cfg: RefineConfig) -> Detections:
    """Pass-1 detections without the large ones that box a part of an object the zoom-out saw whole. A pass-1 box at
    least ``cfg.large_size`` network pixels tall (``scale``: pass 1's network pixels per frame pixel) is in the band
    where pass 1 scores poorly and the zoom-out sees best: it goes when a larger zoom-out box of its class holds
    ``cfg.partial_cover`` of it without matching it (IoU under ``cfg.fuse_iou``): one half of a bus, the bus's
    middle. One the zoom-out matches is fused with it (:func:`merge_detections`), one it did not see stays (measured:
    dropping unsure ones too lost 0.006 synthetic mAP@0.5, and keeping the parts kept false positives on real
    views). ``zoom`` in frame pixels."""
    if len(det) == 0 or len(zoom) == 0:
        return det
    b = as_boxes(det.boxes)
    large = (b[:, 3] - b[:, 1]) * scale >= cfg.large_size
    if not large.any():
        return det
    z = as_boxes(zoom.boxes)
    same = np.asarray(det.class_ids)[:, None] == np.asarray(zoom.class_ids)[None, :]
    part = (inside_matrix(b, z) >= cfg.partial_cover) & (box_area(z)[None, :] > box_area(b)[:, None]) \
        & (iou_matrix(b, z) < cfg.fuse_iou)
    return det.select(~(large & (same & part).any(axis=1)))


def large_only(zoom: Detections, scale: float, cfg: RefineConfig) -> Detections:
    """The zoom-out's detections (frame pixels) at least ``cfg.large_size`` network pixels tall at pass 1's
    ``scale``: the band it is run for (smaller objects pass 1 and the crops see at a higher resolution)."""
    b = as_boxes(zoom.boxes)
    return zoom.select((b[:, 3] - b[:, 1]) * scale >= cfg.large_size)


def merge_detections(parts: list[Detections], fuse_iou: float, max_det: int) -> tuple[Detections, np.ndarray]:
    """Class-aware fusion of detections of several passes (same pixel frame).

    Boxes are taken best score first; each takes every not-yet-taken box of its class overlapping it by
    more than ``fuse_iou``; the fused box is their score-weighted mean, its score the best. Returns the
    fused detections (best first, at most ``max_det``) and, per output, the index of the part its best box
    came from.
    """
    if not parts or sum(len(p) for p in parts) == 0:
        return Detections(), np.zeros(0, np.int64)
    every = Detections.concatenate(parts)
    boxes, scores, cls = every.boxes, every.scores, every.class_ids
    src = np.concatenate([np.full(len(p), i, np.int64) for i, p in enumerate(parts)])
    order = np.argsort(-scores, kind="stable")
    iou = iou_matrix(boxes, boxes)
    taken = np.zeros(len(boxes), bool)
    out_b, out_s, out_c, out_src = [], [], [], []
    for i in order:
        if taken[i]:
            continue
        group = (~taken) & (cls == cls[i]) & (iou[i] > fuse_iou)
        group[i] = True
        taken |= group
        w = scores[group]
        out_b.append((boxes[group] * w[:, None]).sum(0) / w.sum())
        out_s.append(scores[i])
        out_c.append(cls[i])
        out_src.append(src[i])
        if len(out_b) >= max_det:
            break
    fused = Detections(np.asarray(out_b, np.float32).reshape(-1, 4), np.asarray(out_s, np.float32),
                       np.asarray(out_c, np.int64))
    return fused, np.asarray(out_src, np.int64)


def merge_passes(pass1: Detections, regions: np.ndarray, crop_dets: list[Detections], frame_hw: tuple[int, int],
                 scale: float, cfg: RefineConfig, vehicle_nms_iou: float,
                 max_det: int, zoom: Detections | None = None) -> tuple[Detections, np.ndarray]:
    """One frame's detections from pass 1 and its crops (``crop_dets[k]`` in crop k's pixels, ``regions[k]`` its
    window; ``scale``: pass 1's network pixels per frame pixel). Crop boxes cut by an inner crop edge
    (:func:`crop_detections_to_frame`) or seeing a part of a larger pass-1 object (:func:`partial_views`) go;
    pass-1 boxes a crop resolves give way to it (:func:`superseded`); the rest is fused (:func:`merge_detections`)
    and a car and a truck box of one vehicle keep the better class (:func:`~perception.core.anchors.group_keep`).
    ``zoom``: the zoom-out pass's detections in frame pixels, or None when it did not run; its large ones
    (:func:`large_only`) join, large pass-1 boxes they resolve give way (:func:`zoom_superseded`) and crop boxes
    seeing a part of one go. Returns the detections and, per detection, 0 if its best box came from pass 1, else
    1 + the crop's index (len(regions) + 1: the zoom-out). No crops and no zoom-out: pass 1 unchanged."""
    if len(regions) == 0 and zoom is None:
        return pass1, np.zeros(len(pass1), np.int64)
    large = large_only(zoom, scale, cfg) if zoom is not None else Detections()
    whole = Detections.concatenate([pass1, large])
    crops = [partial_views(crop_detections_to_frame(d, region, frame_hw, cfg.edge_margin), region, whole, frame_hw,
                           cfg.partial_cover) for d, region in zip(crop_dets, regions)]
    first = superseded(pass1, regions, frame_hw, scale, cfg, crops)
    parts = [zoom_superseded(first, large, scale, cfg) if zoom is not None else first, *crops, large]
    det, src = merge_detections(parts, cfg.fuse_iou, max_det)
    one = group_keep(det.boxes, det.scores, det.class_ids, vehicle_nms_iou)  # a car in one pass, a truck in another
    return det.select(one), src[one]
