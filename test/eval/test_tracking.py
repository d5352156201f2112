"""MOTA / IDF1 / ID switches / velocity error on hand-made sequences whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from perception.eval.tracking import TrackFrame, amota, evaluate_tracking
from perception.tracking.types import TrackingError


def frame(objs: dict[int, float], vel: dict[int, tuple[float, float]] | None = None,
          ignore: set[int] = frozenset()) -> TrackFrame:  # type: ignore[assignment]  # fmt: skip
    """Objects on the x axis: {id: x}."""
    ids = np.array(sorted(objs), np.int64)
    pos = np.array([[objs[i], 0.0] for i in ids]).reshape(-1, 2)
    v = None if vel is None else np.array([vel.get(int(i), (np.nan, np.nan)) for i in ids]).reshape(-1, 2)
    return TrackFrame(ids, pos, v, None, np.array([int(i) in ignore for i in ids], bool))


def test_perfect_tracking_scores_one() -> None:
    gt = [frame({1: 0.0 + t, 2: 20.0}) for t in range(10)]
    pred = [frame({7: 0.1 + t, 9: 20.2}) for t in range(10)]
    m = evaluate_tracking(gt, pred)
    assert (m.mota, m.idf1, m.id_switches, m.fp, m.fn, m.tp) == (1.0, 1.0, 0, 0, 0, 20)
    assert m.motp == pytest.approx(0.15)


def test_one_id_switch_halves_idf1() -> None:
    gt = [frame({1: 0.0}) for _ in range(10)]
    pred = [frame({7 if t < 5 else 8: 0.0}) for t in range(10)]
    m = evaluate_tracking(gt, pred)
    assert m.id_switches == 1
    assert m.mota == pytest.approx(0.9)  # 1 - (0 FN + 0 FP + 1 IDSW) / 10
    assert (m.idtp, m.idf1, m.idp, m.idr) == (5, 0.5, 0.5, 0.5)


def test_misses_and_false_positives() -> None:
    gt = [frame({1: 0.0}) for _ in range(10)]
    pred = [frame({} if t in (3, 4) else {5: 0.5}) for t in range(10)]
    pred[0] = frame({5: 0.5, 6: 30.0})  # a false positive far from everything
    m = evaluate_tracking(gt, pred)
    assert (m.fn, m.fp, m.id_switches, m.tp) == (2, 1, 0, 8)
    assert m.mota == pytest.approx(0.7)
    assert m.idf1 == pytest.approx(2 * 8 / (10 + 9))


def test_a_gap_then_a_new_partner_is_a_switch() -> None:
    gt = [frame({1: 0.0}) for _ in range(6)]
    pred = [frame({3: 0.0}), frame({3: 0.0}), frame({}), frame({}), frame({4: 0.0}), frame({4: 0.0})]
    m = evaluate_tracking(gt, pred)
    assert (m.id_switches, m.fn, m.fp) == (1, 2, 0)


def test_correspondence_is_kept_while_within_threshold() -> None:
    # frame 1: pred 1 is nearer to the new object B but still within 2 m of A, its partner so far
    gt = [frame({1: 0.0}), frame({1: 0.0, 2: 1.0}), frame({1: 0.0})]
    pred = [frame({1: 0.0}), frame({1: 0.9}), frame({1: 0.0})]
    m = evaluate_tracking(gt, pred)
    assert (m.tp, m.fn, m.id_switches) == (3, 1, 0)
    assert m.motp == pytest.approx(0.9 / 3)  # matched to A (0.9 m), not to B (0.1 m)


def test_idf1_uses_the_global_assignment_not_a_greedy_one() -> None:
    # a at x=0 and b at x=10 for 9 frames; pred 1 follows a for 5 frames then jumps to b for 4;
    # pred 2 follows a in the last 4. Agreements: (a,1)=5 (a,2)=4 (b,1)=4 (b,2)=0. Greedy takes (a,1): 5;
    # the best one-to-one assignment is (a,2)+(b,1) = 8.
    gt = [frame({1: 0.0, 2: 10.0}) for _ in range(9)]
    pred = [frame({1: 0.0}) if t < 5 else frame({1: 10.0, 2: 0.0}) for t in range(9)]
    m = evaluate_tracking(gt, pred)
    assert m.idtp == 8
    assert m.idf1 == pytest.approx(2 * 8 / (18 + 13))
    # CLEAR MOT: b is missed in frames 0-4, a switches from pred 1 to pred 2 at frame 5
    assert (m.fn, m.fp, m.id_switches) == (5, 0, 1)
    assert m.mota == pytest.approx(1 - 6 / 18)


def test_ignored_ground_truth_counts_neither_way() -> None:
    gt = [frame({1: 0.0, 2: 10.0, 3: 20.0}, ignore={2, 3}) for _ in range(4)]
    pred = [frame({5: 0.0, 6: 10.2}) for _ in range(4)]  # 6 sits on the ignored object 2; nothing on 3
    m = evaluate_tracking(gt, pred)
    assert (m.num_gt, m.num_pred, m.fp, m.fn, m.mota, m.idf1) == (4, 4, 0, 0, 1.0, 1.0)


def test_velocity_error_over_matches_with_known_velocity() -> None:
    gt = [frame({1: 0.0, 2: 10.0}, vel={1: (1.0, 0.0)}) for _ in range(3)]  # 2: velocity unknown
    pred = [frame({1: 0.0, 2: 10.0}, vel={1: (1.3, 0.4), 2: (5.0, 5.0)}) for _ in range(3)]
    m = evaluate_tracking(gt, pred)
    assert m.velocity_count == 3
    assert m.velocity_error == pytest.approx(0.5)


def test_bad_input_is_refused() -> None:
    with pytest.raises(TrackingError, match="frames"):
        evaluate_tracking([frame({1: 0.0})], [])
    with pytest.raises(TrackingError, match="ids repeat"):
        TrackFrame(np.array([1, 1]), np.zeros((2, 2)))


def scored(objs: dict[int, tuple[float, float]]) -> TrackFrame:
    """Predicted objects on the x axis with scores: {id: (x, score)}."""
    ids = np.array(sorted(objs), np.int64)
    return TrackFrame(ids, np.array([[objs[i][0], 0.0] for i in ids]).reshape(-1, 2),
                      scores=np.array([objs[i][1] for i in ids]))  # fmt: skip


def test_amota_by_hand() -> None:
    """One object over 4 frames (GT = 4): track 7 (score 0.9) has frames 0-1, track 8 (0.4) frames 2-3,
    a false positive (0.2) in frame 0. Recalls 0.25 / 0.5 / 0.75 / 1 (5 thresholds from 0, 0.1 on):
    0.25 and 0.5 keep score >= 0.9 (track 7: 2 TP, no FP or switch: MOTAR 1); 0.75 and 1 keep score
    >= 0.4 (4 TP, 1 switch: MOTAR 1 - 1/4); the false positive is never kept. AMOTA = 3.5 / 4."""
    gt = [frame({1: 0.0}) for _ in range(4)]
    pred = [scored({7: (0.1, 0.9), 3: (30.0, 0.2)}), scored({7: (0.1, 0.9)}), scored({8: (0.2, 0.4)}),
            scored({8: (0.2, 0.4)})]  # fmt: skip
    a = amota(gt, pred, num_thresholds=5)
    np.testing.assert_allclose(a.recalls, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(a.score_thresholds, [0.9, 0.9, 0.4, 0.4])
    np.testing.assert_allclose(a.motar, [1.0, 1.0, 0.75, 0.75])
    assert a.amota == pytest.approx(0.875)
    # without track 8 recall stops at 0.5: the two higher recall thresholds count 0
    half = [scored({7: (0.1, 0.9), 3: (30.0, 0.2)}), scored({7: (0.1, 0.9)}), scored({}), scored({})]
    b = amota(gt, half, num_thresholds=5)
    assert b.amota == pytest.approx(0.5) and np.isnan(b.score_thresholds[2:]).all()
    # a false positive scoring above the true track costs MOTAR at every recall: 1 - 1/2 and 1 - (1 + 1)/4
    worse = [scored({7: (0.1, 0.9), 3: (30.0, 0.95)}), *pred[1:]]
    assert amota(gt, worse, num_thresholds=5).amota == pytest.approx((0.5 + 0.5 + 0.5 + 0.5) / 4)
    with pytest.raises(TrackingError, match="scores"):
        amota(gt, [frame({7: 0.0}) for _ in range(4)])
