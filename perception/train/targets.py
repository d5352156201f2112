"""Training targets for the stan detection head (numpy only).

:func:`encode_targets` turns ground-truth boxes in network-input pixels into stride-``s`` maps:

- ``heatmap``    (C, h, w) float32: CenterNet gaussians per class, exactly 1.0 at each object's
  centre cell (the cell containing the box centre), radius from the box size (CenterNet's
  ``gaussian_radius`` at min IoU 0.7). Objects of a few pixels still get their centre cell = 1.
- ``box``        (4, h, w) float32: (left, top, right, bottom) distances from the cell centre
  ``((j + .5) s, (i + .5) s)`` to the box edges, in strides, >= 0, at the centre cell and at
  the neighbouring cells (within ``reg_radius`` cells) whose centres lie inside the box.
- ``reg_weight`` (1, h, w) float32: regression weight (1 at centre cells, the heatmap gaussian
  value at neighbours, 0 elsewhere). Where several boxes claim a cell the smaller box wins.
- ``hm_ignore``  (1, h, w) float32: 1 where the heatmap loss must ignore negatives — the cells
  covered by ``ignore`` boxes (too small/occluded to score); never at positive centres.
- ``objmask``    (1, h, w) float32: the object-saliency target of the attention map — the fraction of
  each cell covered by objects (every box, ignored ones included: they are real objects, just too
  small to score). A source with instance masks replaces it with the exact pixel coverage
  (:func:`object_mask_target`); an image without detection labels has it all -1 (no attention loss).

For a box smaller than a cell the centre cell's centre can lie outside it; its ltrb targets
are clamped at 0, so decoding gives the box up to half a stride.
"""

from __future__ import annotations

import math

import numpy as np

from perception.core.boxes import box_mask

TARGET_KEYS = ("heatmap", "box", "reg_weight", "hm_ignore", "objmask")


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius (in the units of ``height``/``width``) keeping IoU >= ``min_overlap``."""
    a1, b1 = 1.0, height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(max(0.0, b1**2 - 4 * a1 * c1))) / 2
    a2, b2 = 4.0, 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(max(0.0, b2**2 - 4 * a2 * c2))) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(max(0.0, b3**2 - 4 * a3 * c3))) / 2
    return min(r1, r2, r3)


def draw_gaussian(heatmap: np.ndarray, ci: int, cj: int, radius: int) -> None:
    """Max-combine a gaussian of ``radius`` cells (sigma = (2r+1)/6), peak 1 at (ci, cj), in place."""
    h, w = heatmap.shape
    sigma = (2 * radius + 1) / 6.0
    ys = np.arange(-radius, radius + 1, dtype=np.float32)
    g = np.exp(-(ys[:, None] ** 2 + ys[None, :] ** 2) / (2 * sigma * sigma)).astype(np.float32)
    top, bottom = min(ci, radius), min(h - ci, radius + 1)
    left, right = min(cj, radius), min(w - cj, radius + 1)
    region = heatmap[ci - top : ci + bottom, cj - left : cj + right]
    patch = g[radius - top : radius + bottom, radius - left : radius + right]
    np.maximum(region, patch, out=region)


def object_mask_target(mask: np.ndarray, stride: int = 8) -> np.ndarray:
    """(1, H/stride, W/stride) float32: the fraction of each ``stride`` x ``stride`` cell where ``mask``
    (H, W, bool or 0/1) is set -- the attention map's target at its own resolution."""
    m = np.asarray(mask)
    h, w = m.shape
    if h % stride or w % stride:
        raise ValueError(f"mask size {h}x{w} must be a multiple of stride {stride}")
    cells = m.astype(np.float32).reshape(h // stride, stride, w // stride, stride)
    return cells.mean(axis=(1, 3))[None]


def _clip_boxes(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    out = boxes.astype(np.float32, copy=True)
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0.0, float(width))
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0.0, float(height))
    return out


