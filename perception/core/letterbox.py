"""Letterbox / resize an image to a network input size, and map results back.

A :class:`LetterboxMap` records how a source image of ``src_w x src_h`` pixels was placed in
the ``dst_w x dst_h`` network input: resized by ``scale_x, scale_y`` to ``new_w x new_h`` and
offset by ``pad_x, pad_y`` pixels. Letterbox mode keeps the aspect ratio (``scale_x == scale_y``
up to rounding) and pads evenly; resize mode stretches (no padding). Networks run in dst
pixels; everything published goes back to src pixels with ``boxes_to_src`` / ``mask_to_src``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from perception.core.boxes import CoreError, as_boxes

PAD_VALUE = 114  # grey padding, as in the YOLO family
MIN_SIDE = 8  # pixels: the smallest image side the pipeline takes (every input path checks it)


@dataclass(frozen=True)
class LetterboxMap:
    src_w: int
    src_h: int
    dst_w: int
    dst_h: int
    new_w: int  # size of the resized image inside dst
    new_h: int
    pad_x: int  # left padding in dst pixels
    pad_y: int  # top padding in dst pixels

    @property
    def scale_x(self) -> float:
        return self.new_w / self.src_w

    @property
    def scale_y(self) -> float:
        return self.new_h / self.src_h

    @staticmethod
    def compute(src_w: int, src_h: int, dst_w: int, dst_h: int, keep_aspect: bool = True) -> LetterboxMap:
        if min(src_w, src_h, dst_w, dst_h) <= 0:
            raise CoreError(f"letterbox sizes must be positive: src {src_w}x{src_h}, dst {dst_w}x{dst_h}")
        if not keep_aspect:
            return LetterboxMap(src_w, src_h, dst_w, dst_h, dst_w, dst_h, 0, 0)
        scale = min(dst_w / src_w, dst_h / src_h)
        new_w = min(dst_w, max(1, round(src_w * scale)))
        new_h = min(dst_h, max(1, round(src_h * scale)))
        return LetterboxMap(src_w, src_h, dst_w, dst_h, new_w, new_h, (dst_w - new_w) // 2, (dst_h - new_h) // 2)

    def boxes_to_dst(self, boxes: np.ndarray) -> np.ndarray:
        """xyxy boxes in source pixels -> network-input pixels."""
        b = as_boxes(boxes)
        s = np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y], np.float32)
        p = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], np.float32)
        return (b * s + p).astype(np.float32)

    def boxes_to_src(self, boxes: np.ndarray, clip: bool = True) -> np.ndarray:
        """xyxy boxes in network-input pixels -> source pixels (clipped to the source image)."""
        b = as_boxes(boxes)
        s = np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y], np.float32)
        p = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], np.float32)
        out = (b - p) / s
        if clip:
            out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0.0, self.src_w)
            out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0.0, self.src_h)
        return out.astype(np.float32)

    def crop_valid(self, array: np.ndarray) -> np.ndarray:
        """The part of a dst-sized array (H, W[, C]) that covers the source image (padding removed).

        Arrays at a fraction of the input size (e.g. stride-4 logits) are cropped proportionally.
        """
        h, w = array.shape[:2]
        fy, fx = h / self.dst_h, w / self.dst_w
        y0, x0 = round(self.pad_y * fy), round(self.pad_x * fx)
        y1, x1 = round((self.pad_y + self.new_h) * fy), round((self.pad_x + self.new_w) * fx)
        return array[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)]

    def mask_to_src(self, mask: np.ndarray, interpolation: int = cv2.INTER_NEAREST) -> np.ndarray:
        """A (H, W[, C]) map in network-input layout -> source resolution (``src_h, src_w``).

        Use ``INTER_NEAREST`` for label masks and ``INTER_LINEAR`` for float maps (attention).
        """
        if mask.ndim not in (2, 3):
            raise CoreError(f"mask_to_src expects (H, W) or (H, W, C), got shape {mask.shape}")
        valid = np.ascontiguousarray(self.crop_valid(mask))
        if valid.shape[:2] == (self.src_h, self.src_w):
            return valid.copy()
        return cv2.resize(valid, (self.src_w, self.src_h), interpolation=interpolation)


def resize_image(image: np.ndarray, new_w: int, new_h: int, dst: np.ndarray | None = None) -> np.ndarray:
    """``image`` resized to ``new_w x new_h``, into ``dst`` (a view of that size) when given.

    Enlarging is bilinear. Shrinking is antialiased like ``INTER_AREA`` but about 10x cheaper at camera
    resolutions: halvings by 2x2 means (OpenCV's integer ``INTER_AREA`` fast path, torch's ``avg_pool2d``
    in ``models.prepost``) while the image is at least twice the target, then bilinear for the remaining
    factor (< 2). Within ~2 grey levels (mean) of a single ``INTER_AREA`` resize on textured images.
    """
    h, w = image.shape[:2]
    if (new_w, new_h) == (w, h):
        if dst is None:
            return image
        dst[...] = image
        return dst
    src = image
    while src.shape[1] >= 2 * new_w and src.shape[0] >= 2 * new_h:  # an odd last row/column is left out
        hh, hw = src.shape[0] // 2, src.shape[1] // 2
        src = cv2.resize(src[: 2 * hh, : 2 * hw], (hw, hh), interpolation=cv2.INTER_AREA)
    if dst is None:
        return cv2.resize(src, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    out = cv2.resize(src, (new_w, new_h), dst=dst, interpolation=cv2.INTER_LINEAR)
    if out is not dst and not np.shares_memory(out, dst):  # OpenCV could not write into the view
        dst[...] = out.reshape(dst.shape)
    return dst


def letterbox_into(image: np.ndarray, canvas: np.ndarray, m: LetterboxMap, pad_value: int = PAD_VALUE) -> None:
    """Write ``image`` letterboxed by ``m`` into ``canvas`` (``dst_h x dst_w[, C]``, e.g. a reusable batch slot):
    the image is resized straight into its place, only the padding strips are filled."""
    if canvas.shape[:2] != (m.dst_h, m.dst_w) or canvas.shape[2:] != image.shape[2:]:
        raise CoreError(f"canvas {canvas.shape} does not fit a {m.dst_h}x{m.dst_w} letterbox of {image.shape}")
    y0, y1, x0, x1 = m.pad_y, m.pad_y + m.new_h, m.pad_x, m.pad_x + m.new_w
    canvas[:y0] = pad_value
    canvas[y1:] = pad_value
    canvas[y0:y1, :x0] = pad_value
    canvas[y0:y1, x1:] = pad_value
    resize_image(image, m.new_w, m.new_h, dst=canvas[y0:y1, x0:x1])


def letterbox(
    image: np.ndarray, dst_w: int, dst_h: int, keep_aspect: bool = True, pad_value: int = PAD_VALUE
) -> tuple[np.ndarray, LetterboxMap]:
    """Resize ``image`` (H, W[, C]) into a ``dst_h x dst_w`` canvas; returns the canvas and its map.

    ``keep_aspect=False`` is plain resize mode (stretch, no padding). Resampling: :func:`resize_image`.
    """
    if image.ndim not in (2, 3):
        raise CoreError(f"letterbox expects an (H, W) or (H, W, C) image, got shape {image.shape}")
    h, w = image.shape[:2]
    m = LetterboxMap.compute(w, h, dst_w, dst_h, keep_aspect)
    if (m.new_w, m.new_h) == (dst_w, dst_h):
        return np.ascontiguousarray(resize_image(image, m.new_w, m.new_h)), m
    canvas = np.empty((dst_h, dst_w, *image.shape[2:]), dtype=image.dtype)
    letterbox_into(image, canvas, m, pad_value)
    return canvas, m


def resize_labels(labels: np.ndarray, m: LetterboxMap, fill: int) -> np.ndarray:
    """Place a source-resolution label mask into the network input like :func:`letterbox` does
    with the image (nearest neighbour; padding gets ``fill``, e.g. the ignore index)."""
    if labels.shape[:2] != (m.src_h, m.src_w):
        raise CoreError(f"labels shape {labels.shape[:2]} does not match the map's source {m.src_h}x{m.src_w}")
    resized = cv2.resize(labels, (m.new_w, m.new_h), interpolation=cv2.INTER_NEAREST)
    canvas = np.full((m.dst_h, m.dst_w, *labels.shape[2:]), fill, dtype=labels.dtype)
    canvas[m.pad_y : m.pad_y + m.new_h, m.pad_x : m.pad_x + m.new_w] = resized
    return canvas
