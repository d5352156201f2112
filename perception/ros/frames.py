"""Poses on the wire: 4x4 matrices <-> geometry_msgs/TransformStamped and nav_msgs/Odometry, and a
small store of static transforms (what /tf_static says) that answers ``target_T_source``.

No rclpy here (message classes only): tested without a ROS graph. The matrices follow the
project's ``a_T_b`` convention: ``a_T_b @ p_b = p_a``; a TransformStamped with ``header.frame_id``
= a and ``child_frame_id`` = b carries ``a_T_b`` (tf2's convention).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from geometry_msgs.msg import Quaternion, TransformStamped, Vector3
from nav_msgs.msg import Odometry
from std_msgs.msg import Header

from perception.core import transforms
from perception.ros.errors import RosError


def matrix_to_quaternion(rot: np.ndarray) -> Quaternion:
    """Unit quaternion message of a 3x3 rotation (``core.transforms.rotation_to_quaternion``)."""
    try:
        x, y, z, w = (float(v) for v in transforms.rotation_to_quaternion(rot))
    except ValueError as e:
        raise RosError(str(e)) from e
    return Quaternion(x=x, y=y, z=z, w=w)


def quaternion_to_matrix(q: Quaternion) -> np.ndarray:
    """3x3 rotation of a quaternion message (normalised first; a zero quaternion is refused)."""
    try:
        return transforms.quaternion_to_rotation((q.x, q.y, q.z, q.w))
    except ValueError as e:
        raise RosError(str(e)) from e


def _pose_matrix(rot: np.ndarray, xyz: Iterable[float]) -> np.ndarray:
    try:
        return transforms.pose_matrix(rot, xyz)
    except ValueError as e:
        raise RosError(str(e)) from e


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


class StaticTransforms(transforms.TransformTree):
    """The static transforms seen on /tf_static (``core.transforms.TransformTree`` fed with messages)."""

    def add_msg(self, msg: TransformStamped) -> None:
        try:
            self.add(msg.header.frame_id, msg.child_frame_id, transform_to_matrix(msg))
        except ValueError as e:
            raise RosError(str(e)) from e