def encode_targets(
    gt_boxes: np.ndarray,
    class_ids: np.ndarray,
    ignore: np.ndarray | None,
    height: int,
    width: int,
    num_classes: int,
    stride: int = 8,
    reg_radius: int = 1,
    min_size: float = 0.5,
) -> dict[str, np.ndarray]:
    """Heatmap/box/weight/ignore targets (see module docstring) for one image of ``height x width``.

    ``gt_boxes`` (N, 4) xyxy in network-input pixels (clipped to the image here), ``class_ids``
    (N,) detection ids in ``[0, num_classes)``, ``ignore`` (N,) bool or None. Boxes narrower or
    lower than ``min_size`` pixels after clipping are dropped.
    """
    if height % stride or width % stride:
        raise ValueError(f"image size {height}x{width} must be a multiple of stride {stride}")
    boxes = np.asarray(gt_boxes, dtype=np.float32).reshape(-1, 4)
    cls = np.asarray(class_ids, dtype=np.int64).reshape(-1)
    ign = np.zeros(len(boxes), bool) if ignore is None else np.asarray(ignore, dtype=bool).reshape(-1)
    if not (len(boxes) == len(cls) == len(ign)):
        raise ValueError(f"gt_boxes {boxes.shape}, class_ids {cls.shape}, ignore {ign.shape} disagree in length")
    if len(cls) and (cls.min() < 0 or cls.max() >= num_classes):
        raise ValueError(f"class ids must be in [0, {num_classes}); got {sorted(set(cls.tolist()))}")
    h, w = height // stride, width // stride
    heatmap = np.zeros((num_classes, h, w), np.float32)
    box = np.zeros((4, h, w), np.float32)
    reg_weight = np.zeros((1, h, w), np.float32)
    hm_ignore = np.zeros((1, h, w), np.float32)
    claim_area = np.full((h, w), np.inf, np.float32)  # area of the box owning each regression cell

    boxes = _clip_boxes(boxes, height, width)
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    keep = (bw >= min_size) & (bh >= min_size)
    cell_x = (np.arange(w, dtype=np.float32) + 0.5) * stride
    cell_y = (np.arange(h, dtype=np.float32) + 0.5) * stride
    positives: list[tuple[int, int]] = []

    # ignored regions first, then objects from largest to smallest (smaller boxes win shared cells)
    for k in np.flatnonzero(keep & ign):
        x1, y1, x2, y2 = boxes[k]
        cols = (cell_x >= x1) & (cell_x <= x2)
        rows = (cell_y >= y1) & (cell_y <= y2)
        hm_ignore[0][np.ix_(rows, cols)] = 1.0
        ci = min(int((y1 + y2) / 2 // stride), h - 1)
        cj = min(int((x1 + x2) / 2 // stride), w - 1)
        hm_ignore[0, ci, cj] = 1.0

    order = [k for k in np.argsort(-(bw * bh)) if keep[k] and not ign[k]]
    for k in order:
        x1, y1, x2, y2 = (float(v) for v in boxes[k])
        ci = min(int(((y1 + y2) / 2) // stride), h - 1)
        cj = min(int(((x1 + x2) / 2) // stride), w - 1)
        radius = max(0, int(gaussian_radius(bh[k] / stride, bw[k] / stride)))
        draw_gaussian(heatmap[cls[k]], ci, cj, radius)
        positives.append((ci, cj))
        area = float(bw[k] * bh[k])
        sigma = (2 * max(radius, 1) + 1) / 6.0
        for di in range(-reg_radius, reg_radius + 1):
            for dj in range(-reg_radius, reg_radius + 1):
                i, j = ci + di, cj + dj
                if not (0 <= i < h and 0 <= j < w) or area > claim_area[i, j]:
                    continue
                px, py = cell_x[j], cell_y[i]
                centre = di == 0 and dj == 0
                if not centre and not (x1 < px < x2 and y1 < py < y2):
                    continue
                ltrb = np.array([px - x1, py - y1, x2 - px, y2 - py], np.float32) / stride
                box[:, i, j] = np.maximum(ltrb, 0.0)
                reg_weight[0, i, j] = 1.0 if centre else math.exp(-(di * di + dj * dj) / (2 * sigma * sigma))
                claim_area[i, j] = area
    for ci, cj in positives:  # a real object's centre is never ignored
        hm_ignore[0, ci, cj] = 0.0
    objmask = object_mask_target(box_mask(boxes[keep], height, width), stride)
    return {"heatmap": heatmap, "box": box, "reg_weight": reg_weight, "hm_ignore": hm_ignore, "objmask": objmask}


def unsupervised_targets(height: int, width: int, num_classes: int, stride: int = 8) -> dict[str, np.ndarray]:
    """Targets for an image WITHOUT detection labels: everything ignored, no regression."""
    t = encode_targets(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), None, height, width, num_classes, stride)
    t["hm_ignore"][:] = 1.0
    t["objmask"][:] = -1.0  # unknown object layout: no attention supervision
    return t


def decode_ltrb(box: np.ndarray, i: int, j: int, stride: int = 8) -> np.ndarray:
    """xyxy pixels of the ltrb ``box`` (4, h, w) at cell (i, j) — the inverse of the encoding."""
    cx, cy = (j + 0.5) * stride, (i + 0.5) * stride
    left, top, right, bottom = (float(v) * stride for v in box[:, i, j])
    return np.array([cx - left, cy - top, cx + right, cy + bottom], np.float32)
