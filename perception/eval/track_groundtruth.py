"""Ground-truth object tracks for tracker evaluation and noisy detections made from them (pure numpy).

The synthetic world gives, per frame, 3D boxes in the camera's optical frame (``GroundTruth.boxes3d``:
cx, cy, cz, l, w, h, KITTI yaw), their track ids and the camera pose ``world_T_cam``.
:func:`objects_from_boxes3d` moves them into the world (= odom) frame; :func:`with_velocities` adds
each object's velocity from its neighbouring frames; :func:`noisy_detections` plays a detector
(position noise growing with range, misses, scheduled dropouts, false positives, low scores) and
returns :class:`~perception.core.boxes3d.Boxes3D` in base_link, as fusion would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from perception.core.boxes3d import Boxes3D
from perception.eval.tracking import TrackFrame
from perception.tracking.types import TrackedObject, TrackingError


@dataclass(frozen=True)
class GroundTruthFrame:
    """Objects of one frame in odom: centres (N, 3), sizes (N, 3) lwh, yaws (N,), velocities (N, 2)
    (NaN: unknown), plus the ego pose ``odom_T_base`` and the frame's ``stamp`` (s)."""

    stamp: float
    odom_T_base: np.ndarray
    ids: np.ndarray
    classes: np.ndarray
    centers: np.ndarray
    sizes: np.ndarray
    yaws: np.ndarray
    ignore: np.ndarray
    velocities: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def track_frame(self) -> TrackFrame:
        """For :func:`perception.eval.tracking.evaluate_tracking` (bird's-eye-view positions)."""
        vel = self.velocities if self.velocities is not None else np.full((len(self), 2), np.nan)
        return TrackFrame(self.ids, self.centers[:, :2], vel, self.classes, self.ignore)


def predicted_frame(objects: Sequence[TrackedObject]) -> TrackFrame:
    """The tracker's output of one frame as a TrackFrame (bird's-eye view), scored by existence x
    class probability (what a planner would threshold; AMOTA sweeps it)."""
    return TrackFrame(
        np.array([o.track_id for o in objects], np.int64), np.array([o.position[:2] for o in objects]).reshape(-1, 2),
        np.array([o.velocity[:2] for o in objects]).reshape(-1, 2), np.array([o.class_id for o in objects], np.int64),
        scores=np.array([o.existence_probability * o.class_probability for o in objects], np.float64),
    )  # fmt: skip


def world_yaw_from_camera(ry: np.ndarray, cam_rotation: np.ndarray) -> np.ndarray:
    """World heading of upright boxes from their KITTI ``rotation_y`` in a camera's optical frame
    (``cam_rotation``: the 3x3 rotation of world_T_cam).

    rotation_y keeps only the x and z components of the heading in the optical frame; the y
    component is recovered from the heading being horizontal in the world (exact under camera pitch)."""
    R = np.asarray(cam_rotation, np.float64)
    if abs(R[2, 1]) < 1e-6:
        raise TrackingError("camera optical y axis is horizontal: the box heading is not recoverable from rotation_y")
    c, s = np.cos(ry), -np.sin(ry)  # optical x, z components of the heading direction
    fy = -(R[2, 0] * c + R[2, 2] * s) / R[2, 1]
    d = np.stack([c, fy, s], 1) @ R.T
    return np.arctan2(d[:, 1], d[:, 0])


