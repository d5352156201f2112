"""Visualisation on uint8 RGB images: semantic colours, attention overlays, boxes, panels.

All functions return new arrays and never modify their inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from perception.core import classes
from perception.core.boxes import CoreError, as_boxes
from perception.core.types import Detections, GroundTruth

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_DET_COLORS: tuple[tuple[int, int, int], ...] = tuple(
    # the darker Cityscapes vehicle colours are hard to see on roads; brighten them for boxes
    tuple(int(min(255, v + 60)) for v in c.color)  # type: ignore[misc]
    for c in classes.DETECTION_CLASSES
)


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise CoreError(f"expected an (H, W, 3) RGB image, got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        rgb = np.clip(rgb * 255.0 if rgb.dtype.kind == "f" and rgb.max() <= 1.0 else rgb, 0, 255).astype(np.uint8)
    return rgb


def colorize_semantic(mask: np.ndarray) -> np.ndarray:
    """uint8 (H, W) semantic ids -> (H, W, 3) RGB with the class palette (unknown ids: black)."""
    if mask.ndim != 2:
        raise CoreError(f"semantic mask must be (H, W), got {mask.shape}")
    return classes.semantic_palette()[np.asarray(mask).astype(np.uint8)]


def overlay_heatmap(rgb: np.ndarray, att: np.ndarray, alpha: float = 0.45, normalize: bool = True) -> np.ndarray:
    """Blend a (h, w) map (resized to the image) coloured with the JET colour map over ``rgb``.

    ``normalize`` stretches the map to its own [min, max]; otherwise values are taken in [0, 1].
    """
    img = _check_rgb(rgb)
    a = np.asarray(att, dtype=np.float32).squeeze()
    if a.ndim != 2:
        raise CoreError(f"heat map must be (h, w) or (1, h, w), got {np.shape(att)}")
    h, w = img.shape[:2]
    if a.shape != (h, w):
        a = np.asarray(cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR), dtype=np.float32)
    if normalize:
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    u8 = np.clip(a * 255.0, 0, 255).astype(np.uint8)
    colored = cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(img, 1.0 - alpha, colored, alpha, 0.0)


def _label(img: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int], scale: float) -> None:
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
    y_top = y - th - base - 2
    if y_top < 0:  # no room above the box: put the label inside it
        y_top = y
    cv2.rectangle(img, (x, y_top), (x + tw + 4, y_top + th + base + 2), color, -1)
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    fg = (0, 0, 0) if luminance > 128 else (255, 255, 255)
    cv2.putText(img, text, (x + 2, y_top + th + 1), _FONT, scale, fg, 1, cv2.LINE_AA)


def draw_detections(
    rgb: np.ndarray,
    det: Detections,
    names: Sequence[str] = classes.DETECTION_NAMES,
    gt: GroundTruth | None = None,
) -> np.ndarray:
    """Boxes with "name score [att]" labels; ground truth (if given) as thin white boxes, ignored ones grey."""
    img = _check_rgb(rgb).copy()
    h, w = img.shape[:2]
    thick = max(1, round(min(h, w) / 240))
    scale = max(0.35, min(h, w) / 900)
    if gt is not None:
        ignore = gt.ignore if len(gt.ignore) == len(gt) else np.zeros(len(gt), bool)
        for b, ign in zip(as_boxes(gt.boxes), ignore):
            color = (128, 128, 128) if ign else (255, 255, 255)
            cv2.rectangle(img, (round(b[0]), round(b[1])), (round(b[2]), round(b[3])), color, 1, cv2.LINE_AA)
    order = np.argsort(det.scores)  # best last, drawn on top
    for k in order:
        b = det.boxes[k]
        cid = int(det.class_ids[k])
        color = _DET_COLORS[cid] if 0 <= cid < len(_DET_COLORS) else (255, 255, 0)
        name = names[cid] if 0 <= cid < len(names) else str(cid)
        p1, p2 = (round(b[0]), round(b[1])), (round(b[2]), round(b[3]))
        cv2.rectangle(img, p1, p2, color, thick, cv2.LINE_AA)
        text = f"{name} {det.scores[k]:.2f}"
        if det.attention is not None:
            text += f" a{det.attention[k]:.1f}"
        _label(img, text, max(0, p1[0]), max(0, p1[1]), color, scale)
    return img


def _caption(img: np.ndarray, title: str, bar: int) -> np.ndarray:
    out = np.zeros((img.shape[0] + bar, img.shape[1], 3), np.uint8)
    out[bar:] = img
    scale = bar / 30.0
    cv2.putText(out, title, (4, bar - max(3, bar // 4)), _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def side_by_side(
    images: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    cols: int | None = None,
    height: int | None = None,
) -> np.ndarray:
    """One RGB panel: images resized to a common height (default: the first one's), a caption bar
    above each, laid out in rows of ``cols`` (default: all in one row)."""
    if not images:
        raise CoreError("side_by_side needs at least one image")
    if titles is not None and len(titles) != len(images):
        raise CoreError(f"{len(titles)} titles for {len(images)} images; pass one title per image")
    rgbs = [_check_rgb(im) for im in images]
    th = height or rgbs[0].shape[0]
    resized = [
        im if im.shape[0] == th else cv2.resize(im, (max(1, round(im.shape[1] * th / im.shape[0])), th)) for im in rgbs
    ]
    bar = max(16, min(40, th // 14)) if titles is not None else 0
    tiles = [_caption(im, titles[i], bar) if titles is not None else im for i, im in enumerate(resized)]
    cols = cols or len(tiles)
    rows = []
    for r in range(0, len(tiles), cols):
        row = tiles[r : r + cols]
        rows.append(np.concatenate(row, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(rows, axis=0)


def draw_bev(
    size: tuple[int, int],
    centers: np.ndarray,
    dims: np.ndarray,
    yaws: np.ndarray,
    class_ids: np.ndarray,
    velocities: np.ndarray | None = None,
    labels: Sequence[str] | None = None,
    forward_m: float = 60.0,
    lateral_m: float = 30.0,
) -> np.ndarray:
    """A bird's-eye view in the vehicle frame (x forward = up, y left = left) as an (H, W) = ``size`` RGB
    image: the ego at the bottom centre, a 10 m grid, each object's yaw-rotated footprint (``centers``
    (N, 2|3) m, ``dims`` (N, 2|3) length/width, ``yaws`` (N,) rad, ``class_ids``) in its class colour,
    its velocity (``velocities`` (N, 2|3) m/s, vehicle frame) as an arrow to where it is in 1 s, and
    ``labels`` beside it. Objects beyond ``forward_m`` ahead (or 5 m behind) and ``lateral_m`` aside are
    clipped by the image."""
    h, w = int(size[0]), int(size[1])
    if h < 16 or w < 16:
        raise CoreError(f"bird's-eye view of {w}x{h} pixels is too small")
    img = np.full((h, w, 3), 24, np.uint8)
    scale = min((h - 10) / (forward_m + 5.0), w / (2.0 * lateral_m))  # pixels per metre
    origin = np.array([w / 2.0, h - 5.0 * scale - 5.0])

    def px(xy: np.ndarray) -> np.ndarray:  # vehicle (x fwd, y left) -> pixel (u right, v down)
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        return np.stack([origin[0] - xy[:, 1] * scale, origin[1] - xy[:, 0] * scale], 1)

    for r in range(10, int(forward_m) + 1, 10):  # range rings every 10 m
        cv2.circle(img, tuple(int(v) for v in origin), int(r * scale), (60, 60, 60), 1, cv2.LINE_AA)
        cv2.putText(img, f"{r} m", (int(origin[0]) + 3, int(origin[1] - r * scale) + 12), _FONT, 0.35,
                    (110, 110, 110), 1, cv2.LINE_AA)  # fmt: skip
    ego = px(np.array([[2.4, 0.9], [2.4, -0.9], [-2.4, -0.9], [-2.4, 0.9]]) - np.array([1.0, 0.0]))
    cv2.fillPoly(img, [ego.round().astype(np.int32)], (230, 230, 230))
    n = len(class_ids)
    c = np.asarray(centers, np.float64).reshape(n, -1)[:, :2] if n else np.zeros((0, 2))
    d = np.asarray(dims, np.float64).reshape(n, -1)[:, :2] if n else np.zeros((0, 2))
    for i in range(n):
        cid = int(class_ids[i])
        color = _DET_COLORS[cid] if 0 <= cid < len(_DET_COLORS) else (255, 255, 0)
        cy, sy = np.cos(float(yaws[i])), np.sin(float(yaws[i]))
        half = 0.5 * d[i]
        corners = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]], np.float64) * half
        corners = corners @ np.array([[cy, sy], [-sy, cy]]) + c[i]
        poly = px(corners).round().astype(np.int32)
        cv2.polylines(img, [poly], True, color, 2, cv2.LINE_AA)
        tick = px(np.stack([c[i], c[i] + half[0] * np.array([cy, sy])])).round().astype(int)  # the heading
        cv2.line(img, (int(tick[0, 0]), int(tick[0, 1])), (int(tick[1, 0]), int(tick[1, 1])), color, 1, cv2.LINE_AA)
        if velocities is not None:
            v = np.asarray(velocities[i], np.float64)[:2]
            if float(np.hypot(v[0], v[1])) >= 0.2:
                a, b = px(c[i])[0], px(c[i] + v)[0]
                cv2.arrowedLine(img, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), (255, 255, 255), 1, cv2.LINE_AA,
                                tipLength=0.25)  # fmt: skip
        if labels is not None:
            p = px(c[i])[0]
            cv2.putText(img, labels[i], (int(p[0]) + 6, int(p[1]) - 4), _FONT, 0.35, color, 1, cv2.LINE_AA)
    return img
