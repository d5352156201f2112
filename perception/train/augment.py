"""Photometric and geometric augmentation of training clips (numpy + OpenCV).

A clip is T consecutive frames that a temporal model streams, so every random choice (flip, zoom
and crop, colour jitter, blur, JPEG quality) is drawn once per clip and applied to every frame
alike; only the sensor noise differs from frame to frame, as it does in a camera.

The geometric part is one function, :func:`apply_geometry`, that maps an RGB clip, any number of
label masks (semantic, instance, or any other per-pixel target) and the per-frame ground truth
with the same transform: a zoom (scale) about a random crop window, then an optional horizontal
flip. Masks are resampled nearest-neighbour (labels stay labels; pixels outside the source get a
fill value, ``IGNORE_INDEX`` for the semantic mask), boxes are mapped, clipped to the image, and
dropped when cropped out entirely; boxes left too small or mostly cut off are marked ``ignore``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from perception.core.config import dataclass_kwargs
from perception.core.types import GroundTruth
from perception.train import TrainError


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation; the defaults are the long-standing recipe (flip, brightness, contrast,
    noise) and every newer effect is off until set.

    - ``hue``: max hue rotation in degrees; ``saturation``: +- saturation gain.
    - ``blur``: probability of a gaussian blur with sigma in ``blur_sigma`` pixels.
    - ``jpeg``: probability of a JPEG re-encode at a quality in ``jpeg_quality``.
    - ``scale``: zoom range, drawn log-uniformly (> 1 zooms in and crops, < 1 zooms out and pads);
      (1, 1) is off. The crop window is uniform over the positions that keep the image covered
      (zoom in) or inside the frame (zoom out).
    - After a zoom, boxes lower than ``min_box_height`` pixels or keeping less than
      ``min_box_fraction`` of their area inside the image are marked ignore.
    """

    hflip: float = 0.5  # probability, same for the whole clip
    brightness: float = 0.25  # +- gain
    contrast: float = 0.25
    noise_std: float = 0.02  # in [0, 1] units; 0 disables
    hue: float = 0.0
    saturation: float = 0.0
    blur: float = 0.0
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    jpeg: float = 0.0
    jpeg_quality: tuple[int, int] = (30, 90)
    scale: tuple[float, float] = (1.0, 1.0)
    min_box_height: float = 6.0
    min_box_fraction: float = 0.1
    # temporal robustness: probability that each frame after a clip's first gets an occluder pasted over
    # it (a noisy flat rectangle covering ``cutout_area`` of the image). Its detection labels are kept
    # (segmentation is ignored under the occluder), so what it hides can only be recovered from the
    # memory of the earlier frames: a schedule in which the temporal path cannot be ignored.
    cutout: float = 0.0
    cutout_area: tuple[float, float] = (0.1, 0.4)

    def __post_init__(self) -> None:
        for name in ("hflip", "blur", "jpeg", "cutout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise TrainError(f"augment.{name} = {getattr(self, name)} is a probability: use 0..1")
        if not 0.0 <= self.hue <= 180.0:
            raise TrainError(f"augment.hue = {self.hue}: use a max rotation in degrees, 0..180")
        if not 0.0 <= self.saturation < 1.0 or self.brightness < 0 or self.contrast < 0 or self.noise_std < 0:
            raise TrainError("augment.saturation must be in [0, 1) and brightness, contrast, noise_std >= 0")
        lo, hi = self.scale
        if not 0.25 <= lo <= hi <= 4.0:
            raise TrainError(f"augment.scale = {self.scale}: use (min, max) zoom with 0.25 <= min <= max <= 4")
        qlo, qhi = self.jpeg_quality
        if not 1 <= qlo <= qhi <= 100:
            raise TrainError(f"augment.jpeg_quality = {self.jpeg_quality}: use (min, max) in 1..100")
        alo, ahi = self.cutout_area
        if not 0.0 < alo <= ahi <= 1.0:
            raise TrainError(f"augment.cutout_area = {self.cutout_area}: use (min, max) image fractions in (0, 1]")
        slo, shi = self.blur_sigma
        if not 0.0 < slo <= shi:
            raise TrainError(f"augment.blur_sigma = {self.blur_sigma}: use (min, max) pixels with 0 < min <= max")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> AugmentConfig:
        """Overrides of the defaults (``TrainConfig.augment``); unknown keys are refused."""
        kw, unknown = dataclass_kwargs(cls, d or {})
        if unknown:
            raise TrainError(f"unknown augment option(s) {unknown}; known: {sorted(f.name for f in fields(cls))}")
        return cls(**kw)

    @property
    def zooms(self) -> bool:
        return self.scale != (1.0, 1.0)


# ---------------------------------------------------------------- geometry ----


@dataclass(frozen=True)
class Geometry:
    """x' = sx x + tx, y' = sy y + ty in continuous pixel coordinates (pixel i covers [i, i + 1)),
    into an output of ``height`` x ``width``, then a horizontal flip x'' = width - x' if ``flip``."""

    height: int
    width: int
    sx: float = 1.0
    sy: float = 1.0
    tx: float = 0.0
    ty: float = 0.0
    flip: bool = False

    @property
    def affine_identity(self) -> bool:
        return self.sx == 1.0 and self.sy == 1.0 and self.tx == 0.0 and self.ty == 0.0

    def map_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) xyxy boxes mapped (not clipped)."""
        b = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
        if not self.affine_identity:
            b[:, [0, 2]] = b[:, [0, 2]] * np.float32(self.sx) + np.float32(self.tx)
            b[:, [1, 3]] = b[:, [1, 3]] * np.float32(self.sy) + np.float32(self.ty)
        if self.flip and len(b):
            b[:, [0, 2]] = self.width - b[:, [2, 0]]
        return b

    def source_index(self, n_out: int, scale: float, shift: float, n_in: int) -> np.ndarray:
        """Nearest source pixel of every output pixel along one axis (-1 outside the source)."""
        src = np.floor(((np.arange(n_out) + 0.5) - shift) / scale).astype(np.int64)
        return np.where((src >= 0) & (src < n_in), src, -1)


def _warp_mask(mask: np.ndarray, geo: Geometry, fill: int) -> np.ndarray:
    """(T, H, W) label masks (any dtype) resampled nearest-neighbour."""
    ys = geo.source_index(geo.height, geo.sy, geo.ty, mask.shape[1])
    xs = geo.source_index(geo.width, geo.sx, geo.tx, mask.shape[2])
    out = mask[:, np.maximum(ys, 0)][:, :, np.maximum(xs, 0)]
    out[:, ys < 0] = fill
    out[:, :, xs < 0] = fill
    return out


def _warp_rgb(rgb: np.ndarray, geo: Geometry) -> np.ndarray:
    """(T, H, W, C) images resampled bilinearly; outside the source: the clip's mean colour."""
    import cv2

    m = np.array([[geo.sx, 0.0, geo.tx + 0.5 * geo.sx - 0.5], [0.0, geo.sy, geo.ty + 0.5 * geo.sy - 0.5]])
    border = tuple(float(c) for c in rgb[:, ::8, ::8].reshape(-1, rgb.shape[-1]).mean(0))
    out = np.empty((len(rgb), geo.height, geo.width, rgb.shape[-1]), rgb.dtype)
    for t in range(len(rgb)):
        out[t] = cv2.warpAffine(rgb[t], m, (geo.width, geo.height), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=border)  # fmt: skip
    return out


