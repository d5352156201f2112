from __future__ import annotations

import json
import math

import numpy as np
import pytest

from perception.core import classes
from perception.core.types import Detections, GroundTruth
from perception.eval import EvalError
from perception.eval.metrics import (
    EvalAccumulator,
    SegmentationMeter,
    attention_concentration,
    detection_map,
    match_detected,
    post_occlusion_recall,
    recall_precision,
    temporal_flicker,
    to_jsonable,
)


def _gt(
    boxes: list[list[float]],
    cls: list[int],
    tracks: list[int] | None = None,
    vis: list[float] | None = None,
    ignore: list[bool] | None = None,
) -> GroundTruth:
    n = len(boxes)
    return GroundTruth(
        boxes=np.array(boxes, np.float32).reshape(-1, 4),
        class_ids=np.array(cls, np.int64),
        track_ids=np.array(tracks if tracks is not None else list(range(1, n + 1)), np.int64),
        visibility=np.array(vis if vis is not None else [1.0] * n, np.float32),
        ignore=np.array(ignore if ignore is not None else [False] * n, bool),
    )


def _det(boxes: list[list[float]], cls: list[int], scores: list[float]) -> Detections:
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32), np.array(cls, np.int64))


A, Bx, C = [10, 10, 50, 50], [100, 100, 140, 160], [200, 20, 260, 80]
FAR = [300, 300, 320, 320]


def test_map_perfect_detections_is_one_and_missing_classes_nan() -> None:
    gts = [_gt([A, Bx], [0, 2]), _gt([C], [0]), _gt([], [])]
    dets = [_det([A, Bx], [0, 2], [0.9, 0.8]), _det([C], [0], [0.7]), _det([], [], [])]
    r = detection_map(gts, dets)
    assert r["mAP50"] == pytest.approx(1.0) and r["mAP"] == pytest.approx(1.0)
    assert r["per_class"]["car"]["num_gt"] == 2
    assert math.isnan(r["per_class"]["truck"]["AP50"])  # no ground truth for truck


def test_map_known_lower_value() -> None:
    # 2 GT cars; detections TP(0.9), FP(0.8), TP(0.7): precision 1 up to recall .5, 2/3 up to 1
    gts = [_gt([A, Bx], [0, 0])]
    dets = [_det([A, FAR, Bx], [0, 0, 0], [0.9, 0.8, 0.7])]
    expected = (51 * 1.0 + 50 * 2 / 3) / 101
    r = detection_map(gts, dets)
    assert r["mAP50"] == pytest.approx(expected, abs=1e-6)
    # TP then FP only: recall stops at 0.5
    r2 = detection_map(gts, [_det([A, FAR], [0, 0], [0.9, 0.8])])
    assert r2["mAP50"] == pytest.approx(51 / 101, abs=1e-6)
    # wrong class is a miss
    r3 = detection_map(gts, [_det([A, Bx], [1, 1], [0.9, 0.9])])
    assert r3["mAP50"] == 0.0


def test_map_ignored_gt_is_neither_tp_nor_fp() -> None:
    gts = [_gt([A, C], [0, 0], ignore=[False, True])]
    with_ignored = detection_map(gts, [_det([A, C], [0, 0], [0.6, 0.9])])
    assert with_ignored["mAP50"] == pytest.approx(1.0)  # detection on C is not an FP
    assert with_ignored["num_gt"] == 1
    # same detection on a non-ignored GT layout would have been an FP ranked first
    plain = detection_map([_gt([A], [0])], [_det([A, C], [0, 0], [0.6, 0.9])])
    assert plain["mAP50"] < 0.6


def test_map_no_detections_and_box_accuracy() -> None:
    r = detection_map([_gt([A], [0])], [_det([], [], [])])
    assert r["mAP50"] == 0.0
    shifted = [A[0] + 8, A[1], A[2] + 8, A[3]]  # IoU 32*40/(48*40) = 0.667
    r = detection_map([_gt([A], [0])], [_det([shifted], [0], [0.9])])
    assert r["mAP50"] == pytest.approx(1.0)
    assert r["mAP"] == pytest.approx(0.4, abs=1e-6)  # TP at thresholds .50, .55, .60, .65 only
    with pytest.raises(EvalError):
        detection_map([_gt([A], [0])], [])


