"""Core data types shared by every layer (sim, models, train, pipeline, ros).

Plain frozen dataclasses over numpy arrays: no torch, no rclpy. Image arrays are
HxW(xC), row-major, pixel coordinates with the origin at the top-left pixel corner.
Boxes are float32 ``(N, 4)`` arrays in ``x1, y1, x2, y2`` pixel order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), dtype=np.float32)


def _empty(dtype: type) -> np.ndarray:
    return np.zeros((0,), dtype=dtype)


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole camera (no distortion). Convertible to sensor_msgs/CameraInfo."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - conventional name
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def scaled(self, width: int, height: int) -> CameraIntrinsics:
        sx, sy = width / self.width, height / self.height
        return CameraIntrinsics(width, height, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy)

    @staticmethod
    def from_fov(width: int, height: int, hfov_deg: float) -> CameraIntrinsics:
        fx = 0.5 * width / np.tan(np.deg2rad(hfov_deg) / 2.0)
        return CameraIntrinsics(width, height, fx, fx, width / 2.0, height / 2.0)


@dataclass(frozen=True)
class Detections:
    """Detector output for one image, in pixel coordinates of that image."""

    boxes: np.ndarray = field(default_factory=_empty_boxes)  # (N, 4) float32 xyxy
    scores: np.ndarray = field(default_factory=lambda: _empty(np.float32))  # (N,)
    class_ids: np.ndarray = field(default_factory=lambda: _empty(np.int64))  # (N,) detection ids
    attention: np.ndarray | None = None  # (N,) per-object attention score, if computed

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if self.boxes.shape != (n, 4) or len(self.scores) != n or len(self.class_ids) != n:
            raise ValueError(
                f"Detections arrays disagree: boxes {self.boxes.shape}, scores {self.scores.shape}, "
                f"class_ids {self.class_ids.shape}"
            )
        if self.attention is not None and len(self.attention) != n:
            raise ValueError(f"attention has {len(self.attention)} entries for {n} boxes")

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, keep: np.ndarray) -> Detections:
        """The detections that ``keep`` (a boolean mask or an index array) selects, in its order."""
        att = None if self.attention is None else self.attention[keep]
        return Detections(self.boxes[keep], self.scores[keep], self.class_ids[keep], att)

    @staticmethod
    def concatenate(parts: Sequence[Detections]) -> Detections:
        """The detections of ``parts`` (one image's pixels) one after the other; per-object attention only when
        every part has it."""
        if not parts:
            return Detections()
        att = (np.concatenate([p.attention for p in parts]).astype(np.float32)
               if all(p.attention is not None for p in parts) else None)
        return Detections(np.concatenate([p.boxes for p in parts]).astype(np.float32).reshape(-1, 4),
                          np.concatenate([p.scores for p in parts]).astype(np.float32),
                          np.concatenate([p.class_ids for p in parts]).astype(np.int64), att)


@dataclass(frozen=True)
class GroundTruth:
    """Ground-truth objects of one frame (sim output, or loaded from a dataset).

    ``boxes`` are modal boxes (tight around the visible pixels) — what detectors are trained
    and evaluated on. ``amodal_boxes`` are the projections of the full 3D boxes, clipped to
    the image. ``visibility`` is visible pixels / unoccluded silhouette pixels in [0, 1].
    ``boxes3d`` rows are ``cx, cy, cz, length, width, height, yaw`` in the camera's
    optical frame (x right, y down, z forward) with yaw about the vertical axis. The box stands
    upright in the world: under a pitched camera (simulated domain randomisation) its vertical axis
    is the world's up seen from the camera (``Frame.world_T_cam``), not the optical y axis.
    """

    boxes: np.ndarray = field(default_factory=_empty_boxes)
    class_ids: np.ndarray = field(default_factory=lambda: _empty(np.int64))  # detection ids
    track_ids: np.ndarray = field(default_factory=lambda: _empty(np.int64))  # stable across frames
    visibility: np.ndarray = field(default_factory=lambda: _empty(np.float32))
    amodal_boxes: np.ndarray = field(default_factory=_empty_boxes)
    boxes3d: np.ndarray = field(default_factory=lambda: np.zeros((0, 7), dtype=np.float32))
    ignore: np.ndarray = field(default_factory=lambda: _empty(bool))  # too small/occluded to score

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass(frozen=True)
class Frame:
    """One camera frame with everything the synthetic world knows about it.

    ``rgb`` is uint8 (H, W, 3). ``semantic`` is uint8 (H, W) semantic class ids,
    ``instance`` int32 (H, W) track ids (0 = background), ``depth`` float32 metres along the
    optical axis (inf where nothing was hit). ``lidar`` is float32 (N, 4): x, y, z in the
    LiDAR frame and intensity; ``lidar_labels`` uint8 semantic ids per point.
    ``world_T_cam`` and ``world_T_lidar`` are 4x4 poses. ``sequence`` and ``index`` identify
    the frame; ``stamp`` is seconds since the sequence start.
    """

    sequence: int
    index: int
    stamp: float
    rgb: np.ndarray
    intrinsics: CameraIntrinsics
    gt: GroundTruth = field(default_factory=GroundTruth)
    semantic: np.ndarray | None = None
    instance: np.ndarray | None = None
    depth: np.ndarray | None = None
    world_T_cam: np.ndarray | None = None
    lidar: np.ndarray | None = None
    lidar_labels: np.ndarray | None = None
    world_T_lidar: np.ndarray | None = None
    scene_cut: bool = False  # True on the first frame of a new scene (temporal state must reset)