def _tighten(clipped: np.ndarray, cut: np.ndarray, track_ids: np.ndarray, instance: np.ndarray) -> None:
    """Boxes cut by the image border, in place: a box clipped in x may have lost rows too (and vice
    versa), so intersect it with the extent of the object's pixels in the (warped) instance mask; a cut
    object without a pixel left gets an empty box."""
    from scipy import ndimage

    ids = track_ids[cut].astype(np.int64)
    if not len(ids) or ids.min() <= 0:
        return
    slices = ndimage.find_objects(instance.astype(np.int32, copy=False), max_label=int(ids.max()))
    for i, tid in zip(np.flatnonzero(cut), ids):
        sl = slices[tid - 1]
        if sl is None:
            clipped[i, 2:] = clipped[i, :2]
            continue
        ext = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
        clipped[i, :2] = np.maximum(clipped[i, :2], ext[:2])
        clipped[i, 2:] = np.minimum(clipped[i, 2:], ext[2:])


def _map_gt(g: GroundTruth, geo: Geometry, cfg: AugmentConfig, instance: np.ndarray | None) -> GroundTruth:
    boxes = geo.map_boxes(g.boxes)
    if geo.affine_identity:  # a flip moves boxes, nothing else
        amodal = geo.map_boxes(g.amodal_boxes) if len(g.amodal_boxes) == len(boxes) else g.amodal_boxes
        return dataclasses.replace(g, boxes=boxes, amodal_boxes=amodal)
    w, h = geo.width, geo.height
    clipped = np.stack([np.clip(boxes[:, 0], 0, w), np.clip(boxes[:, 1], 0, h), np.clip(boxes[:, 2], 0, w),
                        np.clip(boxes[:, 3], 0, h)], 1).astype(np.float32)  # fmt: skip
    if instance is not None and len(g.track_ids) == len(boxes):
        _tighten(clipped, np.any(clipped != boxes, axis=1), np.asarray(g.track_ids), instance)
    bw, bh = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    keep = (bw > 0) & (bh > 0)
    area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-6)
    frac = np.clip(bw * bh / area, 0.0, 1.0)
    n = len(boxes)

    def sel(a: np.ndarray) -> np.ndarray:
        return a[keep] if len(a) == n else a

    ignore = (np.asarray(g.ignore, bool) if len(g.ignore) == n else np.zeros(n, bool)) | (bh < cfg.min_box_height) | (
        frac < cfg.min_box_fraction
    )
    out = dataclasses.replace(
        g,
        boxes=clipped[keep],
        class_ids=sel(g.class_ids),
        track_ids=sel(g.track_ids),
        visibility=(g.visibility * frac).astype(np.float32)[keep] if len(g.visibility) == n else g.visibility,
        ignore=ignore[keep],
        boxes3d=sel(g.boxes3d),
    )
    if len(g.amodal_boxes) == n:
        a = geo.map_boxes(g.amodal_boxes)
        a[:, [0, 2]] = np.clip(a[:, [0, 2]], 0, w)
        a[:, [1, 3]] = np.clip(a[:, [1, 3]], 0, h)
        out = dataclasses.replace(out, amodal_boxes=a[keep])
    return out


