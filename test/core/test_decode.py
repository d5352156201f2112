from __future__ import annotations

import numpy as np
import pytest

from perception.core.boxes import CoreError
from perception.core.decode import (
    attention_scores,
    decode_detections,
    decode_detections_batch,
    decode_segmentation,
    detections_to_src,
    max_pool3x3,
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