def test_segmentation_meter_hand_made_confusion() -> None:
    m = SegmentationMeter(num_classes=3, ignore_index=255, names=("a", "b", "c"))
    gt = np.array([[0, 0, 1, 1], [1, 255, 255, 0]])
    pred = np.array([[0, 1, 1, 1], [0, 2, 2, 7]])
    m.update(pred, gt)
    np.testing.assert_array_equal(m.confusion, [[1, 1, 0], [1, 2, 0], [0, 0, 0]])
    r = m.compute()
    # class a: tp 1, gt 3 (one predicted out of range), pred 2 -> 1 / 4; class b: tp 2, gt 3, pred 3 -> 2 / 4
    assert r["per_class_iou"]["a"] == pytest.approx(0.25)
    assert r["per_class_iou"]["b"] == pytest.approx(0.5)
    assert math.isnan(r["per_class_iou"]["c"])
    assert r["mIoU"] == pytest.approx(0.375)
    assert r["pixel_acc"] == pytest.approx(3 / 6)
    assert r["num_pixels"] == 6


def test_match_detected_is_one_to_one() -> None:
    gt = _gt([A, [12, 10, 52, 50]], [0, 0])
    det = _det([A], [0], [0.9])
    assert match_detected(gt, det).tolist() == [True, False]
    assert match_detected(gt, _det([A], [0], [0.2])).tolist() == [False, False]


def test_flicker_on_hand_made_track_pattern() -> None:
    # track 1 detected pattern: 1 0 1 1 -> 3 pairs, 2 switches; track 2 always detected -> 3 pairs, 0
    pattern = [True, False, True, True]
    gts, dets = [], []
    for d in pattern:
        gts.append(_gt([A, C], [0, 2], tracks=[1, 2]))
        dets.append(_det([A, C] if d else [C], [0, 2] if d else [2], [0.9, 0.9] if d else [0.9]))
    r = temporal_flicker([gts], [dets])
    assert (r["pairs"], r["switches"]) == (6, 2)
    assert r["flicker"] == pytest.approx(2 / 6)
    # ignored frames break pairs; a second sequence is not chained to the first
    gts2 = [_gt([A], [0], [1]), _gt([A], [0], [1], ignore=[True]), _gt([A], [0], [1])]
    dets2 = [_det([], [], [])] * 3
    r2 = temporal_flicker([gts, gts2], [dets, dets2])
    assert r2["pairs"] == 6 and math.isnan(temporal_flicker([], [])["flicker"])


def test_post_occlusion_recall_on_visibility_pattern() -> None:
    # track 1 visibility: .9 .9 .05 (absent) .8 .8 .8 .8 .8 .8 ; hidden at frames 2, 3
    vis = [0.9, 0.9, 0.05, None, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]
    detected = [True, True, False, False, False, True, True, True, True, True]
    gts, dets = [], []
    for v, d in zip(vis, detected):
        gts.append(_gt([A], [0], [1], [v]) if v is not None else _gt([], []))
        dets.append(_det([A], [0], [0.9]) if d else _det([], [], []))
    r = post_occlusion_recall([gts], [dets], window=5)
    # counted frames: t = 4..8 (t=8 sees u=3 within window 5; t=9's window is 4..8, no hidden frame)
    assert r["count"] == 5 and r["detected"] == 4
    assert r["post_occlusion_recall"] == pytest.approx(0.8)
    # a track that appears for the first time is not re-emerging
    first = [_gt([], []), _gt([], []), _gt([A], [0], [1], [0.9])]
    assert post_occlusion_recall([first], [[_det([], [], [])] * 3])["count"] == 0