def apply_geometry(
    geo: Geometry,
    rgb: np.ndarray,
    masks: Mapping[str, np.ndarray],
    gts: Sequence[GroundTruth],
    cfg: AugmentConfig,
    fill: Mapping[str, int] | None = None,
    instance: str = "instance",
) -> tuple[np.ndarray, dict[str, np.ndarray], list[GroundTruth]]:
    """Map a clip through ``geo``: ``rgb`` (T, H, W, C), label ``masks`` (each (T, H, W), any dtype;
    pixels from outside the source get ``fill[name]``, default 0) and per-frame ground truth. When
    ``masks[instance]`` holds track ids, boxes cut by the crop are fitted to their remaining pixels.

    Returned arrays may be views of the inputs (a flip is a reversed view; no transform returns
    them unchanged)."""
    fill = fill or {}
    if geo.affine_identity:
        out_rgb = rgb
        out_masks = dict(masks)
    else:
        out_rgb = _warp_rgb(rgb, geo)
        out_masks = {k: _warp_mask(m, geo, int(fill.get(k, 0))) for k, m in masks.items()}
    if geo.flip:
        out_rgb = out_rgb[:, :, ::-1]
        out_masks = {k: m[:, :, ::-1] for k, m in out_masks.items()}
    if geo.affine_identity and not geo.flip:
        return out_rgb, out_masks, list(gts)
    inst = out_masks.get(instance)
    return out_rgb, out_masks, [_map_gt(g, geo, cfg, None if inst is None else inst[t]) for t, g in enumerate(gts)]


# -------------------------------------------------------------- photometric ----


@dataclass(frozen=True)
class ClipAugment:
    """The random choices for one clip (drawn by :func:`sample_clip`)."""

    flip: bool
    gain: float
    contrast: float
    hue_deg: float = 0.0
    saturation: float = 1.0
    blur_sigma: float = 0.0  # 0: no blur
    jpeg_quality: int = 0  # 0: no re-encode
    scale: float = 1.0
    crop: tuple[float, float] = (0.0, 0.0)  # position of the crop window in [0, 1]^2

    def geometry(self, cfg: AugmentConfig, height: int, width: int) -> Geometry:
        if not cfg.zooms:
            return Geometry(height, width, flip=self.flip)
        s = self.scale
        tx = min(0.0, width - s * width) + self.crop[0] * abs(width - s * width)
        ty = min(0.0, height - s * height) + self.crop[1] * abs(height - s * height)
        return Geometry(height, width, s, s, float(tx), float(ty), self.flip)


