from __future__ import annotations

import cv2
import numpy as np
import pytest

from perception.core.boxes import CoreError
from perception.core.decode import (
    attention_lowres,
    attention_scores,
    attention_scores_lowres,
    decode_detections,
    decode_detections_batch,
    decode_segmentation,
    detections_to_src,
    interp_matrix,
    lowres_grid,
    lowres_scale,
    max_pool3x3,
    segmentation_lowres,
    sigmoid,
    upsample_attention,
)
from perception.core.letterbox import LetterboxMap


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def _synthetic_head(h: int = 12, w: int = 16) -> tuple[np.ndarray, np.ndarray]:
    heat = np.full((3, h, w), -8.0, np.float32)
    box = np.zeros((4, h, w), np.float32)
    # class 0 peak at cell (2, 3) with a weaker neighbour (not a peak)
    heat[0, 2, 3] = _logit(0.9)
    heat[0, 2, 4] = _logit(0.6)
    box[:, 2, 3] = [1.0, 0.5, 2.0, 1.5]
    # class 2 peak at cell (8, 10)
    heat[2, 8, 10] = _logit(0.7)
    box[:, 8, 10] = [3.0, 2.0, 3.0, 2.0]
    # below threshold
    heat[1, 5, 5] = _logit(0.2)
    return heat, box


def test_sigmoid_and_pool() -> None:
    np.testing.assert_allclose(sigmoid(np.array([-1000.0, 0.0, 1000.0])), [0, 0.5, 1])
    x = np.zeros((1, 3, 3), np.float32)
    x[0, 0, 0] = 5
    assert (max_pool3x3(x)[0, :2, :2] == 5).all() and max_pool3x3(x)[0, 2, 2] == 0


def test_decode_known_peaks_gives_exact_boxes() -> None:
    heat, box = _synthetic_head()
    det = decode_detections(heat, box, stride=8, score_thresh=0.3)
    assert det.class_ids.tolist() == [0, 2]
    np.testing.assert_allclose(det.scores, [0.9, 0.7], rtol=1e-5)
    # cell (2, 3) centre = (28, 20); cell (8, 10) centre = (84, 68)
    np.testing.assert_allclose(det.boxes, [[20, 16, 44, 32], [60, 52, 108, 84]])


def test_decode_nms_topk_maxdet_and_clip() -> None:
    heat = np.full((1, 8, 8), -8.0, np.float32)
    box = np.full((4, 8, 8), 2.0, np.float32)
    heat[0, 2, 2] = _logit(0.9)
    heat[0, 2, 4] = _logit(0.8)  # same-size box shifted by 16 px of 32 -> IoU 1/3
    heat[0, 6, 6] = _logit(0.5)
    assert len(decode_detections(heat, box, nms_iou=0.6)) == 3
    assert len(decode_detections(heat, box, nms_iou=0.3)) == 2
    assert decode_detections(heat, box, topk=1).scores.tolist() == pytest.approx([0.9])
    assert len(decode_detections(heat, box, max_det=2)) == 2
    clipped = decode_detections(heat, box, image_size=(64, 64))
    assert clipped.boxes.min() >= 0 and clipped.boxes.max() <= 64
    assert len(decode_detections(np.full((2, 4, 4), -9.0, np.float32), np.zeros((4, 4, 4), np.float32))) == 0


def test_decode_batch_and_errors() -> None:
    heat, box = _synthetic_head()
    dets = decode_detections_batch(np.stack([heat, heat]), np.stack([box, box]), score_thresh=0.65)
    assert [len(d) for d in dets] == [2, 2]
    with pytest.raises(CoreError, match="box must be"):
        decode_detections(heat, box[:, :4])


def test_decode_segmentation_matches_reference() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(13, 6, 8)).astype(np.float32)
    mask = decode_segmentation(logits, 24, 32)
    assert mask.dtype == np.uint8 and mask.shape == (24, 32)
    # same resolution: plain argmax
    np.testing.assert_array_equal(decode_segmentation(logits, 6, 8), logits.argmax(0))
    # constant logits per class -> uniform argmax after upsampling
    const = np.zeros((5, 4, 4), np.float32)
    const[3] = 1.0
    assert (decode_segmentation(const, 16, 16) == 3).all()


def test_attention_upsample_and_scores() -> None:
    att = np.zeros((1, 4, 4), np.float32)
    att[0, :2, :2] = 1.0
    full = upsample_attention(att, 8, 8)
    assert full.shape == (8, 8) and full.min() >= 0
    a = np.zeros((10, 10), np.float32)
    a[:5, :5] = 1.0  # image mean 0.25
    s = attention_scores(a, np.array([[0, 0, 5, 5], [5, 5, 10, 10], [0, 0, 10, 10]], np.float32))
    np.testing.assert_allclose(s, [4.0, 0.0, 1.0], rtol=1e-6)
    assert attention_scores(np.zeros((4, 4)), np.array([[0, 0, 2, 2]])).tolist() == [1.0]


