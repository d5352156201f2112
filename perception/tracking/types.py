"""What comes out of the tracker: tracked objects and track UUIDs.

Pure numpy. What goes in is :class:`perception.core.boxes3d.Boxes3D` (fusion's output, in base_link);
:class:`TrackedObject` is what the ROS layer turns into Detection3DArray and Autoware
``TrackedObjects`` (``track_uuid`` gives the ``unique_identifier_msgs/UUID`` bytes).
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass

import numpy as np


class TrackingError(ValueError):
    """Bad input to the tracker or its evaluation (shapes, stamps, configuration)."""


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
    index_2d: int = -1  # that detection's detection_index: the 2D detection to label with this track id
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
