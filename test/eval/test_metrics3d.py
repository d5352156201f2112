"""nuScenes-style centre-distance AP and true-positive errors on hand-made frames with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from perception.core.boxes3d import Boxes3D
from perception.eval.metrics3d import (
    Metrics3DError,
    aligned_iou,
    average_precision,
    detection_metrics,
    match_class,
    yaw_difference,
)

CAR, PED = 0, 2
SIZE = (4.0, 2.0, 1.5)


def boxes(xy: list[tuple[float, float]], cls: int = CAR, scores: list[float] | None = None,
          ignore: list[bool] | None = None, size: tuple[float, float, float] = SIZE,
          yaw: float = 0.0) -> Boxes3D:  # fmt: skip
    n = len(xy)
    c = np.column_stack([np.array(xy, float).reshape(n, 2), np.full(n, 0.75)])
    return Boxes3D(class_ids=np.full(n, cls), centers=c, sizes=np.tile(size, (n, 1)), yaws=np.full(n, yaw),
                   scores=np.ones(n) if scores is None else np.array(scores),
                   ignore=np.zeros(n, bool) if ignore is None else np.array(ignore))  # fmt: skip


def test_perfect_predictions_score_one_and_no_errors() -> None:
    gt = [boxes([(10, 0), (20, 3)]), boxes([(30, -2)])]
    m = detection_metrics(gt, [boxes([(10, 0), (20, 3)], scores=[0.9, 0.8]), boxes([(30, -2)], scores=[0.7])],
                          {CAR: "car"})  # fmt: skip
    row = m["per_class"]["car"]
    assert row["AP"] == pytest.approx(1.0) and m["mAP"] == pytest.approx(1.0)
    assert row["tp"] == 3 and row["fp"] == 0 and row["ATE"] == 0 and row["ASE"] == pytest.approx(0.0)


def test_thresholds_are_centre_distances() -> None:
    gt = [boxes([(10, 0)])]
    pred = [boxes([(11.5, 0)], scores=[0.9])]  # 1.5 m off
    row = detection_metrics(gt, pred, {CAR: "car"})["per_class"]["car"]
    assert (row["AP@0.5m"], row["AP@1m"], row["AP@2m"], row["AP@4m"]) == pytest.approx((0.0, 0.0, 1.0, 1.0))
    assert row["AP"] == pytest.approx(0.5) and row["ATE"] == pytest.approx(1.5)
    # the height does not count: bird's-eye-view distance
    high = boxes([(10, 0)], scores=[0.9])
    high = Boxes3D(class_ids=high.class_ids, centers=high.centers + np.array([0, 0, 3.0]), sizes=high.sizes,
                   yaws=high.yaws, scores=high.scores)  # fmt: skip
    assert match_class(gt, [high], CAR, 0.5).ap == pytest.approx(1.0)


def test_half_recall_and_a_false_positive_ranked_first() -> None:
    # one of two cars found: precision 1 up to recall 0.5, 0 beyond -> 40 of the 90 recall points at 0.9
    assert match_class([boxes([(10, 0), (30, 0)])], [boxes([(10, 0)], scores=[0.9])], CAR, 2.0).ap == \
        pytest.approx(40 / 90)
    # a false positive above the true one: precision rises 0 -> 0.5 linearly in recall: AP = 0.2
    r = match_class([boxes([(10, 0)])], [boxes([(50, 0), (10, 0)], scores=[0.9, 0.5])], CAR, 2.0)
    assert (r.tp, r.fp) == (1, 1) and r.ap == pytest.approx(0.2)
    # the true one scoring higher: precision 1 up to recall 1, where the false positive halves it (as
    # nuScenes' np.interp does at the last recall point): (89 * 0.9 + 0.4) / 90 / 0.9
    r = match_class([boxes([(10, 0)])], [boxes([(50, 0), (10, 0)], scores=[0.4, 0.5])], CAR, 2.0)
    assert r.ap == pytest.approx((89 * 0.9 + 0.4) / 81)
    assert average_precision(np.zeros(0, bool), np.zeros(0), 3) == 0.0
    assert np.isnan(average_precision(np.ones(1, bool), np.ones(1), 0))


def test_greedy_by_score_and_one_match_per_ground_truth() -> None:
    gt = [boxes([(10, 0)])]
    pred = [boxes([(11.0, 0), (10.2, 0)], scores=[0.9, 0.8])]  # the higher score takes it, though farther
    r = match_class(gt, pred, CAR, 2.0)
    assert (r.tp, r.fp) == (1, 1) and r.ate == pytest.approx(1.0)


def test_classes_and_frames_do_not_mix() -> None:
    gt = [boxes([(10, 0)]), boxes([(10, 0)], cls=PED, size=(0.6, 0.6, 1.7))]
    pred = [boxes([(10, 0)], cls=PED, scores=[0.9]), boxes([(10, 0)], scores=[0.9])]  # swapped frames
    m = detection_metrics(gt, pred, {CAR: "car", PED: "pedestrian"})
    assert m["per_class"]["car"]["AP"] == 0.0 and m["per_class"]["pedestrian"]["AP"] == 0.0
    with pytest.raises(Metrics3DError, match="frames"):
        match_class(gt, pred[:1], CAR, 2.0)


def test_ignored_ground_truth_is_a_dont_care() -> None:
    gt = [boxes([(10, 0), (25, 5)], ignore=[False, True])]
    pred = [boxes([(25, 5), (10, 0)], scores=[0.9, 0.5])]  # the top-scoring one sits on the ignored box
    r = match_class(gt, pred, CAR, 2.0)
    assert (r.num_gt, r.tp, r.fp) == (1, 1, 0) and r.ap == pytest.approx(1.0)
    # nothing found: the ignored box is no miss either way
    assert match_class(gt, [boxes([])], CAR, 2.0).num_gt == 1


def test_size_and_orientation_errors() -> None:
    gt = [boxes([(10, 0)])]
    half = [boxes([(10, 0)], scores=[1.0], size=(2.0, 2.0, 1.5), yaw=np.deg2rad(30))]
    r = match_class(gt, half, CAR, 2.0)
    assert r.ase == pytest.approx(0.5) and r.aoe == pytest.approx(np.deg2rad(30))
    flipped = [boxes([(10, 0)], scores=[1.0], yaw=np.pi)]
    assert match_class(gt, flipped, CAR, 2.0).aoe == pytest.approx(np.pi)
    assert match_class(gt, flipped, CAR, 2.0, yaw_period=np.pi).aoe == pytest.approx(0.0)
    assert aligned_iou(np.array([[1.0, 1, 1]]), np.array([[2.0, 1, 1]]))[0] == pytest.approx(0.5)
    assert yaw_difference(0.1, 2 * np.pi - 0.1) == pytest.approx(0.2)
