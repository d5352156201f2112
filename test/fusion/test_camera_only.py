from __future__ import annotations

import numpy as np
import pytest

from perception.core.classes import detection_id
from perception.core.types import CameraIntrinsics
from perception.fusion import Extrinsics
from perception.fusion.camera_only import camera_object
from perception.fusion.config import default_classes
from perception.fusion.geometry import project, transform

from .test_geometry import camera_pose, lidar_pose

INTR = CameraIntrinsics.from_fov(640, 384, 90.0)
EXT = Extrinsics(lidar_pose(), camera_pose(1.5))
CAR = default_classes()[detection_id("car")]
PED = default_classes()[detection_id("pedestrian")]


def _box_of(center: np.ndarray, size: tuple[float, float, float]) -> np.ndarray:
    """The image box of an upright yaw-0 box standing on the ground (base_link centre at mid-height)."""
    ln, w, h = size
    corners = np.array([[sx * ln / 2, sy * w / 2, sz * h / 2] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    cam = transform((corners + center).astype(np.float32), np.linalg.inv(EXT.base_T_cam))
    uv = project(cam, INTR)
    return np.array([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()])


@pytest.mark.parametrize("rng", [8.0, 15.0, 30.0])
def test_flat_ground_range_of_a_car_ahead(rng: float) -> None:
    c = np.array([rng, 1.0, 0.75])
    obj = camera_object(_box_of(c, (4.4, 1.8, 1.5)), CAR, INTR, EXT)
    assert obj is not None and obj.on_ground
    # the box's bottom-centre pixel is not exactly under the centre of an offset car: 0.35 m of slack
    assert np.hypot(*(obj.center[:2] - c[:2])) < 0.03 * rng + 0.35
    assert obj.center[2] == pytest.approx(0.75)


def test_covariance_grows_with_range_squared() -> None:
    sig = []
    for rng in (20.0, 40.0):
        obj = camera_object(_box_of(np.array([rng, 0.0, 0.85]), (0.6, 0.6, 1.7)), PED, INTR, EXT, pixel_sigma=2.0)
        assert obj is not None and obj.on_ground
        sig.append(obj.covariance[0, 0])  # along the line of sight (x)
        # Z^2 s / (f H) plus the class's unknown depth, in quadrature
        want = (rng**2 * 2.0 / (INTR.fx * 1.5)) ** 2
        assert obj.covariance[0, 0] == pytest.approx(want, rel=0.1)
        assert obj.covariance[1, 1] < obj.covariance[0, 0]
    assert sig[1] / sig[0] > 10.0  # variance ~ range^4


def test_a_pedestrian_hidden_below_the_shoulders_is_ranged_from_its_width() -> None:
    c = np.array([20.0, -2.0, 0.85])
    box = _box_of(c, (0.6, 0.6, 1.7))
    box[3] = box[1] + 0.25 * (box[3] - box[1])  # a parked car hides all but the head and shoulders
    obj = camera_object(box, PED, INTR, EXT)
    assert obj is not None and not obj.on_ground
    assert np.hypot(*(obj.center[:2] - c[:2])) < 0.15 * 20.0


def test_no_range_for_a_degenerate_box_above_the_horizon() -> None:
    assert camera_object(np.array([300.0, 100.0, 330.0, 101.0]), CAR, INTR, EXT) is None
