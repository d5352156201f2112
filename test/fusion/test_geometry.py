from __future__ import annotations

import numpy as np
import pytest

from perception.core.types import CameraIntrinsics
from perception.fusion import Extrinsics, FusionError
from perception.fusion.geometry import crop_to_image, in_boxes, paint, project, transform

# optical frame (x right, y down, z forward) in base_link (x forward, y left, z up)
BASE_R_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
INTR = CameraIntrinsics.from_fov(320, 192, 90.0)


def camera_pose(height: float = 1.5, pitch_deg: float = 0.0) -> np.ndarray:
    p = np.deg2rad(pitch_deg)
    c, s = np.cos(p), np.sin(p)
    T = np.eye(4)
    T[:3, :3] = BASE_R_OPTICAL @ np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])
    T[:3, 3] = [0.0, 0.0, height]
    return T


def lidar_pose(height: float = 1.9) -> np.ndarray:
    T = np.eye(4)
    T[2, 3] = height
    return T


def test_extrinsics_refuse_what_is_not_a_rigid_transform() -> None:
    with pytest.raises(FusionError, match="4x4"):
        Extrinsics(np.eye(3), camera_pose())
    with pytest.raises(FusionError, match="rigid"):
        Extrinsics(np.diag([2.0, 1.0, 1.0, 1.0]), camera_pose())
    with pytest.raises(FusionError, match="rigid"):
        Extrinsics(lidar_pose(), np.diag([1.0, -1.0, 1.0, 1.0]))  # a reflection


def test_camera_height_pitch_and_lidar_to_camera() -> None:
    ext = Extrinsics(lidar_pose(1.9), camera_pose(1.4, 6.0))
    assert ext.camera_height == pytest.approx(1.4)
    assert ext.camera_pitch_deg == pytest.approx(6.0)
    # a point 10 m ahead at the LiDAR's height is 0.5 m above the camera: negative optical y; pitched down
    # by 6 deg, its depth along the optical axis is 10 cos 6 - 0.5 sin 6
    p = transform(np.array([[10.0, 0.0, 0.0]], np.float32), ext.cam_T_lidar)[0]
    flat = Extrinsics(lidar_pose(1.9), camera_pose(1.4))
    q = transform(np.array([[10.0, 0.0, 0.0]], np.float32), flat.cam_T_lidar)[0]
    assert q == pytest.approx([0.0, -0.5, 10.0], abs=1e-5)
    assert p[2] == pytest.approx(10.0 * np.cos(np.deg2rad(6)) - 0.5 * np.sin(np.deg2rad(6)), abs=1e-4)


def test_project_crop_and_frustums() -> None:
    pts = np.array([[0.0, 0.0, 10.0], [1.0, -0.5, 4.0], [0.0, 0.0, -3.0], [50.0, 0.0, 5.0], [0.0, 0.0, 0.5]],
                   np.float32)  # fmt: skip
    uv = project(pts[:2], INTR)
    assert uv[0] == pytest.approx([INTR.cx, INTR.cy])
    assert uv[1] == pytest.approx([INTR.cx + INTR.fx * 0.25, INTR.cy - INTR.fy * 0.125])
    idx, uv_in = crop_to_image(pts, INTR, min_depth=1.0, max_range=80.0)
    assert idx.tolist() == [0, 1]  # behind, outside the image, nearer than min_depth: dropped
    inside = in_boxes(uv_in, np.array([[150, 86, 170, 106], [0, 0, 10, 10]], np.float32))
    assert inside.tolist() == [[True, False], [False, False]]


def test_paint_reads_a_mask_of_another_resolution() -> None:
    mask = np.zeros((96, 160), np.uint8)
    mask[:, 80:] = 9  # right half: car
    uv = np.array([[10.0, 50.0], [300.0, 50.0], [161.0, 190.0]], np.float32)  # pixels of the 320x192 image
    assert paint(uv, mask, INTR).tolist() == [0, 9, 9]
    mask[60, :] = 11
    rows = paint(np.array([[300.0, 122.5]], np.float32), mask, INTR, (-1, 0, 1))  # mask row 61
    assert rows.tolist() == [[11, 9, 9]]
    with pytest.raises(FusionError, match="H, W"):
        paint(uv, np.zeros((4, 4, 3), np.uint8), INTR)