def test_detections_to_src() -> None:
    heat, box = _synthetic_head()
    det = decode_detections(heat, box)
    m = LetterboxMap.compute(256, 96, 128, 96)  # scale 0.5, pad_y 24
    src = detections_to_src(det, m)
    np.testing.assert_allclose(src.boxes[0], [40, 0, 88, 16])


def test_non_finite_network_outputs_give_no_nan_results() -> None:
    """A backend returning NaN/inf (issue 10, fault injection): no NaN box, score or attention leaves decode."""
    heat, box = _synthetic_head()
    clean = decode_detections(heat, box, score_thresh=0.3)
    heat[1, 5, 5] = np.nan
    heat[2, 10, 14] = 8.0  # a confident peak whose box is garbage
    box[:, 10, 14] = [np.inf, np.nan, 1.0, 1.0]
    det = decode_detections(heat, box, score_thresh=0.3)
    assert np.isfinite(det.boxes).all() and np.isfinite(det.scores).all()
    np.testing.assert_array_equal(det.boxes, clean.boxes)
    att = upsample_attention(np.full((1, 4, 4), np.nan, np.float32), 8, 8)
    assert np.isfinite(att).all()


@pytest.mark.parametrize(("shape", "out"), [((0, 4, 4), (8, 8)), ((3, 0, 4), (8, 8)), ((3, 4, 4), (0, 8))])
def test_empty_maps_raise_core_error_not_cv2_error(shape: tuple[int, int, int], out: tuple[int, int]) -> None:
    with pytest.raises(CoreError, match="empty"):
        decode_segmentation(np.zeros(shape, np.float32), *out)
    with pytest.raises(CoreError, match="empty"):
        upsample_attention(np.zeros((1, *shape[1:]), np.float32) if shape[0] else np.zeros((1, 4, 0)), *out)


# -- low-resolution outputs ---------------------------------------------------------------------------------------


def test_interp_matrix_is_identity_on_the_grid_and_rows_sum_to_one() -> None:
    np.testing.assert_array_equal(interp_matrix(5, 5, 0.0, 1.0), np.eye(5, dtype=np.float32))
    r = interp_matrix(7, 4, -0.3, 0.61)
    np.testing.assert_allclose(r.sum(axis=1), 1.0, atol=1e-6)
    assert (r >= 0).all()


def test_lowres_maps_without_padding_are_the_network_maps() -> None:
    """Input at network size: the grid is the stride-4 map itself, so nothing is resampled."""
    m = LetterboxMap.compute(64, 32, 64, 32)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 8, 16)).astype(np.float32)
    grid = lowres_grid(m, 4)
    assert grid == (8, 16) and lowres_scale(m, grid) == (4.0, 4.0)
    np.testing.assert_array_equal(segmentation_lowres(logits, m, grid), logits.argmax(0))
    att = rng.random((1, 8, 16)).astype(np.float32)
    np.testing.assert_allclose(attention_lowres(att, m, grid), att[0], atol=1e-6)


def test_lowres_maps_crop_the_padding_and_cover_the_input() -> None:
    """A 640x240 image in a 128x64 input: 8 rows of padding above and below; the low-resolution maps keep
    only the image part, and agree with the input-resolution masks at the cells' centres."""
    m = LetterboxMap.compute(640, 240, 128, 64)
    assert (m.pad_y, m.new_h) == (8, 48)
    logits = np.zeros((3, 16, 32), np.float32)
    logits[1] = 5.0  # class 1 in the image...
    logits[2, :2] = logits[2, -2:] = 9.0  # ...class 2 only in the padding rows (stride-4 rows 0-1, 14-15)
    grid = lowres_grid(m, 4)
    assert grid == (12, 32)
    sx, sy = lowres_scale(m, grid)
    assert (sx * grid[1], sy * grid[0]) == (640, 240)
    assert (segmentation_lowres(logits, m, grid) == 1).all()
    rng = np.random.default_rng(1)
    smooth = cv2.resize(rng.normal(size=(3, 4, 8)).transpose(1, 2, 0), (32, 16)).transpose(2, 0, 1)
    smooth = np.ascontiguousarray(smooth, np.float32)
    low = segmentation_lowres(smooth, m, grid)
    full = m.mask_to_src(decode_segmentation(smooth, 64, 128), cv2.INTER_NEAREST)
    ys = ((np.arange(grid[0]) + 0.5) * sy).astype(int)
    xs = ((np.arange(grid[1]) + 0.5) * sx).astype(int)
    assert (low == full[np.ix_(ys, xs)]).mean() > 0.95


