"""Camera-only 3D objects: range from where the bottom edge of a 2D box meets the flat ground.

With the camera ``H`` metres above the ground and focal length ``f`` pixels, a bottom edge ``dv``
pixels below the horizon lies at range ``Z = f H / dv``, so a pixel error ``s`` makes a range error
``Z^2 s / (f H)``: the covariance grows with range^2 (and the class's unknown depth adds to it). Boxes
whose bottom edge is cut by the image, or is at or above the horizon, take their range from the box
height and the class's prior height instead (``Z = f h / box height``, 15% prior uncertainty); so
do boxes whose ground range is over 1.5x that height range (the bottom edge is an occluder's top).
Boxes flatter than the class can look (a pedestrian behind a parked car shows its head and
shoulders only) take their range from the box width and the width the class shows on average
(35% uncertainty): their bottom edge and their height are an occluder's, not theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception.core.types import CameraIntrinsics

from .config import ClassModel
from .geometry import Extrinsics

HEIGHT_PRIOR_SIGMA = 0.15  # relative spread of object heights around the class prior
WIDTH_PRIOR_SIGMA = 0.35  # relative spread of the width an object shows (its yaw is unknown)
FLAT_SHARE = 0.75  # a box flatter than this share of the class's flattest look has part of its height hidden
OCCLUDED_RATIO = 1.5  # ground range over box-height range above which the bottom edge is taken as hidden
Z_SIGMA = 0.3  # m: vertical uncertainty of a camera-only centre


@dataclass(frozen=True)
class CameraObject:
    """One camera-only estimate in base_link: centre, size (l, w, h), yaw, 3x3 position covariance."""

    center: np.ndarray
    size: np.ndarray
    yaw: float
    covariance: np.ndarray
    on_ground: bool  # True: flat-ground intersection; False: range from the box height


def _cov(bearing: float, sigma_range: float, sigma_lateral: float) -> np.ndarray:
    c, s = np.cos(bearing), np.sin(bearing)
    R = np.array([[c, -s], [s, c]])
    cov = np.zeros((3, 3))
    cov[:2, :2] = R @ np.diag([sigma_range**2, sigma_lateral**2]) @ R.T
    cov[2, 2] = Z_SIGMA**2
    return cov


def camera_object(box: np.ndarray, model: ClassModel, intr: CameraIntrinsics, ext: Extrinsics,
                  pixel_sigma: float = 2.0) -> CameraObject | None:  # fmt: skip
    """The 3D object behind the xyxy ``box`` of a class shaped like ``model``; None when the camera
    cannot range it (the box lies above the horizon and has no height)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    l0, w0, h0 = model.size
    R, o = ext.base_T_cam[:3, :3], ext.base_T_cam[:3, 3]
    u = 0.5 * (x1 + x2)
    d = R @ np.array([(u - intr.cx) / intr.fx, (y2 - intr.cy) / intr.fy, 1.0])
    f = 0.5 * (intr.fx + intr.fy)
    height_cam = ext.camera_height
    # part of the height hidden (an occluder in front, the image edge): flatter than the class can look
    flat = (y2 - y1) < FLAT_SHARE * h0 / float(np.hypot(l0, w0)) * (x2 - x1) or y2 >= intr.height - 1.0
    box_range = f * h0 / max(y2 - y1, 1e-6)  # range along the optical axis ~ horizontal range
    on_ground = not flat and d[2] < -1e-6 and height_cam > 0
    rng = box_range
    if on_ground:
        g = o + d * (-o[2] / d[2])
        rng = float(np.hypot(*(g[:2] - o[:2])))
        # a bottom edge far behind where the box height puts the object is an occluder's top edge
        on_ground = rng <= OCCLUDED_RATIO * box_range
        sigma = rng**2 * pixel_sigma / (f * height_cam)
    if not on_ground:
        if y2 - y1 < 2.0 or x2 - x1 < 2.0:
            return None
        sigma = HEIGHT_PRIOR_SIGMA * box_range
        rng = box_range
        if flat:  # the width still shows the object: range from the width it shows on average
            seen = w0 if model.shape == "cylinder" else 0.5 * (l0 + w0)
            rng = f * seen / (x2 - x1)
            sigma = WIDTH_PRIOR_SIGMA * rng
        dc = R @ np.array([(u - intr.cx) / intr.fx, (0.5 * (y1 + y2) - intr.cy) / intr.fy, 1.0])
        g = o + dc / max(float(np.hypot(dc[0], dc[1])), 1e-9) * rng
        g[2] = 0.0
    ray = (g[:2] - o[:2]) / max(float(np.hypot(*(g[:2] - o[:2]))), 1e-9)
    bearing = float(np.arctan2(ray[1], ray[0]))
    # how much of the prior length shows across the line of sight: 0 end-on, 1 side-on
    seen = (x2 - x1) * rng / f
    side = float(np.clip((seen - w0) / max(l0 - w0, 1e-6), 0.0, 1.0)) if l0 > w0 else 0.0
    half_depth = 0.5 * ((1.0 - side) * l0 + side * w0)
    center = np.array([g[0] + ray[0] * half_depth, g[1] + ray[1] * half_depth, h0 / 2])
    sigma_depth = 0.25 * abs(l0 - w0)
    sigma_range = float(np.hypot(sigma, sigma_depth))
    sigma_lat = float(np.hypot(rng * pixel_sigma / f, 0.25 * w0))
    yaw = bearing + (np.pi / 2 if side > 0.5 else 0.0)
    yaw = float((yaw + np.pi / 2) % np.pi - np.pi / 2)
    return CameraObject(center, np.array([l0, w0, h0]), yaw, _cov(bearing, sigma_range, sigma_lat), on_ground)
