"""Fusion on synthetic frames: ground-truth 2D boxes as detections, the rendered LiDAR and masks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from perception.bench.fusion import SimCase, match_errors, sim_case
from perception.core.types import Detections
from perception.fusion import FusionConfig, FusionError, Objects3D, fuse
from perception.sim.config import SimConfig
from perception.sim.drive import get_world

CFG = SimConfig(width=320, height=192, lidar=True)  # 32 beams x 0.2 deg: ~55k points a scan
FRAMES = ((0, 5), (0, 12), (0, 45), (1, 10))  # (0, 12): a car roof painted as the pedestrian behind it
NEAR = 30.0


@pytest.fixture(scope="module")
def cases() -> list[SimCase]:
    return [sim_case(get_world(seed, CFG), i) for seed, i in FRAMES]


def _errors(cases: list[SimCase], mask: bool, points: bool = True) -> list[dict[str, Any]]:
    out = []
    for c in cases:
        f = c.frame
        objs, _ = fuse(f.lidar if points else None, c.detections, f.intrinsics, c.ext, f.semantic if mask else None)
        assert len(objs) == len(c.detections)  # every car / truck / pedestrian / cyclist gets an object
        out += match_errors(objs, c)
    return out


@pytest.mark.parametrize("mask", [True, False])
def test_lidar_centres_of_cars_and_pedestrians_within_30m(cases: list[SimCase], mask: bool) -> None:
    errs = _errors(cases, mask)
    for cls, tol in ((0, 0.5), (2, 0.3)):  # car, pedestrian: BEV centre error, metres
        near = [e for e in errs if e["class_id"] == cls and e["range"] < NEAR]
        assert len(near) >= 3
        lidar = [e for e in near if e["source"] == "lidar"]
        assert len(lidar) >= 0.9 * len(near), f"class {cls}: {len(lidar)} of {len(near)} from LiDAR"
        ce = np.array([e["center_error"] for e in lidar])
        assert np.median(ce) < tol / 2, ce
        if mask:  # without a mask a nearer object's part can answer an occluded pedestrian (tested below)
            assert ce.max() < tol * 2, ce
    vehicles = [
        e["yaw_error"] for e in errs if e["class_id"] in (0, 1) and e["source"] == "lidar" and e["range"] < NEAR
    ]
    assert np.median(vehicles) < 2.0 and max(vehicles) < 10.0, vehicles


def test_camera_only_range_error_grows_with_range(cases: list[SimCase]) -> None:
    errs = _errors(cases, mask=False, points=False)
    assert {e["source"] for e in errs} == {"camera"}
    rel = {band: [abs(e["range_error"]) / e["range"] for e in errs if band[0] <= e["range"] < band[1]]
           for band in ((0.0, 20.0), (20.0, 80.0))}  # fmt: skip
    assert np.median(rel[(0.0, 20.0)]) < 0.1
    assert np.median(rel[(20.0, 80.0)]) < 0.25


def test_output_layout_and_empty_inputs(cases: list[SimCase]) -> None:
    c = cases[0]
    f = c.frame
    objs, timings = fuse(f.lidar, c.detections, f.intrinsics, c.ext, f.semantic)
    n = len(objs)
    assert objs.centers.shape == (n, 3) and objs.covariances.shape == (n, 3, 3) and objs.sizes.shape == (n, 3)
    assert set(objs.sources.tolist()) <= {"lidar", "camera"}
    assert np.array_equal(objs.class_ids, c.detections.class_ids[objs.detection_index])
    assert np.all(np.linalg.eigvalsh(objs.covariances) > 0)
    assert set(timings) == {"crop", "ground", "cluster", "associate", "boxes", "camera", "total"}
    assert f.lidar is not None
    with_nan = np.concatenate([f.lidar, np.full((100, 4), np.nan, np.float32)])  # invalid returns of a real driver
    again, _ = fuse(with_nan, c.detections, f.intrinsics, c.ext, f.semantic)
    assert np.allclose(again.centers, objs.centers) and np.array_equal(again.sources, objs.sources)
    empty, _ = fuse(f.lidar, Detections(), f.intrinsics, c.ext)
    assert len(empty) == 0
    signs = Detections(np.array([[10, 10, 30, 40]], np.float32), np.ones(1, np.float32), np.array([4]))
    assert len(fuse(f.lidar, signs, f.intrinsics, c.ext)[0]) == 0  # traffic signs are not fused
    with pytest.raises(FusionError, match="points"):
        fuse(np.zeros((5, 2), np.float32), c.detections, f.intrinsics, c.ext)
    with pytest.raises(FusionError, match="disagree"):
        Objects3D(class_ids=np.zeros(2, np.int64))
    with pytest.raises(FusionError, match="ground_method"):
        FusionConfig(ground_method="grid")