def sample_clip(rng: np.random.Generator, cfg: AugmentConfig) -> ClipAugment:
    """Draw one clip's choices. The first draws (flip, brightness, contrast) are those of the original
    recipe, and newer effects draw only when enabled, so default configs see the same random numbers."""
    flip = bool(rng.random() < cfg.hflip)
    gain = 1.0 + rng.uniform(-cfg.brightness, cfg.brightness)
    contrast = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast)
    hue = float(rng.uniform(-cfg.hue, cfg.hue)) if cfg.hue > 0 else 0.0
    sat = 1.0 + float(rng.uniform(-cfg.saturation, cfg.saturation)) if cfg.saturation > 0 else 1.0
    blur = float(rng.uniform(*cfg.blur_sigma)) if cfg.blur > 0 and rng.random() < cfg.blur else 0.0
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)) if cfg.jpeg > 0 and (
        rng.random() < cfg.jpeg) else 0  # fmt: skip
    scale, crop = 1.0, (0.0, 0.0)
    if cfg.zooms:
        lo, hi = cfg.scale
        scale = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        u = rng.random(2)
        crop = (float(u[0]), float(u[1]))
    return ClipAugment(flip, float(gain), float(contrast), hue, sat, blur, quality, scale, crop)


def hue_saturation_matrix(hue_deg: float, saturation: float) -> np.ndarray:
    """3x3 RGB matrix rotating hue by ``hue_deg`` about the grey axis (in YIQ) and scaling saturation."""
    yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    a = np.deg2rad(hue_deg)
    c, s = np.cos(a) * saturation, np.sin(a) * saturation
    rot = np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])  # positive: red towards green, as HSV hue
    return np.asarray(np.linalg.inv(yiq) @ rot @ yiq, np.float32)


def photometric(rgb: np.ndarray, aug: ClipAugment, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """``rgb`` (T, H, W, 3) float32 in [0, 1] with the clip's colour jitter, blur, JPEG re-encode and
    per-frame noise (drawn from ``rng``), clipped to [0, 1]. May work in place."""
    import cv2

    mean = rgb.mean(axis=(1, 2, 3), keepdims=True)
    rgb = (rgb - mean) * aug.contrast + mean * aug.gain
    t, h, w, _ = rgb.shape
    if aug.hue_deg or aug.saturation != 1.0:
        m = hue_saturation_matrix(aug.hue_deg, aug.saturation)
        rgb = np.asarray(cv2.transform(rgb.reshape(t * h, w, 3), m), np.float32).reshape(t, h, w, 3)
    if aug.blur_sigma > 0:
        for i in range(t):
            rgb[i] = cv2.GaussianBlur(rgb[i], (0, 0), sigmaX=aug.blur_sigma)
    if aug.jpeg_quality:
        for i in range(t):
            bgr = np.clip(rgb[i, :, :, ::-1] * 255.0 + 0.5, 0, 255).astype(np.uint8)
            ok, enc = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, aug.jpeg_quality])
            dec = cv2.imdecode(enc, cv2.IMREAD_COLOR) if ok else None
            if dec is not None:
                rgb[i] = dec[:, :, ::-1].astype(np.float32) * np.float32(1.0 / 255.0)
    if cfg.noise_std > 0:
        rgb += rng.normal(0.0, cfg.noise_std, size=rgb.shape).astype(np.float32)
    np.clip(rgb, 0.0, 1.0, out=rgb)
    return rgb


__all__ = ["AugmentConfig", "ClipAugment", "Geometry", "apply_geometry", "hue_saturation_matrix", "photometric",
           "sample_clip"]  # fmt: skip


# ---------------------------------------------------------------- occluders ----


def cutout(
    rgb: np.ndarray, seg: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator, ignore_index: int
) -> tuple[np.ndarray, np.ndarray]:
    """Occluders on frames 1.. of a clip (``rgb`` (T, H, W, 3) float in [0, 1], changed in place;
    ``seg`` (T, H, W), copied when changed: set to ``ignore_index`` under the occluders). Frame 0 is
    never touched: the memory needs something to remember."""
    if cfg.cutout <= 0.0:
        return rgb, seg
    t, h, w, _ = rgb.shape
    seg_out = seg
    for k in range(1, t):
        if rng.random() >= cfg.cutout:
            continue
        area = rng.uniform(*cfg.cutout_area) * h * w
        aspect = float(np.exp(rng.uniform(np.log(0.3), np.log(3.0))))
        rh = max(1, min(h, round(float(np.sqrt(area / aspect)))))
        rw = max(1, min(w, round(float(np.sqrt(area * aspect)))))
        y0, x0 = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
        fill = rng.uniform(0.1, 0.9, size=3).astype(np.float32) + rng.normal(0.0, 0.05, (rh, rw, 3)).astype(np.float32)
        rgb[k, y0 : y0 + rh, x0 : x0 + rw] = np.clip(fill, 0.0, 1.0)
        if seg_out is seg:
            seg_out = seg.copy()
        seg_out[k, y0 : y0 + rh, x0 : x0 + rw] = ignore_index
    return rgb, seg_out
