"""Poses on the wire: 4x4 matrices <-> geometry_msgs/TransformStamped and nav_msgs/Odometry, and a
small store of static transforms (what /tf_static says) that answers ``target_T_source``.

No rclpy here (message classes only): tested without a ROS graph. The matrices follow the
project's ``a_T_b`` convention: ``a_T_b @ p_b = p_a``; a TransformStamped with ``header.frame_id``
= a and ``child_frame_id`` = b carries ``a_T_b`` (tf2's convention).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable

import numpy as np
from geometry_msgs.msg import Quaternion, TransformStamped, Vector3
from nav_msgs.msg import Odometry
from std_msgs.msg import Header

from perception.ros.errors import RosError


def matrix_to_quaternion(rot: np.ndarray) -> Quaternion:
    """Unit quaternion of a 3x3 rotation (Shepperd's method, robust for every angle)."""
    m = np.asarray(rot, np.float64)
    tr = float(m[0, 0] + m[1, 1] + m[2, 2])
    if tr > 0.0:
        s = 2.0 * math.sqrt(tr + 1.0)
        w, x, y, z = 0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        w, x, y, z = (m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        w, x, y, z = (m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        w, x, y, z = (m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s
    n = math.sqrt(w * w + x * x + y * y + z * z)
    return Quaternion(x=float(x / n), y=float(y / n), z=float(z / n), w=float(w / n))


def quaternion_to_matrix(q: Quaternion) -> np.ndarray:
    """3x3 rotation of a quaternion (normalised first; a zero quaternion is refused)."""
    x, y, z, w = float(q.x), float(q.y), float(q.z), float(q.w)
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if not math.isfinite(n) or n < 1e-9:
        raise RosError(f"quaternion ({x}, {y}, {z}, {w}) is not a rotation")
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip


def _pose_matrix(rot: np.ndarray, xyz: Iterable[float]) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = list(xyz)
    if not np.isfinite(out).all():
        raise RosError(f"pose has non-finite values: {out.tolist()}")
    return out


def transform_msg(parent_T_child: np.ndarray, header: Header, child_frame_id: str) -> TransformStamped:  # noqa: N803
    """``parent_T_child`` (4x4) as a TransformStamped from ``header.frame_id`` to ``child_frame_id``."""
    m = np.asarray(parent_T_child, np.float64)
    msg = TransformStamped(header=header, child_frame_id=child_frame_id)
    msg.transform.translation = Vector3(x=float(m[0, 3]), y=float(m[1, 3]), z=float(m[2, 3]))
    msg.transform.rotation = matrix_to_quaternion(m[:3, :3])
    return msg


def transform_to_matrix(msg: TransformStamped) -> np.ndarray:
    t = msg.transform.translation
    return _pose_matrix(quaternion_to_matrix(msg.transform.rotation), (t.x, t.y, t.z))


def odometry_msg(odom_T_base: np.ndarray, header: Header, child_frame_id: str,  # noqa: N803
                 linear: np.ndarray | None = None, angular_z: float = 0.0) -> Odometry:  # fmt: skip
    """The ego pose ``odom_T_base`` (header.frame_id = odom) with its twist in the child (base) frame."""
    m = np.asarray(odom_T_base, np.float64)
    msg = Odometry(header=header, child_frame_id=child_frame_id)
    p = msg.pose.pose
    p.position.x, p.position.y, p.position.z = (float(v) for v in m[:3, 3])
    p.orientation = matrix_to_quaternion(m[:3, :3])
    if linear is not None:
        v = np.asarray(linear, np.float64)
        msg.twist.twist.linear = Vector3(x=float(v[0]), y=float(v[1]), z=float(v[2]))
    msg.twist.twist.angular.z = float(angular_z)
    return msg


def odometry_to_matrix(msg: Odometry) -> np.ndarray:
    """``odom_T_base`` of an Odometry message (its header.frame_id -> its child_frame_id)."""
    p = msg.pose.pose
    return _pose_matrix(quaternion_to_matrix(p.orientation), (p.position.x, p.position.y, p.position.z))


class StaticTransforms:
    """The static transforms seen on /tf_static (thread-safe). A later transform for the same child
    replaces the earlier one (tf2's rule). :meth:`lookup` walks the tree up from both frames to their
    common ancestor, so ``base_link -> lidar`` and ``base_link -> camera_optical_frame`` answer
    ``lidar -> camera_optical_frame`` too."""

    def __init__(self) -> None:
        self._parent: dict[str, tuple[str, np.ndarray]] = {}  # child -> (parent, parent_T_child)
        self._lock = threading.Lock()

    def add(self, msg: TransformStamped) -> None:
        parent, child = msg.header.frame_id.lstrip("/"), msg.child_frame_id.lstrip("/")
        if not parent or not child or parent == child:
            raise RosError(f"transform {parent!r} -> {child!r} needs two different, non-empty frames")
        m = transform_to_matrix(msg)
        with self._lock:
            self._parent[child] = (parent, m)

    def __len__(self) -> int:
        return len(self._parent)

    def _chain(self, frame: str) -> list[tuple[str, np.ndarray]]:
        """[(ancestor, ancestor_T_frame), ...] from ``(frame, I)`` up to the root of its tree."""
        out = [(frame, np.eye(4))]
        while out[-1][0] in self._parent and len(out) < 64:
            parent, parent_T_child = self._parent[out[-1][0]]
            out.append((parent, parent_T_child @ out[-1][1]))
        return out

    def lookup(self, target: str, source: str) -> np.ndarray | None:
        """``target_T_source`` (4x4), or None when the two frames are not connected."""
        target, source = target.lstrip("/"), source.lstrip("/")
        if target == source:
            return np.eye(4)
        with self._lock:
            up_s = dict(self._chain(source))
            up_t = self._chain(target)
        for name, a_T_target in up_t:
            if name in up_s:
                return np.asarray(np.linalg.inv(a_T_target) @ up_s[name])
        return None
