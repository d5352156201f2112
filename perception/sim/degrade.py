"""Optional image degradation: motion blur, sensor noise, JPEG artefacts (deterministic per frame)."""

from __future__ import annotations

import numpy as np


def degrade(rgb: np.ndarray, seed: int, index: int) -> np.ndarray:
    """A degraded copy of ``rgb`` (uint8 HxWx3); the same (seed, index) gives the same result."""
    import cv2

    rng = np.random.default_rng([seed, index, 77])
    img = rgb.astype(np.float32)
    if rng.random() < 0.5:  # motion blur along a mostly horizontal direction
        k = int(rng.integers(3, 10))
        ang = rng.normal(0.0, 0.3)
        kern = np.zeros((k, k), np.float32)
        c = (k - 1) / 2
        for i in np.linspace(-c, c, 2 * k):
            kern[round(c + i * np.sin(ang)), round(c + i * np.cos(ang))] = 1.0
        img = np.asarray(cv2.filter2D(img, -1, kern / kern.sum(), borderType=cv2.BORDER_REFLECT), np.float32)
    sigma = rng.uniform(1.5, 6.0)
    shot = rng.uniform(0.0, 0.4)
    noise = rng.standard_normal(img.shape).astype(np.float32)
    img = (img + noise * (sigma + shot * np.sqrt(np.maximum(img, 0.0)))).astype(np.float32)
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.7:
        q = int(rng.integers(20, 70))
        ok, enc = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            dec = cv2.imdecode(enc, cv2.IMREAD_COLOR)
            if dec is not None:
                out = np.ascontiguousarray(dec[..., ::-1])
    return out
