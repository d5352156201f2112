"""ObjectPipeline: a camera's 2D perception + a LiDAR scan -> 3D objects (base_link) + tracks (odom).

Per frame (:meth:`ObjectPipeline.process`), pure numpy/scipy, no rclpy:

    PerceptionResult (2D boxes, segmentation) + scan ─► fusion.fuse ─► Boxes3D (base_link)
        ─► MultiObjectTracker.update(odom_T_base) ─► TrackedObject (odom)

Without a scan (``points=None``, a LiDAR dropout or a camera-only vehicle) every object is ranged
from the camera alone (flat-ground intersection, covariance growing with range^2), and the tracker
weighs it by that covariance. The tracker is reset whenever the 2D stage reset its temporal memory
(scene cut, bag loop, time jump: ``PerceptionResult.reset``) and on its own when the stamps jump
(back in time, or forward more than ``ResetPolicy.max_gap_s``), so identities never bridge a cut.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from perception.core.boxes3d import Boxes3D
from perception.core.temporal import ResetPolicy, ResetReason, reset_reason
from perception.core.types import CameraIntrinsics
from perception.fusion import Extrinsics, FusionConfig, fuse
from perception.tracking import MultiObjectTracker, TrackedObject, TrackerConfig

from .perceptor import PerceptionResult, PipelineError


@dataclass(frozen=True)
class ObjectPipelineConfig:
    """The fusion and tracker configurations, and when the tracker forgets its tracks (``reset``:
    only ``max_gap_s`` is used here; scene cuts come from the 2D stage's own detection).

    ``camera_score_scale``: with a scan, a 2D detection that no LiDAR cluster answers is weak
    evidence (on the synthetic drives most such objects are false positives or mis-ranged), so the
    score of its camera-only 3D object is multiplied by this (1.0: keep it). Below the tracker's
    ``birth_score`` such objects still update existing tracks but start none. Without a scan the
    scores are kept."""

    fusion: FusionConfig = field(default_factory=FusionConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    reset: ResetPolicy = field(default_factory=ResetPolicy)
    camera_score_scale: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.camera_score_scale <= 1.0:
            raise PipelineError(f"camera_score_scale {self.camera_score_scale} must lie in [0, 1]")


@dataclass(frozen=True)
class ObjectFrame:
    """One frame's objects: ``objects`` (fused, base_link, one per fused 2D detection), ``tracks``
    (confirmed tracks, odom), why the tracker was reset before this frame (``reset``; NONE: it was
    not), whether a scan was used (``lidar``), and milliseconds per stage: ``fusion`` (with its
    stages as ``fusion.<stage>``), ``tracking`` and ``total``."""

    stamp: float
    objects: Boxes3D
    tracks: list[TrackedObject]
    reset: ResetReason
    lidar: bool
    timings_ms: dict[str, float]


class ObjectPipeline:
    """Fusion + tracking for one camera (and the LiDAR it is calibrated with); see the module doc.
    ``session`` names the tracker's run in the track UUIDs (random unless given)."""

    def __init__(self, config: ObjectPipelineConfig | None = None, session: str | None = None) -> None:
        self.config = config or ObjectPipelineConfig()
        self.tracker = MultiObjectTracker(self.config.tracker, session)
        self._stamp: float | None = None

    def reset(self) -> None:
        """Forget every track (the next frame starts afresh)."""
        self.tracker.reset()
        self._stamp = None

    def _reset_reason(self, perception: PerceptionResult) -> ResetReason:
        own = reset_reason(self._stamp, perception.stamp, None, None, self.config.reset)
        if own is ResetReason.FIRST_FRAME:
            return own
        if perception.reset not in (ResetReason.NONE, ResetReason.FIRST_FRAME):
            return perception.reset  # the 2D stage saw a cut (or was told of one)
        return own

    def process(self, perception: PerceptionResult, points: np.ndarray | None, intrinsics: CameraIntrinsics,
                extrinsics: Extrinsics, odom_T_base: np.ndarray) -> ObjectFrame:  # noqa: N803 - a_T_b frames
        """Fuse and track one frame. ``perception``: the 2D result of the image (its pixel coordinates
        are those of ``intrinsics``); ``points``: the scan (N, 3|4) in the LiDAR frame taken with the
        image, or None; ``odom_T_base``: the 4x4 ego pose at the image's stamp."""
        if perception.segmentation is not None and perception.segmentation.ndim != 2:
            raise PipelineError(f"segmentation must be (H, W) class ids, got {perception.segmentation.shape}")
        pose = np.asarray(odom_T_base, np.float64)
        if pose.shape != (4, 4) or not np.isfinite(pose).all():
            raise PipelineError(f"odom_T_base must be a finite 4x4 pose, got shape {pose.shape}")
        reason = self._reset_reason(perception)
        if reason is not ResetReason.NONE:
            self.tracker.reset()
        self._stamp = perception.stamp
        t0 = time.perf_counter()
        objects, stages = fuse(points, perception.detections, intrinsics, extrinsics, perception.segmentation,
                               self.config.fusion)  # fmt: skip
        if points is not None and self.config.camera_score_scale != 1.0:
            scale = np.where(objects.sources == "camera", np.float32(self.config.camera_score_scale), np.float32(1.0))
            objects = dataclasses.replace(objects, scores=(objects.scores * scale).astype(np.float32))
        t1 = time.perf_counter()
        tracks = self.tracker.update(perception.stamp, pose, objects)
        t2 = time.perf_counter()
        timings = {"fusion": 1e3 * (t1 - t0), "tracking": 1e3 * (t2 - t1), "total": 1e3 * (t2 - t0)}
        timings.update({f"fusion.{k}": 1e3 * v for k, v in stages.items() if k != "total"})
        return ObjectFrame(perception.stamp, objects, tracks, reason, points is not None, timings)
