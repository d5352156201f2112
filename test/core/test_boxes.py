from __future__ import annotations

import numpy as np
import pytest

from perception.core import boxes as B


def test_conversions_round_trip() -> None:
    xyxy = np.array([[10, 20, 30, 60], [0, 0, 1, 1]], np.float32)
    np.testing.assert_allclose(B.xyxy_to_xywh(xyxy), [[10, 20, 20, 40], [0, 0, 1, 1]])
    np.testing.assert_allclose(B.xyxy_to_cxcywh(xyxy), [[20, 40, 20, 40], [0.5, 0.5, 1, 1]])
    np.testing.assert_allclose(B.xywh_to_xyxy(B.xyxy_to_xywh(xyxy)), xyxy)
    np.testing.assert_allclose(B.cxcywh_to_xyxy(B.xyxy_to_cxcywh(xyxy)), xyxy)


def test_clip_area_scale_translate() -> None:
    b = np.array([[-5, -5, 15, 8], [5, 5, 3, 3]], np.float32)
    np.testing.assert_allclose(B.clip_boxes(b, 10, 6), [[0, 0, 10, 6], [5, 5, 3, 3]])
    np.testing.assert_allclose(B.box_area(b), [260, 0])
    np.testing.assert_allclose(B.scale_boxes(b[:1], 2, 0.5), [[-10, -2.5, 30, 4]])
    np.testing.assert_allclose(B.translate_boxes(b[:1], 1, 2), [[-4, -3, 16, 10]])


def test_inside_matrix_is_the_share_of_each_box_inside_another() -> None:
    a = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [3, 3, 3, 9]], np.float32)  # the last is empty
    b = np.array([[0, 0, 10, 10], [0, 0, 100, 100]], np.float32)
    np.testing.assert_allclose(B.inside_matrix(a, b), [[1.0, 1.0], [0.25, 1.0], [0.0, 0.0]])
    np.testing.assert_allclose(B.inside_matrix(b, a[:1]), [[1.0], [0.01]])  # not symmetric
    assert B.inside_matrix(a, np.zeros((0, 4), np.float32)).shape == (3, 0)


def test_iou_matrix_known_values() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 2, 2]], np.float32)
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    iou = B.iou_matrix(a, b)
    np.testing.assert_allclose(iou, [[50 / 150, 1.0, 0.0], [0.0, 4 / 100, 0.0]], rtol=1e-6)
    assert B.iou_matrix(a, np.zeros((0, 4))).shape == (2, 0)


def test_nms_class_aware_keeps_the_right_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [1, 0, 11, 10], [0, 0, 10, 4]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95, 0.5], np.float32)
    cls = np.array([0, 0, 0, 1, 0])
    keep = B.nms(boxes, scores, cls, iou_thresh=0.5)
    # box 1 overlaps box 0 (IoU 0.82, same class) -> suppressed; box 3 is another class;
    # box 4 has IoU 0.4 with box 0 -> kept
    assert keep.tolist() == [3, 0, 2, 4]
    assert B.nms(boxes, scores, None, iou_thresh=0.5).tolist() == [3, 2, 4]
    assert B.nms(boxes, scores, cls, iou_thresh=0.5, max_det=2).tolist() == [3, 0]
    assert B.nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0)).shape == (0,)


def test_nms_matches_iou_matrix_threshold() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (60, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (60, 2))], 1).astype(np.float32)
    scores = rng.uniform(size=60).astype(np.float32)
    keep = B.nms(boxes, scores, None, iou_thresh=0.45, max_det=1000)
    # reference greedy NMS
    order = np.argsort(-scores)
    ref: list[int] = []
    iou = B.iou_matrix(boxes, boxes)
    for i in order:
        if all(iou[i, j] <= 0.45 for j in ref):
            ref.append(int(i))
    assert keep.tolist() == ref


def test_bad_shapes_raise_core_error() -> None:
    with pytest.raises(B.CoreError, match=r"\(N, 4\)"):
        B.iou_matrix(np.zeros((3, 3)), np.zeros((1, 4)))
    with pytest.raises(B.CoreError, match="scores"):
        B.nms(np.zeros((2, 4)), np.zeros(3))


def test_detections_concatenate_keeps_order_and_attention_only_when_all_have_it() -> None:
    from perception.core.types import Detections

    a = Detections(np.array([[0, 0, 1, 1]], np.float32), np.array([0.9], np.float32), np.array([2]),
                   np.array([0.5], np.float32))
    b = Detections(np.array([[1, 1, 2, 2], [2, 2, 3, 3]], np.float32), np.array([0.4, 0.3], np.float32),
                   np.array([0, 1]), np.array([0.1, 0.2], np.float32))
    both = Detections.concatenate([a, b])
    np.testing.assert_allclose(both.boxes, [[0, 0, 1, 1], [1, 1, 2, 2], [2, 2, 3, 3]])
    assert both.class_ids.tolist() == [2, 0, 1] and both.attention is not None and len(both.attention) == 3
    assert Detections.concatenate([a, Detections()]).attention is None and len(Detections.concatenate([])) == 0
