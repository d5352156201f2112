"""The tracker on the synthetic world's ground truth: noisy detections played from it with a fixed seed."""

from __future__ import annotations

import numpy as np
import pytest

from perception.eval.track_cli import TRACKED, crowd_timing, drive_ground_truth, evaluate_drive, run_tracker
from perception.eval.track_groundtruth import DetectionNoise, GroundTruthFrame
from perception.eval.tracking import TrackFrame
from perception.sim.config import SimConfig
from perception.sim.drive import render_frame

SEED, FRAMES = 7, 100
DROP = (40, 42)  # three frames without any detection of the chosen cars


@pytest.fixture(scope="module")
def drive() -> list[GroundTruthFrame]:
    return drive_ground_truth(SEED, FRAMES, analytic=True)


def _partner(g: GroundTruthFrame, p: TrackFrame, gid: int) -> int | None:
    """The predicted id within 2 m of ground-truth object ``gid`` (the nearest), if any."""
    k = np.flatnonzero(g.ids == gid)
    if not len(k) or not len(p):
        return None
    d = np.linalg.norm(p.positions - g.centers[k[0], :2], axis=1)
    return int(p.ids[d.argmin()]) if d.min() < 2.0 else None


def test_rendered_ground_truth_agrees_with_the_world_state() -> None:
    """boxes3d (optical frame) + world_T_cam -> odom reproduces the agents' poses: centres and headings."""
    cfg = SimConfig(width=128, height=80)
    visible = render_frame(SEED, 30, cfg).gt.track_ids
    rendered = drive_ground_truth(SEED, 1, start=30, width=cfg.width, height=cfg.height)
    analytic = drive_ground_truth(SEED, 1, start=30, analytic=True, width=cfg.width, height=cfg.height)
    checked = 0
    for r, a in zip(rendered, analytic, strict=True):
        np.testing.assert_allclose(r.odom_T_base, a.odom_T_base)
        assert set(r.ids) == set(a.ids)  # the hidden ones are there too, as ignore
        assert all(r.ignore[k] for k, tid in enumerate(r.ids) if tid not in visible)
        for k, tid in enumerate(r.ids[: len(visible)]):
            j = np.flatnonzero(a.ids == tid)
            assert len(j), f"rendered object {tid} is not in the camera's view in the world state"
            np.testing.assert_allclose(r.centers[k], a.centers[j[0]], atol=0.02)
            np.testing.assert_allclose(r.sizes[k], a.sizes[j[0]], atol=1e-3)
            assert abs(np.angle(np.exp(1j * (r.yaws[k] - a.yaws[j[0]])))) < 1e-3
            assert r.classes[k] == a.classes[j[0]]
            checked += 1
    assert checked >= 5


def test_ground_truth_velocities_follow_the_motion(drive: list[GroundTruthFrame]) -> None:
    v = np.concatenate([f.velocities for f in drive if f.velocities is not None])
    speed = np.linalg.norm(v[np.isfinite(v[:, 0])], axis=1)
    assert (speed < 0.05).mean() > 0.2  # parked cars, signs, standing people
    assert speed.max() < 25.0 and (speed > 3.0).mean() > 0.05  # moving traffic, nothing teleports


def test_tracker_on_a_drive_idf1_velocity_and_ids_through_a_dropout(drive: list[GroundTruthFrame]) -> None:
    # cars in view and near (< 40 m) around the dropout get no detection in frames DROP[0]..DROP[1]
    def near(f: GroundTruthFrame) -> set[int]:
        d = np.linalg.norm(f.centers[:, :2] - f.odom_T_base[:2, 3], axis=1)
        return {int(i) for i, c, ign, dd in zip(f.ids, f.classes, f.ignore, d, strict=True)
                if c == 0 and not ign and dd < 40.0}  # fmt: skip

    cars = set.intersection(*(near(drive[n]) for n in range(DROP[0] - 12, DROP[1] + 4)))
    assert len(cars) >= 2
    noise = DetectionNoise(dropouts={c: DROP for c in cars})
    preds, ms, ndet = run_tracker(drive, noise, seed=SEED)
    m = evaluate_drive(drive, preds, TRACKED)
    car = evaluate_drive(drive, preds, [0])
    assert m.idf1 >= 0.8, m.summary()
    assert m.mota >= 0.7, m.summary()
    assert car.velocity_count > 200 and car.velocity_error <= 0.5, car.summary()
    for c in cars:
        before = _partner(drive[DROP[0] - 1], preds[DROP[0] - 1], c)
        after = [_partner(drive[n], preds[n], c) for n in range(DROP[1] + 1, DROP[1] + 4)]
        assert before is not None and after[-1] == before, (c, before, after)
    assert ndet.mean() > 10 and np.median(ms) < 50.0  # CPU ms per update; a few ms on a quiet machine


def test_crowd_timing_runs() -> None:
    ms = crowd_timing(30, frames=20)
    assert len(ms) == 20 and np.isfinite(ms).all()
