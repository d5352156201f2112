"""Fusion on synthetic frames: ground-truth 2D boxes as detections, the rendered LiDAR and masks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from perception.bench.fusion import SimCase, match_errors, sim_case
from perception.core.boxes import CoreError
from perception.core.boxes3d import Boxes3D
from perception.core.types import Detections
from perception.eval.track_cli import frame_ground_truth
from perception.fusion import FusionConfig, FusionError, fuse
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
        # every car / truck / pedestrian / cyclist gets an object (LiDAR-only ones, -1, come last)
        assert np.array_equal(objs.detection_index[: len(c.detections)], np.arange(len(c.detections)))
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
    assert objs.centers.shape == (n, 3) and objs.position_covs.shape == (n, 3, 3) and objs.sizes.shape == (n, 3)
    assert set(objs.sources.tolist()) <= {"lidar", "camera"}
    d = objs.detection_index >= 0
    assert np.array_equal(objs.class_ids[d], c.detections.class_ids[objs.detection_index[d]])
    assert np.all(np.linalg.eigvalsh(objs.position_covs) > 0)
    assert set(timings) == {"crop", "ground", "cluster", "associate", "boxes", "camera", "lidar_only", "total"}
    assert f.lidar is not None
    with_nan = np.concatenate([f.lidar, np.full((100, 4), np.nan, np.float32)])  # invalid returns of a real driver
    again, _ = fuse(with_nan, c.detections, f.intrinsics, c.ext, f.semantic)
    assert np.allclose(again.centers, objs.centers) and np.array_equal(again.sources, objs.sources)
    off = FusionConfig(lidar_only=False)
    assert len(fuse(f.lidar, Detections(), f.intrinsics, c.ext, cfg=off)[0]) == 0
    empty, _ = fuse(f.lidar, Detections(), f.intrinsics, c.ext)  # no detection: LiDAR-only objects alone
    assert (empty.detection_index == -1).all() and set(empty.sources.tolist()) <= {"lidar"}
    assert len(fuse(None, Detections(), f.intrinsics, c.ext)[0]) == 0
    signs = Detections(np.array([[10, 10, 30, 40]], np.float32), np.ones(1, np.float32), np.array([4]))
    assert len(fuse(f.lidar, signs, f.intrinsics, c.ext, cfg=off)[0]) == 0  # traffic signs are not fused
    with pytest.raises(FusionError, match="points"):
        fuse(np.zeros((5, 2), np.float32), c.detections, f.intrinsics, c.ext)
    with pytest.raises(CoreError, match="centers"):
        Boxes3D(class_ids=np.zeros(2, np.int64), centers=np.zeros((0, 3)), sizes=np.zeros((0, 3)), yaws=np.zeros(0))
    with pytest.raises(FusionError, match="ground_method"):
        FusionConfig(ground_method="grid")


@pytest.mark.parametrize("mask", [True, False])
def test_lidar_only_objects_recover_missed_detections(cases: list[SimCase], mask: bool) -> None:
    """Objects the 2D detector missed come back from the clusters no detection claimed (painted class,
    or without a mask the shape), at a low score; switched off, they do not."""
    found, missed, real, extra = 0, 0, 0, 0
    for (seed, index), c in zip(FRAMES, cases, strict=True):
        f = c.frame
        near = np.linalg.norm(c.centers[:, :2], axis=1) < NEAR
        drop = near & (np.arange(len(c.detections)) % 2 == 0) & np.isin(c.detections.class_ids, [0, 2])
        kept = Detections(c.detections.boxes[~drop], c.detections.scores[~drop], c.detections.class_ids[~drop])
        sem = f.semantic if mask else None
        off, _ = fuse(f.lidar, kept, f.intrinsics, c.ext, sem, FusionConfig(lidar_only=False))
        assert (off.detection_index >= 0).all()
        objs, _ = fuse(f.lidar, kept, f.intrinsics, c.ext, sem)
        lo = objs.detection_index < 0
        assert np.array_equal(objs.detection_index[~lo], off.detection_index)  # detected objects keep their rows
        assert (objs.scores[lo] <= FusionConfig().lidar_only_score + 1e-6).all() and (objs.sources[lo] == "lidar").all()
        for k in np.flatnonzero(drop):
            d = np.linalg.norm(objs.centers[lo, :2] - c.centers[k, :2], axis=1)
            hit = len(d) > 0 and d.min() < 1.0 and objs.class_ids[lo][np.argmin(d)] == c.detections.class_ids[k]
            found += int(hit)
            missed += int(not hit)
        g = frame_ground_truth(get_world(seed, CFG), index, f, 80.0)  # also objects the camera cannot see
        base_T_odom = np.linalg.inv(g.odom_T_base)
        every = g.centers @ base_T_odom[:3, :3].T + base_T_odom[:3, 3]
        for xy in objs.centers[lo, :2]:
            real += int(np.linalg.norm(every[:, :2] - xy, axis=1).min() < 2.5)
        extra += int(lo.sum())
    assert found + missed >= 4
    assert found >= (0.6 if mask else 0.4) * (found + missed), (found, missed)
    assert real >= (0.6 if mask else 0.5) * extra, (real, extra)  # mostly real objects (any class), not clutter