def test_attention_scores_lowres_equal_full_resolution_ones_on_a_blocky_map() -> None:
    """The full-resolution map is the low-resolution one with 5x4-pixel cells: area means agree exactly,
    for boxes cutting through cells too."""
    rng = np.random.default_rng(2)
    low = rng.random((6, 8)).astype(np.float32)
    full = np.kron(low, np.ones((4, 5), np.float32))  # (24, 40)
    boxes = np.array([[0, 0, 40, 24], [3, 1, 17, 9], [12.2, 5.5, 33.9, 22.1], [39, 23, 40, 24], [7, 7, 7, 7]],
                     np.float32)
    np.testing.assert_allclose(attention_scores_lowres(low, boxes, (5.0, 4.0), (24, 40)),
                               attention_scores(full, boxes), rtol=1e-5)
    assert attention_scores_lowres(np.zeros((3, 3), np.float32), boxes[:1], (1.0, 1.0), (3, 3)).tolist() == [1.0]
    assert attention_scores_lowres(low, np.zeros((0, 4)), (5.0, 4.0), (24, 40)).shape == (0,)


def test_attention_lowres_clips_and_removes_nan() -> None:
    m = LetterboxMap.compute(64, 32, 64, 32)
    att = np.full((1, 4, 8), np.nan, np.float32)
    att[0, 0, 0] = -1.0
    a = attention_lowres(att, m, lowres_grid(m, 4))
    assert a.shape == (8, 16) and np.isfinite(a).all() and (a >= 0).all()


def test_one_vehicle_scored_as_car_and_truck_keeps_its_best_class() -> None:
    """COCO-trained heads score a van as car AND truck: two boxes in one place that class-aware NMS keeps. With
    ``vehicle_nms_iou`` the lower-scoring one goes; same-class overlaps stay NMS's business, other classes (a
    pedestrian in front of the van) and a car beside a truck (IoU below the threshold) stay."""
    from perception.core.anchors import decode_box_list, group_keep
    from perception.core.classes import detection_id

    car, truck, ped = detection_id("car"), detection_id("truck"), detection_id("pedestrian")
    boxes = np.array([[100, 100, 200, 180],  # the van as car
                      [102, 98, 203, 182],  # the van as truck
                      [120, 110, 150, 175],  # a pedestrian in front of it
                      [210, 100, 300, 180],  # a truck parked beside it (IoU 0)
                      [300, 300, 340, 330]], np.float32)
    scores = np.zeros((5, 5), np.float32)
    scores[0, car], scores[1, truck], scores[2, ped], scores[3, truck], scores[4, car] = 0.45, 0.6, 0.8, 0.7, 0.5
    both = decode_box_list(boxes, scores, 0.3, nms_iou=0.6)  # default 1: never across classes
    assert len(both) == 5
    one = decode_box_list(boxes, scores, 0.3, nms_iou=0.6, vehicle_nms_iou=0.7)
    assert len(one) == 4 and sorted(one.scores.tolist()) == pytest.approx([0.5, 0.6, 0.7, 0.8])  # the car 0.45 went
    assert one.class_ids[np.argmin(np.abs(one.scores - 0.6))] == truck
    # pure mask: only cross-class pairs in a group; unknown class ids are their own group
    keep = group_keep(boxes[:2], np.array([0.5, 0.4]), np.array([car, car]), 0.1)
    assert keep.all()  # same class: not this function's business
    assert group_keep(boxes[:2], np.array([0.5, 0.4]), np.array([car, 99]), 0.1).all()
    assert group_keep(boxes[:2], np.array([0.5, 0.4]), np.array([car, truck]), 1.0).all()  # 1: off
    assert group_keep(boxes[:2], np.array([0.5, 0.4]), np.array([truck, car]), 0.7).tolist() == [True, False]


def test_group_keep_matches_its_definition_on_random_frames() -> None:
    """Against the rule written out pair by pair (best score first, a kept box drops every lower-or-equal-scoring box
    of the other class of its group overlapping it by more than the IoU): 200 random frames of cars, trucks and
    pedestrians."""
    from perception.core.anchors import group_keep
    from perception.core.boxes import iou_matrix

    def by_definition(b: np.ndarray, s: np.ndarray, c: np.ndarray, iou: float) -> np.ndarray:
        vehicle = np.isin(c, [0, 1])  # car, truck
        keep = np.ones(len(c), bool)
        for i in np.argsort(-s, kind="stable"):
            for j in range(len(c)):
                if (keep[i] and j != i and keep[j] and vehicle[i] and vehicle[j] and c[i] != c[j] and s[j] <= s[i]
                        and iou_matrix(b[i:i + 1], b[j:j + 1])[0, 0] > iou):
                    keep[j] = False
        return keep

    for seed in range(200):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(0, 30))
        xy, wh = rng.uniform(0, 100, (n, 2)), rng.uniform(5, 40, (n, 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        scores, cls = rng.uniform(0, 1, n), rng.integers(0, 3, n)
        np.testing.assert_array_equal(group_keep(boxes, scores, cls, 0.3), by_definition(boxes, scores, cls, 0.3))
