"""Real images for training the real-eyed network without labels: unlabelled photos and video frames, random
zoom/flip/letterbox batches (carrying pseudo-labels along), zoom pseudo-labels from a trained network, and the
attention target taken from the original detector's confident boxes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from perception.core.letterbox import letterbox


def real_frames(dirs: Sequence[str], video: str, frames: tuple[int, int], every: int) -> list[np.ndarray]:
    """Unlabelled real images (RGB uint8): every image in ``dirs``, then every ``every``-th of the video's
    frames ``frames`` (start, stop)."""
    from perception.footage.source import list_images

    out: list[np.ndarray] = []
    for d in dirs:
        if not Path(d).is_dir():
            raise SystemExit(f"no folder {d} of unlabelled real photos; fetch it with `make data`")
        for p in list_images(Path(d)):
            bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if bgr is not None:
                out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return out + _video_frames(video, frames, every)


def _video_frames(video: str, frames: tuple[int, int], every: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(video)
    if not cap.isOpened():
        raise SystemExit(f"cannot open {video}; fetch it with `make data`")
    out, i = [], 0
    try:
        while i < frames[1]:
            ok, bgr = cap.read()
            if not ok:
                break
            if i >= frames[0] and (i - frames[0]) % every == 0:
                out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            i += 1
    finally:
        cap.release()
    return out


def real_batch(frames: list[np.ndarray], n: int, h: int, w: int, rng: np.random.Generator) -> torch.Tensor:
    """``n`` real frames, each a random zoom (0.6-1.0 of the frame, random place, random flip) letterboxed
    to ``h x w``: (n, 3, h, w) float in [0, 1]."""
    return real_batch_labelled(frames, None, n, h, w, rng)[0]


PseudoLabels = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes (M, 4) xyxy image pixels, class ids, scores


def real_batch_labelled(frames: list[np.ndarray], labels: list[PseudoLabels] | None, n: int, h: int, w: int,
                        rng: np.random.Generator) -> tuple[torch.Tensor, list[PseudoLabels]]:
    """:func:`real_batch`, and each frame's pseudo-labels carried through the same crop, flip and letterbox
    (boxes cut to less than half their area by the crop get score 0.4: unknown)."""
    out, mapped = [], []
    for _ in range(n):
        i = int(rng.integers(len(frames)))
        img = frames[i]
        fh, fw = img.shape[:2]
        s = float(rng.uniform(0.6, 1.0))
        ch, cw = int(fh * s), int(fw * s)
        y0, x0 = int(rng.integers(0, fh - ch + 1)), int(rng.integers(0, fw - cw + 1))
        crop = img[y0:y0 + ch, x0:x0 + cw]
        flip = bool(rng.random() < 0.5)
        if flip:
            crop = crop[:, ::-1]
        boxed, m = letterbox(np.ascontiguousarray(crop), w, h)
        out.append(torch.from_numpy(boxed).permute(2, 0, 1).float() / 255.0)
        if labels is None:
            continue
        boxes, cls, scores = labels[i]
        b = boxes.astype(np.float32) - np.array([x0, y0, x0, y0], np.float32)
        area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
        b = np.clip(b, 0.0, np.array([cw, ch, cw, ch], np.float32))
        kept = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        sc = np.where(kept >= 0.5 * np.maximum(area, 1e-6), scores, np.minimum(scores, 0.4)).astype(np.float32)
        if flip:
            b = np.stack([cw - b[:, 2], b[:, 1], cw - b[:, 0], b[:, 3]], axis=1)
        sx, sy = m.new_w / m.src_w, m.new_h / m.src_h
        b = b * np.array([sx, sy, sx, sy], np.float32) + np.array([m.pad_x, m.pad_y, m.pad_x, m.pad_y], np.float32)
        ok = (b[:, 2] - b[:, 0] >= 2) & (b[:, 3] - b[:, 1] >= 2)
        mapped.append((b[ok], cls[ok], sc[ok]))
    return torch.stack(out), mapped


def real_batch_mosaic(frames: list[np.ndarray], labels: list[PseudoLabels], n: int, h: int, w: int,
                      rng: np.random.Generator, mosaic: float,
                      grids: Sequence[int] = (2,)) -> tuple[torch.Tensor, list[PseudoLabels]]:
    """:func:`real_batch_labelled`, except that each of the ``n`` images is, with probability ``mosaic``, a g x g
    mosaic (g drawn from ``grids``) of such images at 1/g of the size: real objects at 1/g of the scale, among
    real clutter -- how a camera g times as large (1600 x 900 against 800 x 450) shows them to the network.
    Each tile's pseudo-labels are carried into the mosaic."""
    if not 0.0 <= mosaic <= 1.0:
        raise ValueError(f"mosaic probability must be in [0, 1], got {mosaic}")
    if not grids or any(not 2 <= g <= 4 for g in grids):
        raise ValueError(f"mosaic grids must be 2, 3 or 4 tiles a side, got {tuple(grids)}")
    imgs, mapped = real_batch_labelled(frames, labels, n, h, w, rng)
    if mosaic == 0.0:  # draw nothing more: a run without mosaics sees the batches it saw before they existed
        return imgs, mapped
    for k in range(n):
        if rng.random() >= mosaic:
            continue
        g = int(grids[int(rng.integers(len(grids)))]) if len(grids) > 1 else int(grids[0])
        ys, xs = np.linspace(0, h, g + 1).astype(int), np.linspace(0, w, g + 1).astype(int)
        img = torch.empty_like(imgs[k])
        boxes, cls, scores = [], [], []
        for r in range(g):
            for c in range(g):
                th, tw = int(ys[r + 1] - ys[r]), int(xs[c + 1] - xs[c])
                tile, tile_labels = real_batch_labelled(frames, labels, 1, th, tw, rng)
                img[:, ys[r]:ys[r + 1], xs[c]:xs[c + 1]] = tile[0]
                b, cl, sc = tile_labels[0]
                boxes.append(b + np.array([xs[c], ys[r], xs[c], ys[r]], np.float32))
                cls.append(cl)
                scores.append(sc)
        imgs[k] = img
        mapped[k] = (np.concatenate(boxes).astype(np.float32), np.concatenate(cls), np.concatenate(scores))
    return imgs, mapped