def test_attention_concentration_uniform_and_constructed() -> None:
    gt = _gt([[0, 0, 5, 5]], [0])
    assert attention_concentration(np.ones((10, 10)), gt) == pytest.approx(1.0)
    a = np.zeros((10, 10))
    a[:5, :5] = 1.0
    assert attention_concentration(a, gt) == pytest.approx(4.0)
    a2 = np.full((10, 10), 1.0)
    a2[:5, :5] = 3.0  # mass share 75/150 = .5, area share .25 -> 2
    assert attention_concentration(a2, gt) == pytest.approx(2.0)
    inst = np.zeros((10, 10), np.int32)
    inst[:2, :2] = 1  # instance mask wins over the box: 4 px of 100 with all mass -> 25
    a3 = np.zeros((10, 10))
    a3[:2, :2] = 1.0
    assert attention_concentration(a3, gt, inst) == pytest.approx(25.0)
    assert attention_concentration(np.ones((10, 10)), _gt([], [])) is None


def test_accumulator_all_metrics_jsonable() -> None:
    acc = EvalAccumulator(num_sem_classes=3, sem_names=("a", "b", "c"))
    seg = np.array([[0, 1], [2, 2]])
    for seq in ("s0", "s1"):
        for _ in range(3):
            gt = _gt([A], [0], [1])
            att = np.zeros((100, 100), np.float32)
            att[10:50, 10:50] = 1.0
            acc.add(seq, gt, _det([A], [0], [0.9]), seg_pred=seg, seg_gt=seg, attention=att)
    r = acc.compute()
    s = r["summary"]
    assert s["mAP50"] == pytest.approx(1.0) and s["mIoU"] == pytest.approx(1.0)
    assert s["flicker"] == 0.0 and r["temporal"]["pairs"] == 4
    assert s["attention_concentration"] == pytest.approx(100 * 100 / (40 * 40))
    assert math.isnan(s["post_occlusion_recall"])
    text = json.dumps(to_jsonable(r), allow_nan=False)
    assert json.loads(text)["summary"]["post_occlusion_recall"] is None
    with pytest.raises(EvalError, match="together"):
        acc.add("s0", gt=_gt([A], [0]))


def test_recall_precision_per_class_with_dont_care() -> None:
    car, ped = classes.detection_id("car"), classes.detection_id("pedestrian")
    gt = GroundTruth(
        boxes=np.array([[0, 0, 10, 20], [20, 0, 30, 20], [40, 0, 50, 20], [60, 0, 70, 20]], np.float32),
        class_ids=np.array([ped, ped, car, ped]),
        ignore=np.array([False, False, False, True]),
    )
    det = Detections(
        boxes=np.array([[0, 0, 10, 19], [21, 0, 31, 20], [40, 0, 50, 20], [60, 0, 70, 20], [80, 0, 90, 9],
                        [0, 0, 10, 20]], np.float32),
        scores=np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1], np.float32),
        # ped hit, ped hit (IoU 0.82), car box called pedestrian (wrong class), on the don't-care box,
        # a false car, a low-score duplicate below the threshold
        class_ids=np.array([ped, ped, ped, ped, car, ped]),
    )
    r = recall_precision([gt], [det], score_thresh=0.3, iou_thresh=0.5)
    p, c = r["per_class"]["pedestrian"], r["per_class"]["car"]
    assert (p["num_ref"], p["num_det"], p["matched"]) == (2, 3, 2)  # the don't-care hit is no false positive
    assert p["recall"] == 1.0 and p["precision"] == pytest.approx(2 / 3)
    assert (c["num_ref"], c["num_det"], c["matched"], c["recall"], c["precision"]) == (1, 1, 0, 0.0, 0.0)
    assert math.isnan(r["per_class"]["truck"]["recall"]) and math.isnan(r["per_class"]["truck"]["precision"])
    assert (r["all"]["matched"], r["all"]["num_ref"], r["all"]["num_det"]) == (2, 3, 4)
    agn = r["class_agnostic"]  # the car box called pedestrian counts when classes are ignored
    assert (agn["matched"], agn["num_ref"], agn["num_det"]) == (3, 3, 4)
    strict = recall_precision([gt], [det], score_thresh=0.3, iou_thresh=0.9)
    assert strict["per_class"]["pedestrian"]["matched"] == 1
    with pytest.raises(EvalError, match="frames"):
        recall_precision([gt], [])
