"""Yaw-only boxes fitted in bird's-eye view: L-shape search for vehicles, cylinders for people.

L-shape: Zhang et al. 2017, "Efficient L-Shape Fitting for Vehicle Detection Using Laser Scanners",
closeness criterion: for each candidate heading the points are projected on the two rectangle
axes, each point scores 1 / (distance to the nearer rectangle edge) and the heading with the
highest total wins. Unlike the minimum-area rectangle it follows the visible L of a partial view.
Headings of L-shape boxes are modulo pi (front and back look alike; a tracker's velocity tells).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

D0 = 0.01  # m: floor on the closeness distance (Zhang et al.'s d0)


@dataclass(frozen=True)
class BevBox:
    """A bird's-eye-view box: centre (x, y), length along ``yaw``, width across it."""

    x: float
    y: float
    length: float
    width: float
    yaw: float
    shift: float = 0.0  # m the centre moved when the box was grown to the class prior (unseen part)


def wrap_half_pi(a: np.ndarray | float) -> np.ndarray:
    """Angles wrapped to [-pi/2, pi/2) (headings modulo pi)."""
    return np.asarray((np.asarray(a) + np.pi / 2) % np.pi - np.pi / 2)


def _closeness(xy: np.ndarray, thetas: np.ndarray) -> np.ndarray:
    c, s = np.cos(thetas), np.sin(thetas)
    c1 = xy[:, :1] * c + xy[:, 1:] * s  # (n, K)
    c2 = -xy[:, :1] * s + xy[:, 1:] * c
    d1 = np.minimum(c1.max(0) - c1, c1 - c1.min(0))
    d2 = np.minimum(c2.max(0) - c2, c2 - c2.min(0))
    score: np.ndarray = (1.0 / np.maximum(np.minimum(d1, d2), D0)).sum(0)
    return score


def l_shape_heading(xy: np.ndarray, step_deg: float = 2.0, fine_deg: float = 0.25) -> float:
    """Heading in [0, pi/2) of the rectangle axes that best explain the BEV points (N, 2):
    a coarse search at ``step_deg`` then a fine one at ``fine_deg`` around the best."""
    p = xy - xy.mean(0)
    coarse = np.deg2rad(np.arange(0.0, 90.0, step_deg))
    best = coarse[int(np.argmax(_closeness(p, coarse)))]
    fine = best + np.deg2rad(np.arange(-step_deg, step_deg + 1e-9, fine_deg))
    return float(np.mod(fine[int(np.argmax(_closeness(p, fine)))], np.pi / 2))


def min_area_rect_heading(xy: np.ndarray) -> float:
    """Heading in [0, pi/2) of OpenCV's minimum-area rectangle (the baseline L-shape fitting beats)."""
    import cv2

    (_, _), (_, _), ang = cv2.minAreaRect(xy.astype(np.float32).reshape(-1, 1, 2))
    return float(np.mod(np.deg2rad(ang), np.pi / 2))


def rectangle(xy: np.ndarray, theta: float, prior_lw: tuple[float, float], sensor_xy: np.ndarray) -> BevBox:
    """The box with axes at ``theta`` around the points, grown to the class prior away from the sensor
    (only the near faces of an object are seen). The length axis is the longer side when it is
    clearly longer than the prior width, else the axis nearer the line of sight (an end seen
    head-on, or a side cut short by an occluder, is short either way)."""
    axes = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    proj = xy @ axes.T  # (n, 2)
    lo, hi = proj.min(0), proj.max(0)
    ext = hi - lo
    l0, w0 = prior_lw
    s = axes @ sensor_xy
    if ext.max() > 1.25 * w0:
        k_len = int(np.argmax(ext))
    else:  # too little seen to tell: the length axis is the one nearer the line of sight
        k_len = int(np.argmax(np.abs(0.5 * (lo + hi) - s)))
    mid0 = 0.5 * (lo + hi)
    for k, want in ((k_len, l0), (1 - k_len, w0)):
        if ext[k] < want:
            if abs(s[k] - lo[k]) <= abs(s[k] - hi[k]):  # the near face is at lo: grow towards hi
                hi[k] = lo[k] + want
            else:
                lo[k] = hi[k] - want
    mid = 0.5 * (lo + hi)
    cx, cy = mid @ axes
    size = hi - lo
    yaw = float(wrap_half_pi(np.arctan2(axes[k_len, 1], axes[k_len, 0])))
    return BevBox(
        float(cx), float(cy), float(size[k_len]), float(size[1 - k_len]), yaw, float(np.linalg.norm(mid - mid0))
    )


def fit_l_shape(xy: np.ndarray, prior_lw: tuple[float, float], sensor_xy: np.ndarray, step_deg: float = 2.0,
                fine_deg: float = 0.25, max_points: int = 400, seed: int = 0) -> BevBox:  # fmt: skip
    """Vehicle box from BEV points (N, 2) in base_link: L-shape heading (on at most ``max_points``
    points), then :func:`rectangle` on all of them."""
    sample = xy
    if len(xy) > max_points:
        sample = xy[np.random.default_rng(seed).choice(len(xy), max_points, replace=False)]
    return rectangle(xy, l_shape_heading(sample, step_deg, fine_deg), prior_lw, sensor_xy)


def fit_cylinder(xy: np.ndarray, prior_diameter: float, max_diameter: float, sensor_xy: np.ndarray) -> BevBox:
    """Pedestrian cylinder: the seen surface's mean pushed 2r/pi away from the sensor (the mean of a
    half circle of radius r lies 2r/pi from its centre); the radius is the prior's or half the
    spread across the line of sight, whichever is larger (capped at ``max_diameter`` / 2)."""
    m = xy.mean(0)
    ray = m - sensor_xy
    ray = ray / max(float(np.linalg.norm(ray)), 1e-9)
    across = (xy - m) @ np.array([-ray[1], ray[0]])
    r = min(max(prior_diameter / 2, float(np.ptp(across)) / 2), max_diameter / 2)
    c = m + ray * (2.0 * r / np.pi)
    return BevBox(float(c[0]), float(c[1]), 2 * r, 2 * r, float(np.arctan2(ray[1], ray[0])))
