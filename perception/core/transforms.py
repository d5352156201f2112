"""Rigid transforms without ROS: rotation <-> quaternion, 4x4 poses, slerp, and a tree of static transforms.

The one place for this maths: the ROS message glue (``perception/ros/frames.py``) and the evaluation of bags
(``perception/eval/bags.py``) both use it. Conventions: quaternions are ``(x, y, z, w)`` (ROS order);
matrices follow ``a_T_b @ p_b = p_a``; a transform from ``parent`` to ``child`` is ``parent_T_child``
(tf2's convention). Invalid input raises ``ValueError``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence

import numpy as np


def rotation_to_quaternion(rot: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(x, y, z, w)`` of a 3x3 rotation (Shepperd's method, robust for every angle)."""
    m = np.asarray(rot, np.float64)
    if m.shape != (3, 3) or not np.isfinite(m).all():
        raise ValueError(f"a rotation is a finite 3x3 matrix, not {m.tolist()}")
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
    q = np.array([x, y, z, w], np.float64)
    return np.asarray(q / np.linalg.norm(q))


def quaternion_to_rotation(q: Sequence[float] | np.ndarray) -> np.ndarray:
    """3x3 rotation of a quaternion ``(x, y, z, w)`` (normalised first; a zero or non-finite one is refused)."""
    x, y, z, w = (float(v) for v in q)
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if not math.isfinite(n) or n < 1e-9:
        raise ValueError(f"quaternion ({x}, {y}, {z}, {w}) is not a rotation")
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip


def pose_matrix(rot: np.ndarray, xyz: Iterable[float]) -> np.ndarray:
    """The 4x4 pose of a 3x3 rotation and a translation (non-finite values refused)."""
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = list(xyz)
    if not np.isfinite(out).all():
        raise ValueError(f"pose has non-finite values: {out.tolist()}")
    return out


def interpolate_pose(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    """The rigid pose ``w`` of the way from ``a`` to ``b`` (0: a, 1: b): linear translation, slerped rotation."""
    qa, qb = rotation_to_quaternion(a[:3, :3]), rotation_to_quaternion(b[:3, :3])
    if float(qa @ qb) < 0.0:
        qb = -qb  # the shorter way round
    angle = float(np.arccos(np.clip(qa @ qb, -1.0, 1.0)))
    q = qa if angle < 1e-9 else (np.sin((1.0 - w) * angle) * qa + np.sin(w * angle) * qb) / np.sin(angle)
    return pose_matrix(quaternion_to_rotation(q), (1.0 - w) * a[:3, 3] + w * b[:3, 3])


class TransformTree:
    """Static transforms (what /tf_static says), thread-safe. A later transform for the same child replaces the
    earlier one (tf2's rule). :meth:`lookup` walks the tree up from both frames to their common ancestor, so
    ``base_link -> lidar`` and ``base_link -> camera_optical_frame`` answer ``lidar -> camera_optical_frame``
    too. Leading slashes of frame names are ignored."""

    def __init__(self) -> None:
        self._parent: dict[str, tuple[str, np.ndarray]] = {}  # child -> (parent, parent_T_child)
        self._lock = threading.Lock()

    def add(self, parent: str, child: str, parent_T_child: np.ndarray) -> None:  # noqa: N803
        parent, child = parent.lstrip("/"), child.lstrip("/")
        if not parent or not child or parent == child:
            raise ValueError(f"transform {parent!r} -> {child!r} needs two different, non-empty frames")
        m = np.asarray(parent_T_child, np.float64)
        if m.shape != (4, 4) or not np.isfinite(m).all():
            raise ValueError(f"transform {parent!r} -> {child!r} is not a finite 4x4 pose")
        with self._lock:
            self._parent[child] = (parent, m)

    def __len__(self) -> int:
        return len(self._parent)

    def _chain(self, frame: str) -> list[tuple[str, np.ndarray]]:
        """[(ancestor, ancestor_T_frame), ...] from ``(frame, I)`` up to the root of its tree."""
        out = [(frame, np.eye(4))]
        while out[-1][0] in self._parent and len(out) < 64:  # 64: a cycle in the input cannot hang us
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