@torch.no_grad()
def zoom_pseudo_labels(model: Any, img: np.ndarray, h: int, w: int, zoom: float, amp: torch.dtype | None = None,
                       thresh: float = 0.3) -> PseudoLabels:
    """Pseudo-labels of one real RGB image: ``model`` (a trained network) on the whole image letterboxed to
    ``h x w`` plus on ``h x w`` tiles of the image upscaled ``zoom`` times that much (overlapping by a quarter;
    detections touching a tile's inner edge are dropped), merged by class-aware NMS; boxes in image pixels."""
    from perception.core.anchors import decode_box_list
    from perception.core.boxes import nms
    from perception.core.letterbox import PAD_VALUE

    fh, fw = img.shape[:2]
    r = min(h / fh, w / fw) * zoom
    big = cv2.resize(img, (max(1, round(fw * r)), max(1, round(fh * r))), interpolation=cv2.INTER_LINEAR)
    bh, bw = big.shape[:2]

    def starts(total: int, win: int) -> list[int]:
        if total <= win:
            return [0]
        k = math.ceil((total - win) / (0.75 * win)) + 1
        return [round(v) for v in np.linspace(0, total - win, k)]

    tiles, places = [], []
    for ty in starts(bh, h):
        for tx in starts(bw, w):
            canvas = np.full((h, w, 3), PAD_VALUE, np.uint8)
            t = big[ty:ty + h, tx:tx + w]
            canvas[: t.shape[0], : t.shape[1]] = t
            tiles.append(canvas)
            places.append((tx, ty, t.shape[1], t.shape[0]))
    whole, m = letterbox(img, w, h)
    batch = torch.from_numpy(np.stack([whole, *tiles])).permute(0, 3, 1, 2).float() / 255.0
    boxes_all, cls_all, sc_all = [], [], []
    for start in range(0, len(batch), 4):
        with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
            out = model(batch[start:start + 4])
        for j in range(out["boxes"].shape[0]):
            k = start + j
            if k == 0:
                det = decode_box_list(out["boxes"][j].float().numpy(), out["scores"][j].float().numpy(), thresh,
                                      image_size=(h, w))
                sx, sy = m.new_w / m.src_w, m.new_h / m.src_h
                b = (det.boxes - np.array([m.pad_x, m.pad_y, m.pad_x, m.pad_y])) / np.array([sx, sy, sx, sy])
            else:
                tx, ty, tw, th = places[k - 1]
                det = decode_box_list(out["boxes"][j].float().numpy(), out["scores"][j].float().numpy(), thresh,
                                      image_size=(th, tw))
                b = det.boxes.astype(np.float64)
                margin = 4.0
                cut = (((b[:, 0] <= margin) & (tx > 0)) | ((b[:, 1] <= margin) & (ty > 0))
                       | ((b[:, 2] >= tw - margin) & (tx + tw < bw)) | ((b[:, 3] >= th - margin) & (ty + th < bh)))
                b, det = b[~cut], det.select(~cut)
                b = (b + np.array([tx, ty, tx, ty])) / r
            boxes_all.append(b.astype(np.float32))
            cls_all.append(det.class_ids)
            sc_all.append(det.scores)
    boxes = np.concatenate(boxes_all).reshape(-1, 4)
    cls = np.concatenate(cls_all).astype(np.int64)
    sc = np.concatenate(sc_all).astype(np.float32)
    keep = nms(boxes, sc, class_ids=cls, iou_thresh=0.5, max_det=200)
    return boxes[keep], cls[keep], sc[keep]


def teacher_saliency(boxes: torch.Tensor, scores: torch.Tensor, height: int, width: int, stride: int = 8,
                     sure: float = 0.5, unsure: float = 0.25) -> torch.Tensor:
    """The attention target on real frames: (B, 1, H/stride, W/stride) coverage of the original detector's
    confident objects (score >= ``sure``); cells of its unsure ones (``unsure`` .. ``sure``) are unknown (-1)."""
    from perception.core.anchors import decode_box_list

    out = np.zeros((len(boxes), 1, height // stride, width // stride), np.float32)
    fine = np.zeros((height, width), np.float32)
    for i in range(len(boxes)):
        det = decode_box_list(boxes[i].float().numpy(), scores[i].float().numpy(), unsure, image_size=(height, width))
        fine[:] = 0.0
        unknown = np.zeros((height, width), bool)
        for b, s in zip(det.boxes.astype(int), det.scores):
            if s >= sure:
                fine[b[1]:b[3], b[0]:b[2]] = 1.0
            else:
                unknown[b[1]:b[3], b[0]:b[2]] = True
        cells = fine.reshape(height // stride, stride, width // stride, stride).mean(axis=(1, 3))
        unk = unknown.reshape(height // stride, stride, width // stride, stride).any(axis=(1, 3))
        out[i, 0] = np.where(unk & (cells == 0), -1.0, cells)
    return torch.from_numpy(out)
