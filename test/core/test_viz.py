from __future__ import annotations

import numpy as np
import pytest

from perception.core import classes
from perception.core.boxes import CoreError
from perception.core.types import Detections, GroundTruth
from perception.core.viz import colorize_semantic, draw_detections, overlay_heatmap, side_by_side


def test_colorize_semantic_uses_palette() -> None:
    mask = np.array([[0, 1], [9, 200]], np.uint8)
    rgb = colorize_semantic(mask)
    assert rgb.shape == (2, 2, 3)
    assert tuple(rgb[0, 0]) == classes.SEMANTIC_CLASSES[0].color
    assert tuple(rgb[1, 0]) == classes.SEMANTIC_CLASSES[9].color
    assert tuple(rgb[1, 1]) == (0, 0, 0)


def test_overlay_heatmap_changes_hot_region_more() -> None:
    rgb = np.full((40, 60, 3), 100, np.uint8)
    att = np.zeros((5, 6), np.float32)
    att[0, 0] = 1.0
    out = overlay_heatmap(rgb, att)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert not np.array_equal(out[0, 0], out[-1, -1])  # red-ish corner vs blue elsewhere
    assert out[0, 0, 0] > out[-1, -1, 0]


def test_draw_detections_draws_boxes_and_labels() -> None:
    rgb = np.zeros((120, 160, 3), np.uint8)
    det = Detections(
        boxes=np.array([[20, 30, 80, 90]], np.float32),
        scores=np.array([0.8], np.float32),
        class_ids=np.array([2]),
        attention=np.array([2.5], np.float32),
    )
    gt = GroundTruth(boxes=np.array([[100, 10, 150, 60]], np.float32), class_ids=np.array([0]))
    out = draw_detections(rgb, det, gt=gt)
    assert rgb.max() == 0  # input untouched
    assert out[60, 20].any() and out[10, 125].any()  # detection edge, gt edge
    assert not out[60, 50].any()  # box interior stays empty


def test_side_by_side_panel() -> None:
    a = np.zeros((40, 60, 3), np.uint8)
    b = np.zeros((20, 20), np.uint8)
    panel = side_by_side([a, b], ["a", "b"])
    assert panel.shape[0] > 40 and panel.shape[1] == 60 + 40
    grid = side_by_side([a, a, a], None, cols=2)
    assert grid.shape == (80, 120, 3)
    with pytest.raises(CoreError, match="titles"):
        side_by_side([a], ["x", "y"])


def test_bird_eye_view_places_objects_in_the_vehicle_frame() -> None:
    from perception.core.viz import _DET_COLORS, draw_bev

    empty = draw_bev((200, 200), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros(0, np.int64))
    assert empty.shape == (200, 200, 3) and empty.dtype == np.uint8
    # a car 30 m ahead and 10 m to the LEFT: drawn above the ego and left of the centre column
    img = draw_bev((200, 200), np.array([[30.0, 10.0, 0.8]]), np.array([[4.5, 1.9, 1.5]]), np.array([0.0]),
                   np.array([0], np.int64), np.array([[8.0, 0.0, 0.0]]), ["#1 car"])  # fmt: skip
    ys, xs = np.nonzero(np.all(img == np.array(_DET_COLORS[0], np.uint8), axis=-1))
    assert len(xs) > 0
    assert xs.mean() < 100 - 5 and ys.mean() < 100  # left of centre, in the upper half (ahead)
    arrow = np.all(img == 255, axis=-1) & ~np.all(empty == 255, axis=-1)  # the white velocity arrow, ahead
    assert arrow.any() and np.nonzero(arrow)[0].min() < ys.min()
    with pytest.raises(CoreError):
        draw_bev((8, 8), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros(0, np.int64))
