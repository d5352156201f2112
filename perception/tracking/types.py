"""What goes into and out of the tracker: 3D detections of one frame, tracked objects, track UUIDs.

Pure numpy. :class:`Detections3D` is the contract between fusion (which produces it, in base_link)
and the tracker; :class:`TrackedObject` is what the ROS layer turns into Detection3DArray and
Autoware ``TrackedObjects`` (``track_uuid`` gives the ``unique_identifier_msgs/UUID`` bytes).
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field

import numpy as np

from perception.fusion.fuser import Objects3D

# where a detection's 3D position came from (Detections3D.sources)
SOURCE_LIDAR, SOURCE_CAMERA = 0, 1
SOURCE_NAMES: tuple[str, ...] = ("lidar", "camera")


class TrackingError(ValueError):
    """Bad input to the tracker or its evaluation (shapes, stamps, configuration)."""


def _f64(a: object, shape: tuple[int, ...], name: str) -> np.ndarray:
    out = np.asarray(a, dtype=np.float64)
    if out.shape != shape:
        raise TrackingError(f"Detections3D.{name} must have shape {shape}, got {out.shape}")
    if not np.isfinite(out).all():
        raise TrackingError(f"Detections3D.{name} holds NaN/inf: drop those detections before tracking")
    return out


@dataclass(frozen=True)
class Detections3D:
    """N 3D detections of one frame, one array entry per detection, in the frame ``frame_id``.

    ``centers`` are box centres (x, y, z), ``sizes`` length/width/height (length along ``yaws``),
    ``yaws`` headings about z (radians), ``position_covs`` (N, 3, 3) position covariances (m^2;
    build from variances with :meth:`create`), ``scores`` in [0, 1], ``class_ids`` detection class
    ids (perception.core.classes), ``sources`` SOURCE_LIDAR / SOURCE_CAMERA, ``index_2d`` the index of
    the 2D detection each came from (-1: none). Arrays are validated and converted on construction."""

    class_ids: np.ndarray
    scores: np.ndarray
    centers: np.ndarray
    sizes: np.ndarray
    yaws: np.ndarray
    position_covs: np.ndarray
    sources: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))  # none given: all SOURCE_LIDAR
    index_2d: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    frame_id: str = "base_link"

    def __post_init__(self) -> None:
        n = len(np.asarray(self.class_ids).reshape(-1))
        set_ = object.__setattr__
        set_(self, "class_ids", np.asarray(self.class_ids, np.int64).reshape(-1))
        set_(self, "scores", _f64(self.scores, (n,), "scores"))
        set_(self, "centers", _f64(self.centers, (n, 3), "centers"))
        set_(self, "sizes", _f64(self.sizes, (n, 3), "sizes"))
        set_(self, "yaws", _f64(self.yaws, (n,), "yaws"))
        set_(self, "position_covs", _f64(self.position_covs, (n, 3, 3), "position_covs"))
        for name, default, dtype in (("sources", SOURCE_LIDAR, np.int8), ("index_2d", -1, np.int64)):
            a = np.asarray(getattr(self, name), dtype).reshape(-1)
            if len(a) not in (0, n):
                raise TrackingError(f"Detections3D.{name} has {len(a)} entries for {n} detections (or give none)")
            set_(self, name, a if len(a) == n else np.full(n, default, dtype))
        if ((self.scores < 0) | (self.scores > 1)).any():
            raise TrackingError("Detections3D.scores must lie in [0, 1]")
        if (np.diagonal(self.position_covs, axis1=1, axis2=2) <= 0).any():
            raise TrackingError("Detections3D.position_covs need positive variances on the diagonal")

    def __len__(self) -> int:
        return len(self.class_ids)

    @staticmethod
    def create(class_ids: object, scores: object, centers: object, sizes: object, yaws: object,
               position_var: object, sources: object = (), index_2d: object = (),
               frame_id: str = "base_link") -> Detections3D:  # fmt: skip
        """Like the constructor, but ``position_var`` may also be (N, 3) variances (diagonal
        covariances) or one scalar variance for every axis of every detection."""
        n = len(np.asarray(class_ids).reshape(-1))
        var = np.asarray(position_var, np.float64)
        if var.ndim == 0:
            covs = np.eye(3)[None] * float(var) * np.ones((n, 1, 1))
        elif var.shape == (n, 3):
            covs = np.einsum("ni,ij->nij", var, np.eye(3))
        else:
            covs = var
        return Detections3D(np.asarray(class_ids), np.asarray(scores), np.asarray(centers), np.asarray(sizes),
                            np.asarray(yaws), covs, np.asarray(sources), np.asarray(index_2d), frame_id)  # fmt: skip

    @staticmethod
    def from_objects3d(objects: Objects3D, frame_id: str = "base_link") -> Detections3D:
        """The fusion step's output as tracker input: same rows, ``sources`` "lidar"/"camera" as
        SOURCE_LIDAR/SOURCE_CAMERA, ``index_2d`` the 2D detection each object came from. Rows with a
        non-finite centre, size or covariance (a degenerate fit) are dropped, as the tracker requires."""
        ok = (np.isfinite(objects.centers).all(1) & np.isfinite(objects.sizes).all(1) & np.isfinite(objects.yaws)
              & np.isfinite(objects.covariances).all((1, 2)))  # fmt: skip
        sources = np.array([SOURCE_NAMES.index(str(s)) for s in objects.sources[ok]], np.int8)
        return Detections3D(objects.class_ids[ok], np.clip(objects.scores[ok], 0.0, 1.0), objects.centers[ok],
                            objects.sizes[ok], objects.yaws[ok], objects.covariances[ok], sources,
                            objects.detection_index[ok], frame_id)  # fmt: skip

    @staticmethod
    def empty(frame_id: str = "base_link") -> Detections3D:
        return Detections3D.create(np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0),
                                   np.zeros((0, 3, 3)), frame_id=frame_id)  # fmt: skip

    def subset(self, keep: np.ndarray) -> Detections3D:
        """The detections selected by a boolean mask or index array."""
        return Detections3D(self.class_ids[keep], self.scores[keep], self.centers[keep], self.sizes[keep],
                            self.yaws[keep], self.position_covs[keep], self.sources[keep], self.index_2d[keep],
                            self.frame_id)  # fmt: skip

    def transformed(self, transform: np.ndarray, frame_id: str) -> Detections3D:
        """The detections expressed in another frame: ``transform`` (4x4) maps points of ``self.frame_id``
        into ``frame_id`` (e.g. odom_T_base). Centres, covariances (R C R^T) and yaws (the heading
        vector rotated, then projected onto the new x-y plane) follow; sizes are kept."""
        T = np.asarray(transform, np.float64)
        if T.shape != (4, 4) or not np.isfinite(T).all():
            raise TrackingError(f"transform must be a finite 4x4 matrix, got shape {T.shape}")
        R, t = T[:3, :3], T[:3, 3]
        heading = np.stack([np.cos(self.yaws), np.sin(self.yaws), np.zeros(len(self))], 1) @ R.T
        return Detections3D(self.class_ids, self.scores, self.centers @ R.T + t, self.sizes,
                            np.arctan2(heading[:, 1], heading[:, 0]), R @ self.position_covs @ R.T, self.sources,
                            self.index_2d, frame_id)  # fmt: skip


@dataclass(frozen=True)
class TrackedObject:
    """One confirmed track after a frame's update, in the tracker's fixed frame (odom).

    ``position`` is the box centre, ``position_cov`` its 3x3 covariance, ``yaw`` the heading and
    ``yaw_var`` its variance; ``velocity`` (vx, vy, vz) in odom with ``velocity_cov`` (3x3) and
    ``yaw_rate`` (rad/s). ``class_probability`` is the share of the (score-weighted) class votes of
    the associated detections that went to ``class_id``; ``existence_probability`` comes from a
    binary Bayes filter over hits and misses. ``time_since_update`` > 0 means the track coasts
    (predicted through a missed detection)."""

    track_id: int
    class_id: int
    class_probability: float
    existence_probability: float
    position: np.ndarray
    position_cov: np.ndarray
    yaw: float
    yaw_var: float
    dimensions: np.ndarray  # length, width, height
    velocity: np.ndarray
    velocity_cov: np.ndarray
    yaw_rate: float
    is_stationary: bool
    age: float  # seconds since birth
    hits: int
    time_since_update: float
    stamp: float
    detection_index: int = -1  # the input detection that updated it this frame (-1: coasting)
    index_2d: int = -1  # that detection's index_2d: the 2D detection to label with this track id
    frame_id: str = "odom"

    @property
    def speed(self) -> float:
        return float(np.hypot(self.velocity[0], self.velocity[1]))

    def transformed(self, transform: np.ndarray, frame_id: str) -> TrackedObject:
        """The object in another frame: ``transform`` (4x4) maps points of ``self.frame_id`` into
        ``frame_id`` (base_T_odom for base_link outputs). Velocities stay relative to the ground, only
        their axes turn; the heading turns with the transform's rotation about z."""
        T = np.asarray(transform, np.float64)
        if T.shape != (4, 4):
            raise TrackingError(f"transform must be 4x4, got shape {T.shape}")
        R = T[:3, :3]
        h = R @ np.array([np.cos(self.yaw), np.sin(self.yaw), 0.0])
        return dataclasses.replace(
            self, position=R @ self.position + T[:3, 3], position_cov=R @ self.position_cov @ R.T,
            yaw=float(np.arctan2(h[1], h[0])), velocity=R @ self.velocity, velocity_cov=R @ self.velocity_cov @ R.T,
            frame_id=frame_id,
        )  # fmt: skip

    def pose_covariance(self) -> np.ndarray:
        """6x6 covariance of (x, y, z, roll, pitch, yaw) as geometry_msgs/PoseWithCovariance holds it
        (row-major; roll and pitch are not estimated: zero)."""
        out = np.zeros((6, 6))
        out[:3, :3] = self.position_cov
        out[5, 5] = self.yaw_var
        return out

    def twist_in_body(self) -> tuple[np.ndarray, np.ndarray]:
        """Linear velocity and its 3x3 covariance in the object's own frame (x along ``yaw``), the
        convention of Autoware's TrackedObjectKinematics.twist_with_covariance."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        R = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])  # odom -> body
        return R @ self.velocity, R @ self.velocity_cov @ R.T


def track_uuid(track_id: int, session: str) -> bytes:
    """The 16 bytes of a ``unique_identifier_msgs/UUID`` for a track: a name-based UUID (v5) of the
    tracker ``session`` (:attr:`MultiObjectTracker.session`, random per tracker instance unless given)
    and the integer id, so ids restarting at 1 after a restart never collide with earlier UUIDs."""
    if track_id < 0:
        raise TrackingError(f"track id must be >= 0, got {track_id}")
    return uuid.uuid5(uuid.NAMESPACE_OID, f"perception.tracking/{session}/{int(track_id)}").bytes
