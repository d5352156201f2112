"""Frames, projection, frustums and point painting (pure numpy).

Frames: the LiDAR frame and base_link are x forward, y left, z up (REP 103); the camera frame is
the optical frame (x right, y down, z forward). Extrinsics are 4x4 rigid transforms ``a_T_b``
mapping points of frame b into frame a; the ROS glue fills them from parameters or /tf_static.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception.core.types import CameraIntrinsics

from .config import FusionError


def check_rigid(pose: np.ndarray, name: str) -> np.ndarray:
    """``pose`` as a float64 4x4 rigid transform; raises :class:`FusionError` for anything else."""
    M = np.asarray(pose, dtype=np.float64)
    if M.shape != (4, 4) or not np.all(np.isfinite(M)):
        raise FusionError(f"{name} must be a finite 4x4 matrix, got shape {M.shape}")
    R = M[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0 or not np.allclose(M[3], [0, 0, 0, 1]):
        raise FusionError(f"{name} is not a rigid transform (rotation must be orthonormal, last row 0 0 0 1)")
    return M


@dataclass(frozen=True)
class Extrinsics:
    """Where the LiDAR and the camera (optical frame) sit on the vehicle: ``base_T_lidar`` and ``base_T_cam``."""

    base_T_lidar: np.ndarray
    base_T_cam: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_T_lidar", check_rigid(self.base_T_lidar, "base_T_lidar"))
        object.__setattr__(self, "base_T_cam", check_rigid(self.base_T_cam, "base_T_cam"))

    @property
    def cam_T_lidar(self) -> np.ndarray:  # noqa: N802 - a_T_b names the frames
        return np.asarray(np.linalg.inv(self.base_T_cam) @ self.base_T_lidar)

    @property
    def camera_height(self) -> float:
        """Height of the camera centre above the base_link z = 0 plane (the flat ground)."""
        return float(self.base_T_cam[2, 3])

    @property
    def camera_pitch_deg(self) -> float:
        """Downward pitch of the optical axis (positive looks down)."""
        z_axis = self.base_T_cam[:3, 2]
        return float(np.rad2deg(np.arcsin(np.clip(-z_axis[2], -1.0, 1.0))))

    @staticmethod
    def from_frames(world_T_base: np.ndarray, world_T_lidar: np.ndarray, world_T_cam: np.ndarray) -> Extrinsics:  # noqa: N803
        """From three poses in any common frame (e.g. the synthetic world's)."""
        inv = np.linalg.inv(check_rigid(world_T_base, "world_T_base"))
        return Extrinsics(inv @ world_T_lidar, inv @ world_T_cam)


def transform(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """(N, 3) float32 points mapped by the 4x4 transform ``pose``."""
    R = pose[:3, :3].astype(np.float32)
    out: np.ndarray = points[:, :3] @ R.T + pose[:3, 3].astype(np.float32)
    return out


def project(points_cam: np.ndarray, intr: CameraIntrinsics) -> np.ndarray:
    """(N, 2) float32 pixel coordinates of optical-frame points (z must be positive)."""
    z = points_cam[:, 2]
    u = intr.fx * points_cam[:, 0] / z + intr.cx
    v = intr.fy * points_cam[:, 1] / z + intr.cy
    return np.stack([u, v], 1).astype(np.float32)


def check_points(points: np.ndarray) -> np.ndarray:
    p = np.asarray(points)
    if p.ndim != 2 or p.shape[1] < 3:
        raise FusionError(f"points must be (N, 3) or (N, 4) x, y, z[, intensity], got shape {p.shape}")
    return p[:, :3] if p.dtype == np.float32 else p[:, :3].astype(np.float32)  # a view: no copy of the scan


def crop_to_image(points_cam: np.ndarray, intr: CameraIntrinsics, min_depth: float, max_range: float,
                  boxes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Indices of the points the camera sees (in front, within range, inside the image or, given
    xyxy ``boxes`` (which may reach outside the image), inside some box) and their pixels."""
    z = points_cam[:, 2]
    front = np.flatnonzero((z > min_depth) & (z < max_range))
    uv = project(points_cam[front], intr)
    inside: np.ndarray
    if boxes is None:
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < intr.width) & (uv[:, 1] >= 0) & (uv[:, 1] < intr.height)
    else:
        inside = np.asarray(in_boxes(uv, boxes).any(0))
    return front[inside], uv[inside]


def frustum_boxes(boxes: np.ndarray, intr: CameraIntrinsics, margin: float, border: float = 1.0) -> np.ndarray:
    """The xyxy boxes grown by ``margin`` of their size on each side and opened without limit on the
    sides where they touch the image border (within ``border`` px): an object cut by the image
    edge goes on outside it, and the LiDAR sees that part too."""
    wh = boxes[:, 2:] - boxes[:, :2]
    out = np.concatenate([boxes[:, :2] - margin * wh, boxes[:, 2:] + margin * wh], 1).astype(np.float32)
    big = np.float32(1e9)
    out[boxes[:, 0] <= border, 0] = -big
    out[boxes[:, 1] <= border, 1] = -big
    out[boxes[:, 2] >= intr.width - border, 2] = big
    out[boxes[:, 3] >= intr.height - border, 3] = big
    return out


def in_boxes(uv: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(M, N) bool: pixel n lies in xyxy box m (the frustum of each 2D detection)."""
    u, v = uv[None, :, 0], uv[None, :, 1]
    b = boxes[:, :, None]
    return np.asarray((u >= b[:, 0]) & (u < b[:, 2]) & (v >= b[:, 1]) & (v < b[:, 3]))


def paint(uv: np.ndarray, mask: np.ndarray, intr: CameraIntrinsics, rows: tuple[int, ...] = (0,)) -> np.ndarray:
    """Point painting: the semantic class of each point's pixel in ``mask`` (H, W), which may have
    another resolution than ``intr`` (its pixels are scaled). With ``rows`` offsets, (N, len(rows))
    classes of the pixels that many mask rows below (or above, negative) each point's."""
    if mask.ndim != 2:
        raise FusionError(f"segmentation mask must be (H, W) class ids, got shape {mask.shape}")
    h, w = mask.shape
    col = np.clip((uv[:, 0] * (w / intr.width)).astype(np.int64), 0, w - 1)
    row = (uv[:, 1] * (h / intr.height)).astype(np.int64)
    out: np.ndarray = np.stack([mask[np.clip(row + dr, 0, h - 1), col] for dr in rows], 1)
    return out[:, 0] if rows == (0,) else out
