"""The tracker on hand-made scenes: ego-motion compensation, velocities, coasting, two-stage association,
confirmation, class gating, input checks, UUIDs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from perception.core.boxes import CoreError
from perception.core.boxes3d import Boxes3D
from perception.eval.track_groundtruth import world_yaw_from_camera
from perception.tracking import (
    MultiObjectTracker,
    TrackedObject,
    TrackerConfig,
    TrackingError,
    track_uuid,
)

CAR, PED = 0, 2
DT = 0.1


def pose(x: float, y: float, yaw: float) -> np.ndarray:
    T = np.eye(4)
    c, s = np.cos(yaw), np.sin(yaw)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:2, 3] = x, y
    return T


def dets_in_base(odom_T_base: np.ndarray, classes: list[int], centers_odom: np.ndarray, yaws_odom: list[float],
                 scores: list[float], rng: np.random.Generator, sd: float = 0.15) -> Boxes3D:  # fmt: skip
    """Detections of objects given in odom, expressed in base_link with position noise ``sd``."""
    base_T_odom = np.linalg.inv(odom_T_base)
    c = np.asarray(centers_odom, float).reshape(-1, 3) @ base_T_odom[:3, :3].T + base_T_odom[:3, 3]
    c[:, :2] += rng.normal(0, sd, (len(c), 2))
    ego_yaw = np.arctan2(odom_T_base[1, 0], odom_T_base[0, 0])
    sizes = [[4.5, 1.9, 1.5] if k == CAR else [0.6, 0.6, 1.8] for k in classes]
    return Boxes3D(class_ids=classes, centers=c, sizes=sizes, yaws=np.asarray(yaws_odom) - ego_yaw, scores=scores,
                   position_covs=sd**2)  # fmt: skip


def by_id(objs: list[TrackedObject]) -> dict[int, TrackedObject]:
    return {o.track_id: o for o in objs}


def turning_ego(k: int) -> np.ndarray:
    """The ego drives at 10 m/s on a left curve of radius 50 m."""
    a = 10.0 * k * DT / 50.0
    return pose(50.0 * np.sin(a), 50.0 * (1 - np.cos(a)), a)


def test_moving_car_seen_from_a_turning_ego_gets_its_velocity_and_keeps_its_id() -> None:
    rng = np.random.default_rng(0)
    trk = MultiObjectTracker(session="t")
    v = np.array([6.0, 2.0])
    ids, out, err = set(), [], []
    for k in range(40):
        p = np.array([20.0, -5.0, 0.75]) + np.r_[v * k * DT, 0.0]
        out = trk.update(k * DT, turning_ego(k), dets_in_base(turning_ego(k), [CAR], p[None], [np.arctan2(2, 6)],
                                                             [0.9], rng))  # fmt: skip
        ids |= {o.track_id for o in out}
        err += [np.linalg.norm(o.velocity[:2] - v) for o in out if k >= 20]
    assert ids == {1}
    (o,) = out
    assert o.frame_id == "odom" and not o.is_stationary
    assert np.mean(err) < 0.3 and max(err) < 0.6  # 0.15 m position noise at 10 Hz
    assert np.linalg.norm(o.position[:2] - (np.array([20.0, -5.0]) + v * 39 * DT)) < 0.3
    assert o.yaw == pytest.approx(np.arctan2(2, 6), abs=0.1)
    assert o.class_id == CAR and o.class_probability == 1.0 and o.existence_probability > 0.95
    body_v, _ = o.twist_in_body()
    assert body_v[0] == pytest.approx(np.hypot(6, 2), abs=0.3) and abs(body_v[1]) < 0.3
    assert np.all(np.linalg.eigvalsh(o.velocity_cov[:2, :2]) > 0) and o.pose_covariance().shape == (6, 6)


def test_ego_motion_is_compensated_parked_car_and_standing_person_are_stationary() -> None:
    rng = np.random.default_rng(1)
    trk = MultiObjectTracker()
    objs = np.array([[30.0, 8.0, 0.75], [25.0, -3.0, 0.9]])
    out = []
    for k in range(30):
        out = trk.update(k * DT, turning_ego(k), dets_in_base(turning_ego(k), [CAR, PED], objs, [0.3, 1.0],
                                                             [0.9, 0.8], rng))  # fmt: skip
    assert len(out) == 2
    for o in out:
        assert o.is_stationary and o.speed < 0.3


def _drive_with_gap(gap: range, config: TrackerConfig | None = None, low_in_gap: bool = False) -> list[set[int]]:
    """A car at 8 m/s; during ``gap`` it is not detected (or only with score 0.3)."""
    rng = np.random.default_rng(2)
    trk = MultiObjectTracker(config)
    seen = []
    for k in range(30):
        p = np.array([[10.0 + 8.0 * k * DT, 3.0, 0.75]])
        if k in gap and not low_in_gap:
            d = Boxes3D.empty()
        else:
            d = dets_in_base(np.eye(4), [CAR], p, [0.0], [0.3 if k in gap else 0.9], rng)
        seen.append({o.track_id for o in trk.update(k * DT, np.eye(4), d)})
    return seen


def test_ids_survive_a_three_frame_dropout_and_die_after_max_age() -> None:
    seen = _drive_with_gap(range(10, 13))
    assert all(s == {1} for s in seen[3:])  # confirmed at the 3rd hit, then output through the gap
    seen = _drive_with_gap(range(10, 25))  # 1.5 s > max_age 1 s: the old track dies, a new one is born
    assert seen[9] == {1} and seen[24] == set() and seen[29] == {2}


def test_low_score_detections_keep_a_track_updated_but_never_start_one() -> None:
    seen = _drive_with_gap(range(10, 25), low_in_gap=True)
    assert all(s == {1} for s in seen[3:])
    no_stage_two = TrackerConfig(high_score=0.5, low_score=0.5)  # low-score detections dropped up front
    seen = _drive_with_gap(range(10, 25), no_stage_two, low_in_gap=True)
    assert seen[24] == set()
    trk = MultiObjectTracker()
    rng = np.random.default_rng(3)
    for k in range(10):
        assert trk.update(k * DT, np.eye(4), dets_in_base(np.eye(4), [CAR], np.array([[10.0, 0, 0.75]]), [0.0], [0.4],
                                                          rng)) == []  # fmt: skip
    assert trk.tracks == []


def test_confirmation_after_n_hits_and_single_false_positives_never_show() -> None:
    trk = MultiObjectTracker()
    rng = np.random.default_rng(4)
    counts = []
    for k in range(5):
        p = np.array([[10.0, 0, 0.75], [30.0 + 10 * k, 10.0, 0.75]])  # the 2nd one jumps: a new FP each frame
        counts.append(len(trk.update(k * DT, np.eye(4), dets_in_base(np.eye(4), [CAR, CAR], p, [0, 0], [0.9, 0.9],
                                                                      rng))))  # fmt: skip
    assert counts == [0, 0, 1, 1, 1]


def test_pedestrian_detection_never_updates_a_car_track() -> None:
    trk = MultiObjectTracker()
    rng = np.random.default_rng(5)
    p = np.array([[10.0, 0, 0.75]])
    for k in range(5):
        trk.update(k * DT, np.eye(4), dets_in_base(np.eye(4), [CAR], p, [0.0], [0.9], rng))
    trk.update(0.5, np.eye(4), dets_in_base(np.eye(4), [PED], p, [0.0], [0.9], rng, sd=0.01))
    car = next(t for t in trk.tracks if t.track_id == 1)
    assert car.last_update == pytest.approx(0.4)
    assert {t.birth_class for t in trk.tracks} == {CAR, PED}


def test_crossing_pedestrians_keep_their_ids() -> None:
    trk = MultiObjectTracker()
    rng = np.random.default_rng(6)
    tracks: dict[int, list[float]] = {}
    for k in range(40):
        t = k * DT
        p = np.array([[10.0, -3.0 + 1.5 * t, 0.9], [10.0, 3.0 - 1.5 * t, 0.9]])  # meet at t = 2 s
        for o in trk.update(t, np.eye(4), dets_in_base(np.eye(4), [PED, PED], p, [1.57, -1.57], [0.9, 0.9], rng,
                                                       sd=0.1)):  # fmt: skip
            tracks.setdefault(o.track_id, []).append(float(o.velocity[1]))
    assert sorted(tracks) == [1, 2]
    assert all(np.sign(np.median(v[-5:])) == np.sign(np.median(v[:5])) for v in tracks.values())


def test_bad_input_is_refused_with_a_hint() -> None:
    trk = MultiObjectTracker()
    trk.update(1.0, np.eye(4), Boxes3D.empty())
    with pytest.raises(TrackingError, match="reset"):
        trk.update(0.5, np.eye(4), Boxes3D.empty())
    trk.reset()
    trk.update(0.5, None, Boxes3D.empty(frame_id="odom"))
    with pytest.raises(TrackingError, match="odom_T_base"):
        trk.update(0.6, None, Boxes3D.empty())
    with pytest.raises(CoreError, match="centers"):
        Boxes3D(class_ids=[0], scores=[0.5], centers=np.zeros((1, 2)), sizes=np.ones((1, 3)), yaws=[0.0],
                position_covs=0.1)  # fmt: skip
    with pytest.raises(CoreError, match="scores"):
        Boxes3D(class_ids=[0], scores=[1.5], centers=np.zeros((1, 3)), sizes=np.ones((1, 3)), yaws=[0.0],
                position_covs=0.1)  # fmt: skip
    with pytest.raises(TrackingError, match="positive position variances"):  # ground truth's default: exact
        trk.update(0.7, np.eye(4), Boxes3D(class_ids=[0], centers=np.zeros((1, 3)), sizes=np.ones((1, 3)), yaws=[0.0]))
    with pytest.raises(TrackingError, match="odom_T_base"):
        trk.update(0.7, np.full((4, 4), np.nan), Boxes3D.empty())
    with pytest.raises(TrackingError, match="low_score"):
        TrackerConfig(high_score=0.3, low_score=0.5)
    cfg = TrackerConfig.from_dict({"high_score": 0.6, "classes": {"car": {"max_age": 2.0}}})
    assert cfg.classes[CAR].max_age == 2.0 and cfg.classes[CAR].motion == "ctrv" and cfg.high_score == 0.6
    with pytest.raises(TrackingError, match="unknown"):
        TrackerConfig.from_dict({"classes": {"car": {"max_ages": 2.0}}})


def test_detections_create_from_variances_and_transform() -> None:
    d = Boxes3D(class_ids=[0, 2], scores=[0.9, 0.5], centers=[[1.0, 0, 0], [0, 2.0, 0]], sizes=np.ones((2, 3)),
                yaws=[0.0, 0.5], position_covs=[[0.04, 0.09, 0.01], [0.01, 0.01, 0.01]])  # fmt: skip
    assert d.position_covs[0, 1, 1] == pytest.approx(0.09) and list(d.detection_index) == [-1, -1]
    o = d.transformed(pose(10.0, 0.0, np.pi / 2), "odom")
    np.testing.assert_allclose(o.centers[:, :2], [[10.0, 1.0], [8.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(o.yaws, [np.pi / 2, 0.5 + np.pi / 2])
    assert o.position_covs[0, 0, 0] == pytest.approx(0.09) and o.frame_id == "odom"


def test_track_uuids_are_stable_and_distinct() -> None:
    a = track_uuid(1, "run-a")
    assert len(a) == 16 and a == track_uuid(1, "run-a")
    assert len({a, track_uuid(2, "run-a"), track_uuid(1, "run-b")}) == 3
    assert MultiObjectTracker().session != MultiObjectTracker().session


@pytest.mark.parametrize("pitch_deg", [0.0, 12.0, -5.0])
def test_world_yaw_from_kitti_rotation_y_under_camera_pitch(pitch_deg: float) -> None:
    base_r_optical = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    p = np.deg2rad(pitch_deg)
    pitch = np.array([[1.0, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])
    R = pose(0, 0, 0.7)[:3, :3] @ base_r_optical @ pitch  # world_R_cam
    yaws = np.array([0.0, 1.0, -2.5, 3.0])
    fwd = np.stack([np.cos(yaws), np.sin(yaws), np.zeros(4)], 1) @ R  # into the optical frame
    ry = np.arctan2(-fwd[:, 2], fwd[:, 0])  # as the sim writes rotation_y
    got = world_yaw_from_camera(ry, R)
    np.testing.assert_allclose(np.angle(np.exp(1j * (got - yaws))), 0.0, atol=1e-9)


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrackerConfig().high_score = 0.1  # type: ignore[misc]


def test_outputs_name_the_detection_and_2d_box_that_updated_them() -> None:
    """So a camera-only consumer can put the track id on the 2D detection (Detection2D.id)."""
    trk = MultiObjectTracker()
    out: list[TrackedObject] = []
    for k in range(4):
        # a traffic sign (not tracked) first, then a car from 2D box 7 and a pedestrian from 2D box 3
        d = Boxes3D(class_ids=[4, CAR, PED], scores=[0.9, 0.9, 0.9],
                    centers=[[5.0, 5, 2], [10.0 + k, 0, 0.75], [8.0, -4, 0.9]], sizes=np.ones((3, 3)),
                    yaws=[0.0, 0.0, 0.0], position_covs=0.01, detection_index=[0, 7, 3])  # fmt: skip
        if k == 3:
            d = d.select(np.array([0, 1]))  # the pedestrian is missed: it coasts
        out = trk.update(k * DT, np.eye(4), d)
    got = {o.class_id: (o.detection_index, o.index_2d, o.time_since_update > 0) for o in out}
    assert got == {CAR: (1, 7, False), PED: (-1, -1, True)}


def test_tracked_object_into_base_link() -> None:
    trk = MultiObjectTracker()
    rng = np.random.default_rng(7)
    out: list[TrackedObject] = []
    for k in range(20):
        out = trk.update(k * DT, np.eye(4), dets_in_base(np.eye(4), [CAR], np.array([[10.0 + 5 * k * DT, 0, 0.75]]),
                                                         [0.0], [0.9], rng, sd=0.05))  # fmt: skip
    (o,) = out
    odom_T_base = pose(20.0, 0.0, np.pi / 2)  # the ego 20 m ahead, facing +y
    b = o.transformed(np.linalg.inv(odom_T_base), "base_link")
    assert b.frame_id == "base_link"
    np.testing.assert_allclose(b.position[:2], [o.position[1], -(o.position[0] - 20.0)], atol=1e-9)
    np.testing.assert_allclose(b.velocity[:2], [o.velocity[1], -o.velocity[0]], atol=1e-9)
    assert b.yaw == pytest.approx(o.yaw - np.pi / 2) and b.speed == pytest.approx(o.speed)
    with pytest.raises(CoreError, match="detection_index"):
        Boxes3D(class_ids=[0, 0], scores=[0.9, 0.9], centers=np.zeros((2, 3)), sizes=np.ones((2, 3)), yaws=[0.0, 0.0],
                position_covs=0.1, detection_index=[1])  # fmt: skip
