"""core.transforms: rotation <-> quaternion, poses, slerp and the static-transform tree (no ROS)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perception.core.transforms import (
    TransformTree,
    interpolate_pose,
    pose_matrix,
    quaternion_to_rotation,
    rotation_to_quaternion,
)


def _rot(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues' formula (independent of the code under test)."""
    k = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx


def _yaw(pose: np.ndarray) -> float:
    return math.atan2(pose[1, 0], pose[0, 0])


@pytest.mark.parametrize("axis,angle", [
    ((0, 0, 1), 0.3), ((1, 0, 0), math.pi), ((0, 1, 0), math.pi), ((0, 0, 1), math.pi),  # each Shepperd branch
    ((1, 2, 3), 2.9), ((1, -1, 0.2), -1.7), ((0, 0, 1), 0.0),
])
def test_rotation_quaternion_round_trip(axis: tuple[float, float, float], angle: float) -> None:
    r = _rot(np.array(axis, np.float64), angle)
    q = rotation_to_quaternion(r)
    assert abs(np.linalg.norm(q) - 1.0) < 1e-12
    np.testing.assert_allclose(quaternion_to_rotation(q), r, atol=1e-12)
    # ROS order (x, y, z, w): about z by `angle` is (0, 0, sin(a/2), cos(a/2)) up to sign
    if axis == (0, 0, 1):
        np.testing.assert_allclose(np.abs(q), np.abs([0, 0, math.sin(angle / 2), math.cos(angle / 2)]), atol=1e-12)


def test_quaternions_are_normalised_and_invalid_ones_refused() -> None:
    np.testing.assert_allclose(quaternion_to_rotation((0, 0, 0, 5.0)), np.eye(3))
    for bad in ((0, 0, 0, 0), (math.nan, 0, 0, 1), (math.inf, 0, 0, 1)):
        with pytest.raises(ValueError, match="not a rotation"):
            quaternion_to_rotation(bad)
    with pytest.raises(ValueError, match="3x3"):
        rotation_to_quaternion(np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="non-finite"):
        pose_matrix(np.eye(3), (0.0, math.nan, 0.0))


def test_interpolated_pose_slerps_the_rotation_the_short_way() -> None:
    a = pose_matrix(_rot(np.array([0, 0, 1.0]), 0.0), (0, 0, 0))
    b = pose_matrix(_rot(np.array([0, 0, 1.0]), math.pi / 2), (10, 0, 2))
    mid = interpolate_pose(a, b, 0.5)
    assert _yaw(mid) == pytest.approx(math.pi / 4)
    np.testing.assert_allclose(mid[:3, 3], (5, 0, 1))
    np.testing.assert_allclose(interpolate_pose(a, b, 0.0), a, atol=1e-12)
    np.testing.assert_allclose(interpolate_pose(a, b, 1.0), b, atol=1e-12)
    # 170 deg -> -170 deg: the short way passes 180 deg, not 0
    c = pose_matrix(_rot(np.array([0, 0, 1.0]), math.radians(170)), (0, 0, 0))
    d = pose_matrix(_rot(np.array([0, 0, 1.0]), math.radians(-170)), (0, 0, 0))
    assert abs(abs(_yaw(interpolate_pose(c, d, 0.5))) - math.pi) < 1e-9


def test_tree_answers_through_the_common_ancestor() -> None:
    tree = TransformTree()
    base_T_cam = pose_matrix(_rot(np.array([1, -1, 1.0]), 2.0), (1.5, 0.0, 1.4))
    base_T_lidar = pose_matrix(_rot(np.array([0, 0, 1.0]), 0.1), (0.5, 0.0, 1.9))
    tree.add("base_link", "camera_optical_frame", base_T_cam)
    tree.add("/base_link", "lidar", base_T_lidar)  # leading slashes are ignored
    assert len(tree) == 2
    np.testing.assert_allclose(tree.lookup("base_link", "camera_optical_frame"), base_T_cam)
    np.testing.assert_allclose(tree.lookup("camera_optical_frame", "base_link"), np.linalg.inv(base_T_cam))
    cam_T_lidar = tree.lookup("camera_optical_frame", "lidar")
    assert cam_T_lidar is not None
    np.testing.assert_allclose(base_T_cam @ cam_T_lidar, base_T_lidar, atol=1e-12)
    np.testing.assert_allclose(tree.lookup("lidar", "/lidar"), np.eye(4))
    assert tree.lookup("base_link", "radar") is None  # not connected
    moved = pose_matrix(np.eye(3), (9, 9, 9))
    tree.add("base_link", "lidar", moved)  # a later transform for the same child replaces the earlier one
    np.testing.assert_allclose(tree.lookup("base_link", "lidar"), moved)


def test_tree_refuses_bad_transforms_and_survives_a_cycle() -> None:
    tree = TransformTree()
    for parent, child, m in (("", "a", np.eye(4)), ("a", "a", np.eye(4)), ("a", "/", np.eye(4)),
                             ("a", "b", np.eye(3)), ("a", "b", np.full((4, 4), np.nan))):
        with pytest.raises(ValueError):
            tree.add(parent, child, m)
    tree.add("a", "b", np.eye(4))
    tree.add("b", "a", np.eye(4))  # a cycle in the input: lookups end instead of hanging
    assert tree.lookup("a", "c") is None
