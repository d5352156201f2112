from __future__ import annotations

import numpy as np
import pytest

from perception.core.classes import NUM_SEMANTIC, semantic_id
from perception.core.types import Frame
from perception.sim.config import SimConfig
from perception.sim.drive import render_frame
from perception.sim.lidar import lidar_dirs

CFG = SimConfig(width=320, height=192, lidar=True, lidar_beams=16, lidar_az_step_deg=0.4)


@pytest.fixture(scope="module")
def frame() -> Frame:
    return render_frame(0, 12, CFG)


def test_beam_pattern() -> None:
    d = lidar_dirs(32, (-15.0, 15.0), 0.2)
    assert d.shape == (32 * 1800, 3)
    assert np.allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-6)
    el = np.rad2deg(np.arcsin(d[:, 2]))
    assert el.min() == pytest.approx(-15.0, abs=1e-4) and el.max() == pytest.approx(15.0, abs=1e-4)


def test_points_carry_labels_and_intensities(frame: Frame) -> None:
    pts, labels = frame.lidar, frame.lidar_labels
    assert pts is not None and labels is not None and frame.world_T_lidar is not None
    assert pts.dtype == np.float32 and pts.shape[1] == 4 and len(pts) > 0.3 * 16 * 900
    assert labels.dtype == np.uint8 and labels.shape == (len(pts),)
    assert labels.max() < NUM_SEMANTIC and not (labels == semantic_id("sky")).any()
    r = np.linalg.norm(pts[:, :3], axis=1)
    assert r.max() <= CFG.lidar_range_m + 1e-3
    assert np.all((pts[:, 3] >= 0) & (pts[:, 3] <= 1))
    present = set(np.unique(labels).tolist())
    assert {semantic_id("road"), semantic_id("building")} <= present
    assert present & {semantic_id("car"), semantic_id("truck")}
    # the sensor sits cfg.lidar_height above the road: ground points lie at z ~ -height
    road = labels == semantic_id("road")
    assert np.median(pts[road, 2]) == pytest.approx(-CFG.lidar_height, abs=0.1)


def test_points_lie_on_the_rendered_surfaces(frame: Frame) -> None:
    """Project the points into the camera: where the camera sees the same surface, the depth agrees."""
    assert frame.lidar is not None and frame.world_T_lidar is not None and frame.world_T_cam is not None
    assert frame.depth is not None and frame.semantic is not None and frame.lidar_labels is not None
    T = np.linalg.inv(frame.world_T_cam) @ frame.world_T_lidar
    p = frame.lidar[:, :3] @ T[:3, :3].T + T[:3, 3]
    intr = frame.intrinsics
    front = p[:, 2] > 1.0
    u = intr.fx * p[front, 0] / p[front, 2] + intr.cx
    v = intr.fy * p[front, 1] / p[front, 2] + intr.cy
    inside = (u >= 0) & (u < intr.width) & (v >= 0) & (v < intr.height)
    z = p[front][inside, 2]
    cam_depth = frame.depth[v[inside].astype(int), u[inside].astype(int)]
    label_ok = frame.semantic[v[inside].astype(int), u[inside].astype(int)] == frame.lidar_labels[front][inside]
    assert inside.sum() > 1000
    close = np.abs(cam_depth - z) < 0.03 * z + 0.05
    # parallax (LiDAR 0.4 m above the camera) hides a few points from the camera; most agree
    assert close.mean() > 0.85
    assert label_ok[close].mean() > 0.95
