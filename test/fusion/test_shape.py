from __future__ import annotations

import numpy as np
import pytest

from perception.bench.fusion import partial_l
from perception.fusion.shape import fit_cylinder, fit_l_shape, l_shape_heading, min_area_rect_heading, wrap_half_pi


def _err_deg(a: float, b_deg: float) -> float:
    """Heading error modulo 90 deg (rectangle axes), degrees."""
    d = (np.rad2deg(a) - b_deg + 45.0) % 90.0 - 45.0
    return abs(float(d))


@pytest.mark.parametrize("heading", [5.0, 34.0, 60.0, 85.0])
def test_l_shape_follows_a_partial_l(heading: float) -> None:
    xy = partial_l(heading, seed=int(heading))
    assert _err_deg(l_shape_heading(xy), heading) < 1.5


def test_l_shape_beats_the_minimum_area_rectangle_on_a_partial_l() -> None:
    """Issue 11: minAreaRect gives the wrong heading for a car seen as a partial L; the search does not."""
    xy = partial_l(34.0)
    assert _err_deg(l_shape_heading(xy), 34.0) < 1.0
    assert _err_deg(min_area_rect_heading(xy), 34.0) > 10.0


def test_vehicle_box_grows_to_the_prior_away_from_the_sensor() -> None:
    # the rear face of a car straight ahead (an I, 1.8 m wide at x = 20), sensor at the origin
    ys = np.linspace(-0.9, 0.9, 40)
    xy = np.column_stack([np.full(40, 20.0), ys]) + np.random.default_rng(0).normal(0, 0.01, (40, 2))
    box = fit_l_shape(xy, (4.4, 1.8), np.zeros(2))
    assert box.yaw == pytest.approx(0.0, abs=np.deg2rad(2))
    assert box.length == pytest.approx(4.4, abs=0.05) and box.width == pytest.approx(1.8, abs=0.05)
    assert box.x == pytest.approx(20.0 + 2.2, abs=0.05) and box.y == pytest.approx(0.0, abs=0.05)
    assert box.shift == pytest.approx(2.2, abs=0.05)
    # seen from the other side the box grows the other way
    back = fit_l_shape(xy, (4.4, 1.8), np.array([40.0, 0.0]))
    assert back.x == pytest.approx(20.0 - 2.2, abs=0.05)


def test_a_whole_side_sets_the_length_axis() -> None:
    xy = partial_l(90.0 - 20.0, size=(4.5, 1.8), side_share=1.0)
    box = fit_l_shape(xy, (4.4, 1.8), np.zeros(2))
    assert abs(float(wrap_half_pi(box.yaw - np.deg2rad(70.0)))) < np.deg2rad(1.5)
    assert box.length == pytest.approx(4.5, abs=0.1)


def test_cylinder_centre_from_its_near_half() -> None:
    centre, r = np.array([12.0, -3.0]), 0.3
    a = np.arctan2(-centre[1], -centre[0]) + np.linspace(-np.pi / 2, np.pi / 2, 30)  # the half facing the sensor
    xy = centre + r * np.column_stack([np.cos(a), np.sin(a)])
    box = fit_cylinder(xy, 0.6, 1.5, np.zeros(2))
    assert np.hypot(box.x - centre[0], box.y - centre[1]) < 0.05
    assert box.length == pytest.approx(0.6, abs=0.02)