def objects_from_boxes3d(boxes3d: np.ndarray, cam_pose: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World centres (N, 3), sizes (N, 3) and yaws (N,) of optical-frame ``boxes3d`` rows
    (cx, cy, cz, l, w, h, rotation_y) seen from a camera at ``cam_pose`` (world_T_cam, 4x4)."""
    b = np.asarray(boxes3d, np.float64).reshape(-1, 7)
    T = np.asarray(cam_pose, np.float64)
    centers = b[:, :3] @ T[:3, :3].T + T[:3, 3]
    return centers, b[:, 3:6].copy(), world_yaw_from_camera(b[:, 6], T[:3, :3])


def with_velocities(frames: Sequence[GroundTruthFrame], max_accel: float = 8.0) -> list[GroundTruthFrame]:
    """Each object's bird's-eye-view velocity by central differences of its centre over the frames
    before and after (one-sided at the ends of its presence); NaN where it is seen in one frame only
    or where the two one-sided estimates disagree by more than ``max_accel`` (m/s^2) over the gap
    (a jump: an object wrapping around the world, or a pose discontinuity)."""
    index = [{int(i): k for k, i in enumerate(f.ids)} for f in frames]
    out = []
    for n, f in enumerate(frames):
        vel = np.full((len(f), 2), np.nan)
        for k, tid in enumerate(f.ids):
            est = []
            for m in (n - 1, n + 1):
                if 0 <= m < len(frames) and (j := index[m].get(int(tid))) is not None:
                    dt = frames[m].stamp - f.stamp
                    est.append(((frames[m].centers[j, :2] - f.centers[k, :2]) / dt, abs(dt)))
            if len(est) == 2:
                (v0, dt0), (v1, dt1) = est
                if np.linalg.norm(v1 - v0) > max_accel * (dt0 + dt1):
                    continue
                vel[k] = (v0 * dt1 + v1 * dt0) / (dt0 + dt1)  # = (p[n+1] - p[n-1]) / (t[n+1] - t[n-1])
            elif len(est) == 1:
                vel[k] = est[0][0]
        out.append(dataclasses.replace(f, velocities=vel))
    return out


@dataclass(frozen=True)
class DetectionNoise:
    """A detector played on ground truth.

    Position noise has standard deviation ``pos_std + pos_std_per_m * range`` (m) on x and y,
    ``z_std`` on z; the detections carry that covariance. Heading noise ``yaw_std_deg``; size noise
    ``size_rel_std`` (relative). Each object is missed with ``p_miss`` (``p_miss_ignored`` when its
    ground truth is marked ignore: small or occluded) and is not seen at all beyond ``max_range``;
    true detections score uniformly in ``score_range`` (those under the tracker's high score test its
    second association stage). ``false_positives`` per frame on average (Poisson), at random places
    up to ``max_range`` ahead, scoring in ``fp_score_range``. ``dropouts`` maps track ids to frame
    ranges (first, last) in which they are never detected (occlusions)."""

    pos_std: float = 0.15
    pos_std_per_m: float = 0.005
    z_std: float = 0.1
    yaw_std_deg: float = 5.0
    size_rel_std: float = 0.05
    p_miss: float = 0.1
    p_miss_ignored: float = 0.7
    max_range: float = 70.0
    score_range: tuple[float, float] = (0.3, 1.0)
    false_positives: float = 1.0
    fp_score_range: tuple[float, float] = (0.1, 0.6)
    fp_classes: tuple[int, ...] = (0, 2)
    dropouts: dict[int, tuple[int, int]] = field(default_factory=dict)


def noisy_detections(gt: GroundTruthFrame, index: int, rng: np.random.Generator,
                     noise: DetectionNoise | None = None) -> Boxes3D:  # fmt: skip
    """Detections in base_link of frame number ``index`` (for the dropouts) of ``gt``, drawn with ``rng``."""
    nz = noise or DetectionNoise()
    n = len(gt)
    base_T_odom = np.linalg.inv(gt.odom_T_base)
    centers_b = gt.centers @ base_T_odom[:3, :3].T + base_T_odom[:3, 3]
    rng_m = np.linalg.norm(centers_b[:, :2], axis=1)
    p_miss = np.where(gt.ignore, nz.p_miss_ignored, nz.p_miss)
    keep = (rng.random(n) >= p_miss) & (rng_m <= nz.max_range)
    for k, tid in enumerate(gt.ids):
        lo_hi = nz.dropouts.get(int(tid))
        if lo_hi is not None and lo_hi[0] <= index <= lo_hi[1]:
            keep[k] = False
    sd = nz.pos_std + nz.pos_std_per_m * rng_m
    yaw_b = gt.yaws + np.arctan2(base_T_odom[1, 0], base_T_odom[0, 0])
    det_c = centers_b + rng.normal(size=(n, 3)) * np.column_stack([sd, sd, np.full(n, nz.z_std)])
    det_s = gt.sizes * (1 + nz.size_rel_std * rng.normal(size=(n, 3)))
    det_y = yaw_b + np.deg2rad(nz.yaw_std_deg) * rng.normal(size=n)
    scores = rng.uniform(*nz.score_range, size=n)
    var = np.column_stack([sd**2, sd**2, np.full(n, nz.z_std**2)])
    nfp = int(rng.poisson(nz.false_positives))
    fp_c = np.column_stack([rng.uniform(5.0, nz.max_range, nfp), rng.uniform(-15.0, 15.0, nfp), np.full(nfp, 0.8)])
    fp_sd = nz.pos_std + nz.pos_std_per_m * np.linalg.norm(fp_c[:, :2], axis=1)
    fp_cls = rng.choice(np.asarray(nz.fp_classes), nfp) if nfp else np.zeros(0, np.int64)
    fp_scores = rng.uniform(*nz.fp_score_range, nfp)
    fp_size = np.tile([[1.0, 1.0, 1.6]], (nfp, 1))
    return Boxes3D(
        class_ids=np.concatenate([gt.classes[keep], fp_cls]), centers=np.concatenate([det_c[keep], fp_c]),
        sizes=np.concatenate([np.abs(det_s[keep]), fp_size]),
        yaws=np.concatenate([det_y[keep], rng.uniform(-np.pi, np.pi, nfp)]),
        scores=np.concatenate([scores[keep], fp_scores]),
        position_covs=np.concatenate([var[keep], np.column_stack([fp_sd**2, fp_sd**2, np.full(nfp, nz.z_std**2)])]),
        sources=np.full(int(keep.sum()) + nfp, "lidar"),
    )  # fmt: skip
