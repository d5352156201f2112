"""Image degradation, deterministic per frame.

``degrade`` (``SimConfig.degrade``): motion blur, sensor noise, JPEG artefacts.
``sensor_effects`` (``SimConfig.randomize.sensor``, domain randomisation): a random camera per drive
(white balance, vignetting, defocus, noise level, JPEG habit) plus per-frame motion blur, noise and
JPEG artefacts, all scaled by one strength.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def _motion_blur(img: np.ndarray, k: int, ang: float) -> np.ndarray:
    """``img`` (float32) blurred along a line of ``k`` pixels at angle ``ang`` (radians from horizontal)."""
    import cv2

    kern = np.zeros((k, k), np.float32)
    c = (k - 1) / 2
    for i in np.linspace(-c, c, 2 * k):
        kern[round(c + i * np.sin(ang)), round(c + i * np.cos(ang))] = 1.0
    return np.asarray(cv2.filter2D(img, -1, kern / kern.sum(), borderType=cv2.BORDER_REFLECT), np.float32)


def _jpeg(out: np.ndarray, quality: int) -> np.ndarray:
    """``out`` (uint8 RGB) through a JPEG encode/decode at ``quality``."""
    import cv2

    ok, enc = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if ok:
        dec = cv2.imdecode(enc, cv2.IMREAD_COLOR)
        if dec is not None:
            return np.ascontiguousarray(dec[..., ::-1])
    return out


def degrade(rgb: np.ndarray, seed: int, index: int) -> np.ndarray:
    """A degraded copy of ``rgb`` (uint8 HxWx3); the same (seed, index) gives the same result."""
    rng = np.random.default_rng([seed, index, 77])
    img = rgb.astype(np.float32)
    if rng.random() < 0.5:  # motion blur along a mostly horizontal direction
        k = int(rng.integers(3, 10))
        img = _motion_blur(img, k, rng.normal(0.0, 0.3))
    sigma = rng.uniform(1.5, 6.0)
    shot = rng.uniform(0.0, 0.4)
    noise = rng.standard_normal(img.shape).astype(np.float32)
    img = (img + noise * (sigma + shot * np.sqrt(np.maximum(img, 0.0)))).astype(np.float32)
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.7:
        out = _jpeg(out, int(rng.integers(20, 70)))
    return out


@lru_cache(maxsize=8)
def _gain_map(height: int, width: int, gains: tuple[float, float, float], vignette: float) -> np.ndarray:
    """(H, W, 3) float32 white balance ``gains`` times a vignetting falloff 1 - vignette r^2 (r = 1 at
    the corners): one per drive, cached."""
    y = (np.arange(height, dtype=np.float32) + 0.5) / height * 2.0 - 1.0
    x = (np.arange(width, dtype=np.float32) + 0.5) / width * 2.0 - 1.0
    fall = 1.0 - vignette * (x[None, :] ** 2 + y[:, None] ** 2) * 0.5
    return (fall[..., None] * np.asarray(gains, np.float32)).astype(np.float32)


def sensor_effects(rgb: np.ndarray, seed: int, index: int, strength: float) -> np.ndarray:
    """``rgb`` (uint8 HxWx3) as a random camera of the drive ``seed`` would record frame ``index``.

    Per drive (the same camera all along): white balance gains 1 +- 0.3 s, vignetting up to 0.5 s,
    defocus blur sigma up to 1.5 s px, a noise level and how often and how hard it JPEG-compresses.
    Per frame: motion blur (probability 0.3 s), gaussian + shot noise, JPEG artefacts. ``strength``
    s in (0, 1]; the same (seed, index, strength) gives the same pixels."""
    import cv2

    s = float(strength)
    d = np.random.default_rng([seed, 24]).random(8)  # the drive's camera
    f = np.random.default_rng([seed, index, 79])  # this frame
    h, w = rgb.shape[:2]
    img = rgb.astype(np.float32)
    gains = 1.0 + s * 0.3 * (2.0 * d[0:3] - 1.0)
    img *= _gain_map(h, w, (float(gains[0]), float(gains[1]), float(gains[2])), float(s * 0.5 * d[3]))
    sigma = s * 1.5 * d[4]
    if sigma >= 0.3:
        img = np.asarray(cv2.GaussianBlur(img, (0, 0), sigmaX=float(sigma)), np.float32)
    u = f.random(4)
    if u[0] < 0.3 * s:
        img = _motion_blur(img, 3 + int(u[1] * 8 * s), float(f.normal(0.0, 0.3)))
    noise_sigma = np.float32(s * (0.5 + 5.0 * d[5]))
    shot = np.float32(s * 0.4 * d[6])
    noise = f.standard_normal(img.shape, dtype=np.float32)
    img += noise * (noise_sigma + shot * np.sqrt(np.maximum(img, 0.0)))
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    if u[2] < s * (0.2 + 0.7 * d[7]):
        out = _jpeg(out, int(95 - s * (20 + 60 * u[3])))
    return out
