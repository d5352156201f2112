"""Attention-guided refinement: the policy and the merge (pure), and the two-pass Perceptor end to end with
a tiny network through torch and ONNX Runtime."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from perception.core.boxes import iou_matrix
from perception.core.temporal import StreamSteps
from perception.core.types import Detections
from perception.pipeline.perceptor import FrameInput, Perceptor, PerceptorConfig
from perception.pipeline.refine import (
    RefineConfig,
    RefinedResult,
    RefineError,
    RefiningPerceptor,
    crops_that_fit,
    fixed_regions,
    frame_period,
    plan_regions,
    tile_grid,
    wants_zoom_out,
    zoom_out_boxes,
    zoom_out_view,
)
from perception.pipeline.refine_merge import (
    crop_detections_to_frame,
    merge_detections,
    merge_passes,
    partial_views,
    superseded,
    zoom_superseded,
)
from perception.runtime.base import Backend
from perception.runtime.torch_backend import TorchBackend

FRAME = (720, 1280)
NET = (256, 448)
NONE = np.zeros((0, 4), np.float32)


def _blob_map(centres: list[tuple[int, int]], value: float = 0.8, radius: int = 20) -> np.ndarray:
    att = np.full(FRAME, 0.02, np.float32)
    yy, xx = np.mgrid[: FRAME[0], : FRAME[1]]
    for cx, cy in centres:
        att[(xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2] = value
    return att


def _inside(region: np.ndarray, x: float, y: float) -> bool:
    return bool(region[0] <= x <= region[2] and region[1] <= y <= region[3])


# -- policy ------------------------------------------------------------------------------------------------
def test_regions_cover_attended_blobs_at_native_crop_size() -> None:
    plan = plan_regions(FRAME, NET, _blob_map([(200, 360), (1100, 150)]), NONE, np.zeros(0), RefineConfig())
    assert plan.reason == "refined" and len(plan.regions) == 2
    w, h = plan.regions[:, 2] - plan.regions[:, 0], plan.regions[:, 3] - plan.regions[:, 1]
    assert (w == 448).all() and (h == 256).all()  # crop_scale 1: the network input at native resolution
    assert (plan.regions[:, :2] >= 0).all() and (plan.regions[:, 2] <= 1280).all() and (plan.regions[:, 3] <= 720).all()
    for cx, cy in [(200, 360), (1100, 150)]:
        assert any(_inside(r, cx, cy) for r in plan.regions)


def test_refinement_stops_when_the_need_is_covered() -> None:
    # one blob: one crop covers it; the budget left is not spent on empty windows, even with no minimum gain
    plan = plan_regions(FRAME, NET, _blob_map([(640, 360)]), NONE, np.zeros(0), RefineConfig(max_regions=5,
                                                                                             min_gain=0.0))
    assert len(plan.regions) == 1 and np.isfinite(plan.regions).all() and _inside(plan.regions[0], 640, 360)
    # the crop is centred on the blob, not pushed against it by the window search
    x0, y0, x1, y1 = plan.regions[0]
    assert abs((x0 + x1) / 2 - 640) <= 16 and abs((y0 + y1) / 2 - 360) <= 16


def test_nothing_attended_means_no_refinement() -> None:
    flat = np.full(FRAME, 0.01, np.float32)
    plan = plan_regions(FRAME, NET, flat, NONE, np.zeros(0), RefineConfig())
    assert len(plan.regions) == 0 and plan.reason == "nothing attended"
    # a uniform (if high) map has no peak either once the relative threshold applies
    plan = plan_regions(FRAME, NET, np.full(FRAME, 0.5, np.float32), NONE, np.zeros(0), RefineConfig())
    assert len(plan.regions) == 0
    # a frame no larger than the network input is already seen at native resolution
    small = plan_regions((256, 448), NET, _blob_map([(100, 100)])[:256, :448], NONE, np.zeros(0), RefineConfig())
    assert len(small.regions) == 0 and small.reason == "native"


def test_budget_caps_regions_and_pixels() -> None:
    att = _blob_map([(100, 100), (640, 360), (1180, 620), (100, 620), (1180, 100)])
    assert len(plan_regions(FRAME, NET, att, NONE, np.zeros(0), RefineConfig(max_regions=5)).regions) == 5
    assert len(plan_regions(FRAME, NET, att, NONE, np.zeros(0), RefineConfig(max_regions=2)).regions) == 2
    crop = NET[0] * NET[1]
    capped = plan_regions(FRAME, NET, att, NONE, np.zeros(0), RefineConfig(max_regions=5, max_pixels=3 * crop + 10))
    assert len(capped.regions) == 2  # pass 1 + 2 crops fit, a third would not
    none_left = plan_regions(FRAME, NET, att, NONE, np.zeros(0), RefineConfig(max_pixels=crop))
    assert len(none_left.regions) == 0 and none_left.reason == "budget"
    assert len(plan_regions(FRAME, NET, att, NONE, np.zeros(0), RefineConfig(max_regions=0)).regions) == 0


def test_small_boxes_steer_and_large_boxes_mute_attention() -> None:
    cfg = RefineConfig()
    flat = np.full(FRAME, 0.01, np.float32)
    small = np.array([[900, 500, 906, 510]], np.float32)
    plan = plan_regions(FRAME, NET, flat, small, np.array([0.9]), cfg)
    assert len(plan.regions) == 1 and _inside(plan.regions[0], 903, 505)
    # attention on an object pass 1 already resolves (a large box) is no reason to look again
    att = _blob_map([(300, 300)], radius=60)
    large = np.array([[220, 220, 380, 380]], np.float32)
    assert len(plan_regions(FRAME, NET, att, NONE, np.zeros(0), cfg, large_boxes=large).regions) == 0
    assert len(plan_regions(FRAME, NET, att, NONE, np.zeros(0), cfg).regions) == 1


def test_uniform_tiles_cover_the_frame_round_robin() -> None:
    grid = tile_grid(FRAME, NET, 1.0)
    assert len(grid) == 9  # 3 x 3 tiles of 448x256 cover 1280x720
    covered = np.zeros(FRAME, bool)
    for x0, y0, x1, y1 in grid:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    cfg = RefineConfig(policy="uniform", max_regions=3)
    seen = np.concatenate([fixed_regions(FRAME, NET, cfg, k).regions for k in (0, 3, 6)])
    assert len(np.unique(seen, axis=0)) == 9
    band = fixed_regions(FRAME, NET, RefineConfig(policy="band", max_regions=3), 0).regions
    assert len(band) == 3 and (band[:, 1] == grid[3, 1]).all()
    with pytest.raises(RefineError, match="policy"):
        RefineConfig(policy="random")


# -- merge ---------------------------------------------------------------------------------------------------
def test_crop_boxes_cut_by_an_inner_crop_edge_are_dropped() -> None:
    det = Detections(np.array([[0, 50, 20, 80], [100, 100, 120, 140], [430, 10, 448, 40], [200, 240, 220, 256]],
                              np.float32), np.array([0.9, 0.8, 0.7, 0.6], np.float32), np.zeros(4, np.int64))
    inner = crop_detections_to_frame(det, np.array([400, 200, 848, 456]), FRAME, 2.0)
    np.testing.assert_allclose(inner.boxes, [[500, 300, 520, 340]])  # only the box clear of every edge
    # at the frame's own edges a box is not cut: it ends where the image ends
    corner = crop_detections_to_frame(det, np.array([0, 464, 448, 720]), FRAME, 2.0)
    assert len(corner) == 3 and corner.boxes[:, 0].min() == 0 and corner.boxes[:, 3].max() == 720


def test_pass1_boxes_inside_a_crop_give_way_when_the_crop_resolves_them() -> None:
    det = Detections(np.array([[500, 300, 510, 320],  # small, well inside the crop: the crop's view replaces it
                               [560, 260, 700, 440],  # large, inside, found again by the crop: the crop's box stays
                               [720, 260, 780, 440],  # inside, not found again, unsure (0.4): a likely false positive
                               [600, 330, 640, 420],  # inside, not found again, confident (0.8): the crop missed it
                               [300, 250, 460, 400],  # crosses the crop's inner left edge: pass 1 keeps it
                               [401, 300, 410, 320],  # against the crop's inner left edge: kept
                               [1000, 300, 1010, 320]], np.float32),  # outside every crop: kept
                     np.array([0.5, 0.5, 0.4, 0.8, 0.5, 0.5, 0.5], np.float32), np.zeros(7, np.int64))
    crop = Detections(np.array([[565, 262, 702, 445], [600, 330, 640, 420]], np.float32), np.array([0.7, 0.7]),
                      np.array([0, 2]))  # the second: another class at the confident box's place -- not it
    scale, region = 256 / 720, np.array([[400, 200, 848, 456]])
    kept = superseded(det, region, FRAME, scale, RefineConfig(), [crop])
    np.testing.assert_allclose(kept.boxes, det.boxes[3:])
    assert len(superseded(det, np.zeros((0, 4), np.int32), FRAME, scale, RefineConfig(), [])) == 7
    # keep threshold 0: a box the crop did not find stays whatever its score; 1: none does
    assert len(superseded(det, region, FRAME, scale, RefineConfig(supersede_keep=0.0, resolved_size=1e9), [crop])) == 5
    # a confident box pass 1 saw large enough to resolve (64 network px here) stays though the crop found it again:
    # the fusion merges the crop's box into it
    sure = Detections(det.boxes, np.where(np.arange(7) == 1, 0.9, det.scores).astype(np.float32), det.class_ids)
    assert (superseded(sure, region, FRAME, scale, RefineConfig(), [crop]).boxes == det.boxes[1]).all(axis=1).any()
    assert not (superseded(sure, region, FRAME, scale, RefineConfig(resolved_size=65.0), [crop]).boxes
                == det.boxes[1]).all(axis=1).any()
    assert len(superseded(det, region, FRAME, scale, RefineConfig(supersede_keep=1.0), [crop])) == 3
    # a crop at the frame's corner: its frame edges are no inner edges, a box touching them is inside
    corner = np.array([[832, 0, 1280, 456]])
    assert len(superseded(det.select(np.array([6])), corner, FRAME, scale, RefineConfig())) == 0


def test_a_crop_box_of_a_part_of_a_larger_pass1_object_is_dropped() -> None:
    """A bus that crosses the crop's inner edges: the crop sees part of it and boxes that part short of the edge
    (so the edge margin keeps it); lying inside pass 1's bus box of its class, it is a part view and goes. A
    pedestrian in front of the bus (another class) and a truck inside a pass-1 truck WHOLLY inside the crop stay."""
    region = np.array([452, 261, 1092, 645])
    pass1 = Detections(np.array([[343, 413, 793, 681], [900, 300, 1000, 400]], np.float32),
                       np.array([0.76, 0.6], np.float32), np.array([1, 1]))
    crop = Detections(np.array([[462, 398, 689, 619],  # the bus's right part: 93 % inside the pass-1 bus
                                [600, 450, 630, 530],  # a pedestrian on the bus: another class
                                [905, 305, 995, 395]], np.float32),  # the small truck, seen whole by the crop
                      np.array([0.69, 0.5, 0.7], np.float32), np.array([1, 2, 1]))
    kept = partial_views(crop, region, pass1, FRAME, 0.7)
    np.testing.assert_allclose(kept.boxes, crop.boxes[1:])
    assert len(partial_views(crop, region, pass1, FRAME, 2.0)) == 3  # > 1: off
    # the pass-1 bus inside the crop (it crosses no inner edge): the crop's box is the whole object, kept
    assert len(partial_views(crop, np.array([300, 261, 1092, 700]), pass1, FRAME, 0.7)) == 3


def test_merge_passes_one_frame() -> None:
    """The whole merge: the pass-1 pedestrian inside the crop gives way to the crop's (better placed) one; the pass-1
    car crossing the crop's edge stays and the crop's truck box of the same van goes (one vehicle, one class:
    the car scores higher); the crop's box of a part of the pass-1 bus goes; no crops: pass 1 as it was."""
    region = np.array([[400, 200, 848, 456]])
    pass1 = Detections(np.array([[500, 300, 520, 350],  # pedestrian, inside the crop
                                 [380, 380, 480, 450],  # the van as car, crossing the crop's left edge
                                 [700, 400, 1000, 600]], np.float32),  # a bus crossing the crop's bottom/right edges
                       np.array([0.5, 0.8, 0.9], np.float32), np.array([2, 0, 1]))
    crop = Detections(np.array([[103, 96, 121, 148],  # the pedestrian, better placed (frame 503, 296, 521, 348)
                                [5, 180, 80, 250],  # the van as truck (frame 405, 380, 480, 450: IoU 0.75 with the car)
                                [310, 210, 440, 250]], np.float32),  # the bus's part (frame 710, 410, 840, 450)
                      np.array([0.7, 0.6, 0.6], np.float32), np.array([2, 1, 1]))
    det, src = merge_passes(pass1, region, [crop], FRAME, 0.5, RefineConfig(), 0.7, 100)
    order = np.argsort(det.boxes[:, 0])
    np.testing.assert_allclose(det.boxes[order], [[380, 380, 480, 450], [503, 296, 521, 348], [700, 400, 1000, 600]])
    assert det.class_ids[order].tolist() == [0, 2, 1] and src[order].tolist() == [0, 1, 0]
    # without the vehicle rule the truck box stays beside the car box
    both, _ = merge_passes(pass1, region, [crop], FRAME, 0.5, RefineConfig(), 1.0, 100)
    assert sorted(both.class_ids.tolist()) == [0, 1, 1, 2]
    same, none = merge_passes(pass1, np.zeros((0, 4), np.int32), [], FRAME, 0.5, RefineConfig(), 0.7, 100)
    assert same is pass1 and none.tolist() == [0, 0, 0]


# -- the zoom-out pass (objects too large for pass 1) ---------------------------------------------------------
def test_zoom_out_view_maps_boxes_back_to_the_frame() -> None:
    """The zoom-out canvas holds the whole frame at the given scale, centred on grey; a box found on it comes back
    to the frame's pixels (clipped to the frame; one wholly in the padding goes)."""
    rgb = np.zeros((900, 1600, 3), np.uint8)
    rgb[300:700, 400:1000] = 255  # a near vehicle: 400 px tall
    scale = 384 / 900 * 0.5
    canvas, window = zoom_out_view(rgb, (384, 640), scale)
    assert canvas.shape == (384, 640, 3) and canvas[0, 0].tolist() == [114, 114, 114]
    ys, xs = np.nonzero(canvas[:, :, 0] > 184)  # brighter than halfway from the grey: the vehicle
    found = Detections(np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1],  # the vehicle
                                 [0, 0, 10, 10],  # in the padding only
                                 [100, 50, 700, 200]], np.float32),  # reaching past the frame's right edge
                       np.array([0.9, 0.8, 0.7], np.float32), np.array([0, 2, 1]))
    back = zoom_out_boxes(found, window, (384, 640), (900, 1600))
    assert back.class_ids.tolist() == [0, 1]
    np.testing.assert_allclose(back.boxes[0], [400, 300, 1000, 700], atol=1 / scale)  # one canvas pixel
    assert back.boxes[1, 2] == 1600 and (back.boxes >= 0).all()


def test_zoom_out_runs_for_a_large_candidate_within_the_budget() -> None:
    cfg = RefineConfig(max_regions=2)
    assert wants_zoom_out(0.1, NET, cfg) and wants_zoom_out(0.9, NET, cfg)
    assert not wants_zoom_out(0.05, NET, cfg) and not wants_zoom_out(0.0, NET, cfg)  # no large candidate
    for off in (replace(cfg, enabled=False), replace(cfg, zoom_out=0.0),
                replace(cfg, max_pixels=NET[0] * NET[1] * 2 - 1)):  # pass 1 and the zoom-out do not fit the cap
        assert not wants_zoom_out(0.9, NET, off)
    with pytest.raises(RefineError, match="zoom_out"):
        RefineConfig(zoom_out=0.95)
    with pytest.raises(RefineError, match="large_score"):
        RefineConfig(large_score=0.0)
    # the zoom-out is one more pass, within max_pixels: the crops get what is left
    att = _blob_map([(200, 360), (1100, 150), (700, 600)])
    px = NET[0] * NET[1]
    assert len(plan_regions(FRAME, NET, att, NONE, np.zeros(0), RefineConfig(max_regions=3), spent=1).regions) == 3
    capped = RefineConfig(max_regions=3, max_pixels=4 * px)
    assert len(plan_regions(FRAME, NET, att, NONE, np.zeros(0), capped, spent=1).regions) == 2
    assert plan_regions(FRAME, NET, att, NONE, np.zeros(0), replace(capped, max_pixels=2 * px), spent=1).reason \
        == "budget"


def test_large_pass1_boxes_of_a_part_give_way_to_the_zoom_out() -> None:
    """Pass-1 boxes at least large_size network pixels tall: one that a larger zoom-out box of its class holds
    without matching it (the half of a bus) goes; one the zoom-out matches stays and is fused with it; one it did
    not see stays, unsure or not; smaller boxes are not the zoom-out's business; the zoom-out's own small boxes do
    not join (pass 1 sees those better)."""
    scale = 0.5  # network pixels per frame pixel: large = 320 frame px tall
    pass1 = Detections(np.array([[100, 100, 500, 500],  # truck, half of the bus
                                 [800, 100, 1200, 480],  # car, unsure, not seen by the zoom-out
                                 [1000, 100, 1200, 480],  # pedestrian, matched by the zoom-out
                                 [600, 300, 640, 400]], np.float32),  # pedestrian, small
                       np.array([0.7, 0.4, 0.8, 0.35], np.float32), np.array([1, 0, 2, 2]))
    zoom = Detections(np.array([[90, 80, 900, 520], [990, 90, 1200, 490], [600, 300, 640, 400]], np.float32),
                      np.array([0.9, 0.6, 0.5], np.float32), np.array([1, 2, 2]))
    kept = zoom_superseded(pass1, zoom, scale, RefineConfig())
    assert kept.class_ids.tolist() == [0, 2, 2] and kept.scores.tolist() == pytest.approx([0.4, 0.8, 0.35])
    det, src = merge_passes(pass1, np.zeros((0, 4), np.int32), [], FRAME, scale, RefineConfig(), 0.7, 100, zoom)
    assert sorted(det.class_ids.tolist()) == [0, 1, 2, 2]
    truck = int(np.flatnonzero(det.class_ids == 1)[0])
    assert src[truck] == 1 and det.scores[truck] == pytest.approx(0.9)  # len(regions) + 1: the zoom-out
    np.testing.assert_allclose(det.boxes[truck], [90, 80, 900, 520])
    tall = (det.class_ids == 2) & (det.boxes[:, 3] - det.boxes[:, 1] > 300)  # pass 1's and the zoom-out's, fused
    expected = (np.array([1000, 100, 1200, 480]) * 0.8 + np.array([990, 90, 1200, 490]) * 0.6) / 1.4
    np.testing.assert_allclose(det.boxes[tall], [expected], atol=1e-3)
    small = det.boxes[:, 3] - det.boxes[:, 1] == 100
    np.testing.assert_allclose(det.boxes[small], [[600, 300, 640, 400]])
    assert det.scores[small] == pytest.approx([0.35])  # pass 1's alone: the zoom-out's small box did not join


def test_merge_fuses_same_class_across_scales_and_keeps_other_classes() -> None:
    coarse = Detections(np.array([[100, 100, 140, 140], [500, 500, 520, 520]], np.float32),
                        np.array([0.4, 0.5], np.float32), np.array([0, 1]))
    fine = Detections(np.array([[102, 100, 142, 140], [101, 100, 141, 140], [300, 300, 310, 320]], np.float32),
                      np.array([0.8, 0.6, 0.7], np.float32), np.array([0, 2, 0]))
    fused, src = merge_detections([coarse, fine], fuse_iou=0.55, max_det=10)
    assert len(fused) == 4  # the class-0 pair fuses; class 2 at the same place stays; two others stay
    k = int(np.argmax(fused.scores))
    assert fused.scores[k] == pytest.approx(0.8) and fused.class_ids[k] == 0 and src[k] == 1
    expected = (np.array([100, 100, 140, 140]) * 0.4 + np.array([102, 100, 142, 140]) * 0.8) / 1.2
    np.testing.assert_allclose(fused.boxes[k], expected, atol=1e-4)
    assert sorted(fused.class_ids.tolist()) == [0, 0, 1, 2]
    assert (np.diff(fused.scores) <= 0).all()
    assert len(merge_detections([coarse, fine], 0.55, max_det=2)[0]) == 2
    assert len(merge_detections([Detections(), Detections()], 0.55, 5)[0]) == 0


# -- end to end with a tiny network --------------------------------------------------------------------------
def _frames(n: int, h: int = 180, w: int = 320) -> list[FrameInput]:
    rng = np.random.default_rng(3)
    return [FrameInput("cam", rng.integers(0, 255, (h, w, 3), np.uint8), 0.1 * i) for i in range(n)]


EAGER = RefineConfig(min_attention=0.0, relative_threshold=0.0, min_gain=0.0, small_score=1.1, max_regions=3)


def _check_two_pass(backend: Backend) -> list[RefinedResult]:
    plain = Perceptor(backend, PerceptorConfig(score_thresh=0.0, max_det=30))
    two = RefiningPerceptor(backend, PerceptorConfig(score_thresh=0.0, max_det=30), EAGER)
    out: list[RefinedResult] = []
    for f in _frames(3):
        a, b = plain.process(f), two.process(f)
        assert isinstance(b, RefinedResult) and b.refinement is not None
        info = b.refinement
        assert 1 <= len(info.regions) <= 3 and info.reason == "refined"
        assert ((info.regions[:, 2] - info.regions[:, 0]) == 128).all()  # native crops of the 64x128 input
        assert info.pixels_processed == 64 * 128 * (1 + len(info.regions)) and info.full_pixels == 180 * 320
        # pass 1 is the plain Perceptor: same attention, same memory (the crops never touch the camera's state)
        assert a.attention is not None and b.attention is not None
        np.testing.assert_allclose(a.attention, b.attention, atol=1e-5)
        assert b.segmentation is not None and b.segmentation.shape == (180, 320)
        for k, v in plain.state("cam").items():
            np.testing.assert_allclose(v, two.state("cam")[k], atol=1e-5)
        assert len(b.detections) <= 30 and b.detections.attention is not None
        boxes = b.detections.boxes
        assert (boxes[:, [0, 2]] <= 320 + 1e-3).all() and (boxes[:, [1, 3]] <= 180 + 1e-3).all()
        cls = b.detections.class_ids  # one vehicle, one class: no car box over a truck box across the passes either
        iou = iou_matrix(boxes[cls == 0], boxes[cls == 1])
        assert not (iou > PerceptorConfig().vehicle_nms_iou).any()
        assert {"refine_plan", "refine_infer", "refine_merge"} <= set(b.timings_ms)
        stages = ("preprocess", "infer", "postprocess", "refine_plan", "refine_infer", "refine_merge")
        assert b.total_ms == pytest.approx(sum(b.timings_ms[k] for k in stages))
        out.append(b)
    assert two.totals["frames"] == 3 and 0 < two.pixel_ratio < 1
    assert float(two.diagnostics()["refine.pixel_ratio"]) == pytest.approx(two.pixel_ratio, abs=1e-3)
    assert two.diagnostics("cam") == two.diagnostics() and two.diagnostics("other")["refine.pixel_ratio"] == "0.000"
    return out


@pytest.fixture(scope="module")
def tiny_torch() -> TorchBackend:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    b = TorchBackend(build_tiny(), (64, 128))
    b.load()
    return b


def build_tiny() -> torch.nn.Module:
    from perception.models.registry import build_model

    torch.manual_seed(0)
    return build_model("stan_tiny_temporal")


def test_two_pass_through_torch(tiny_torch: TorchBackend) -> None:
    _check_two_pass(tiny_torch)
    # refinement off: the plain Perceptor's detections, no regions
    off = RefiningPerceptor(tiny_torch, PerceptorConfig(score_thresh=0.0), RefineConfig(enabled=False))
    plain = Perceptor(tiny_torch, PerceptorConfig(score_thresh=0.0))
    f = _frames(1)[0]
    r, p = off.process(f), plain.process(f)
    assert isinstance(r, RefinedResult) and r.refinement is not None and len(r.refinement.regions) == 0
    np.testing.assert_allclose(r.detections.boxes, p.detections.boxes)


def test_zoom_out_pass_through_torch(tiny_torch: TorchBackend) -> None:
    """A large candidate in pass 1 (the tiny network's boxes at least 8 network pixels tall) calls the zoom-out: it
    runs before the crops, one more pass besides them, is counted in the pixels and /diagnostics, and its boxes land
    inside the frame; a plain Perceptor reports no candidate (no probe)."""
    cfg = PerceptorConfig(score_thresh=0.0, max_det=30)
    zoomy = replace(EAGER, large_size=8.0, large_score=0.01)
    two = RefiningPerceptor(tiny_torch, cfg, zoomy)
    assert two.tall_probe == (0.01, 8.0)
    for f in _frames(2):
        assert Perceptor(tiny_torch, cfg).process(f).tall_score == 0.0
        r = two.process(f)
        assert isinstance(r, RefinedResult) and r.refinement is not None and r.tall_score >= 0.01
        info = r.refinement
        assert info.zoom_out and 1 <= len(info.regions) <= EAGER.max_regions
        assert info.pixels_processed == 64 * 128 * (2 + len(info.regions))
        b = r.detections.boxes
        assert (b >= 0).all() and (b[:, [0, 2]] <= 320 + 1e-3).all() and (b[:, [1, 3]] <= 180 + 1e-3).all()
    assert two.totals["zoom_out"] == 2 and two.diagnostics()["refine.zoom_out_per_frame"] == "1.00"
    off = RefiningPerceptor(tiny_torch, cfg, replace(zoomy, zoom_out=0.0))
    r = off.process(_frames(1)[0])
    assert off.tall_probe is None and r.refinement is not None and not r.refinement.zoom_out
    assert off.diagnostics()["refine.zoom_out_per_frame"] == "0.00"


def test_two_pass_through_onnxruntime_matches_torch(tiny_checkpoint: Path, tmp_path: Path,
                                                    tiny_torch: TorchBackend) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from perception.deploy.export import export_checkpoint
    from perception.runtime.onnx_backend import OnnxRuntimeBackend

    onnx_path = tmp_path / "tiny.onnx"
    export_checkpoint(tiny_checkpoint, onnx_path, max_batch=4)
    torch_backend = TorchBackend(tiny_checkpoint, (64, 128))
    with OnnxRuntimeBackend(onnx_path) as ort, torch_backend:
        got, ref = _check_two_pass(ort), _check_two_pass(torch_backend)
    for g, r in zip(got, ref):
        assert g.refinement is not None and r.refinement is not None
        np.testing.assert_array_equal(g.refinement.regions, r.refinement.regions)
        assert len(g.detections) == len(r.detections)
        np.testing.assert_allclose(g.detections.boxes, r.detections.boxes, atol=1e-2)


def test_refine_config_is_validated() -> None:
    with pytest.raises(RefineError, match="max_regions"):
        RefineConfig(max_regions=-1)
    with pytest.raises(RefineError, match="crop_scale"):
        RefineConfig(crop_scale=0.0)
    for bad in (-0.5, -2.0, float("nan"), float("inf"), 2e6):
        with pytest.raises(RefineError, match="deadline_ms"):
            RefineConfig(deadline_ms=bad)


def test_frame_period_and_crops_that_fit() -> None:
    """The camera's period is the median of its recent intervals; a loop (negative) or a jump (> 2 s) is no
    period; crops fit while their time does."""
    assert frame_period([0.1, 0.1, 0.5, -3.0, 30.0]) == pytest.approx(0.1)
    assert frame_period([]) is None and frame_period([-1.0, 0.0, 5.0]) is None
    assert crops_that_fit(0.1, 0.03, 4) == 3 and crops_that_fit(0.1, 0.03, 2) == 2
    assert crops_that_fit(0.02, 0.03, 4) == 0 and crops_that_fit(-1.0, 0.03, 4) == 0 and crops_that_fit(1, 0, 0) == 0


class _SlowBackend:
    """A real backend whose every call takes ``delay`` seconds longer (a slow CPU, for the deadline)."""

    def __init__(self, inner: Any, delay: float) -> None:
        self._inner, self.delay = inner, delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def infer(self, inputs: Any, skip: frozenset[str] = frozenset()) -> Any:
        time.sleep(self.delay)
        return self._inner.infer(inputs, skip)


def test_the_deadline_leaves_out_the_least_needed_crops(tiny_checkpoint: Path) -> None:
    """refine.deadline_ms: with no deadline every planned crop runs; with the camera's period (-1) learnt from
    its stamps, a camera faster than pass 1 + a crop gets pass 1 only (reason "deadline", counted in
    /diagnostics), a slow one every crop; the crops that run are the plan's first."""
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 255, (256, 512, 3), dtype=np.uint8)
    base = RefineConfig(max_regions=2, min_gain=0.0, relative_threshold=0.0, min_attention=0.0, policy="uniform")
    with TorchBackend(tiny_checkpoint, (64, 128)) as inner:
        slow = _SlowBackend(inner, 0.05)
        free = RefiningPerceptor(slow, PerceptorConfig(), base)  # type: ignore[arg-type]
        r = free.process(FrameInput("c", frame, 0.0))
        assert len(r.refinement.regions) == 2 and free.totals["deadline_cut"] == 0
        for period, crops in ((0.06, 0), (1.0, 2)):  # 60 ms: pass 1 alone takes 50; 1 s: room for both crops
            p = RefiningPerceptor(slow, PerceptorConfig(), replace(base, deadline_ms=-1.0))  # type: ignore[arg-type]
            for k in range(4):
                r = p.process(FrameInput("c", frame, k * period))
            assert len(r.refinement.regions) == crops, period
            if crops == 0:
                assert r.refinement.reason == "deadline" and p.totals["deadline_cut"] >= 2
                assert float(p.diagnostics()["refine.deadline_cut_per_frame"]) > 0
        # a node that drops frames passes the steps it RECEIVED: the camera's 60 ms, not the 1 s between the frames
        # it processed (that would be its own rate, which the crops slow down)
        p = RefiningPerceptor(slow, PerceptorConfig(), replace(base, deadline_ms=-1.0))  # type: ignore[arg-type]
        for k in range(4):
            r = p.process(FrameInput("c", frame, float(k), received=StreamSteps(0.06, 0.12)))
        assert len(r.refinement.regions) == 0 and r.refinement.reason == "deadline"
        slower = _SlowBackend(inner, 0.2)  # a fixed deadline of 500 ms: pass 1 (~200 ms) and one crop fit, not two
        fixed = RefiningPerceptor(slower, PerceptorConfig(), replace(base, deadline_ms=500.0))  # type: ignore[arg-type]
        tiles = [fixed.process(FrameInput("c", frame, 0.0)).refinement.regions for _ in range(2)]
        assert [len(t) for t in tiles] == [1, 1] and fixed.totals["deadline_cut"] == 2
        assert not np.array_equal(tiles[0], tiles[1])  # the round robin goes on from the tile left out



# -- wiring: node parameters, replay, eval ------------------------------------------------------------------
def test_node_parameters_build_a_refining_perceptor() -> None:
    from perception.ros.nodes.engine import build_perceptor, release_perceptor
    from perception.ros.nodes.params import node_config

    base = {"model.name": "stan_tiny_temporal", "model.allow_untrained": True, "model.backend": "torch",
            "model.input_height": 64, "model.input_width": 128, "model.threads": 1}
    default = node_config(base).refine  # on by default, 2 crops, within the camera's frame period
    assert default.enabled and default.max_regions == 2 and default.deadline_ms == -1.0
    off = {**base, "refine.enabled": False}
    cfg = node_config({**base, "refine.max_regions": 3, "refine.max_pixels": 40000, "refine.deadline_ms": 50.0,
                       "max_batch": 1, "detection.vehicle_nms_iou": 0.5})
    assert cfg.refine.max_regions == 3 and cfg.refine.max_pixels == 40000 and cfg.refine.deadline_ms == 50.0
    p = build_perceptor(cfg)
    try:
        assert isinstance(p, RefiningPerceptor) and p.refine.batch == 1 and p.refine.max_regions == 3
        assert p.config.vehicle_nms_iou == 0.5 and p._crops.config.vehicle_nms_iou == 0.5  # pass 1, crops, merge
        assert not isinstance(build_perceptor(node_config(off)), RefiningPerceptor)
    finally:
        release_perceptor(p)
    # a deadline between -1 and 0 passes the table's range but not RefineConfig: a configure error, not a crash
    from perception.ros.errors import RosError

    with pytest.raises(RosError, match=r"refine\.deadline_ms = -0\.5 is out of range"):
        node_config({**base, "refine.deadline_ms": -0.5})
    assert default.zoom_out == 0.5 and node_config({**base, "refine.zoom_out": 0.0}).refine.zoom_out == 0.0
    with pytest.raises(RosError, match=r"refine\.zoom_out = 0\.05 is out of range"):
        node_config({**base, "refine.zoom_out": 0.05})


def test_replay_passes_refinement_to_the_node() -> None:
    from perception.ros.tools.replay import node_params

    on = node_params(["cam"], "raw", "image_raw", {"extra": {"refine.enabled": True, "refine.max_regions": 2}})
    assert on["refine.enabled"] is True and on["refine.max_regions"] == 2


def test_replay_refine_option() -> None:
    """`perception replay --refine K`: absent, the node's defaults; 0, one pass; K, K crops. --deterministic runs
    every planned crop (no deadline), so outputs do not depend on how busy the machine is."""
    import argparse

    from perception.core.config import crops_arg
    from perception.ros.tools.replay import refine_params

    assert refine_params(None) == {}
    assert refine_params(None, True) == {"refine.deadline_ms": 0.0}
    assert refine_params(0) == {"refine.enabled": False}
    assert refine_params(3, True) == {"refine.deadline_ms": 0.0, "refine.enabled": True, "refine.max_regions": 3}
    assert crops_arg("0") == 0 and crops_arg("64") == 64
    for bad in ("-1", "65", "two", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            crops_arg(bad)


def test_eval_refine_flag(tiny_checkpoint: Path, tmp_path: Path) -> None:
    import argparse
    import json

    from perception.eval import cli as eval_cli

    def run(*extra: str) -> dict[str, object]:
        parser = argparse.ArgumentParser()
        eval_cli.add_arguments(parser)
        out = tmp_path / ("on" if extra else "off")
        args = parser.parse_args(["--checkpoint", str(tiny_checkpoint), "--seeds", "1000:1001", "--frames", "2",
                                  "--width", "320", "--height", "180", "--cache-dir", str(tmp_path / "cache"),
                                  "--out", str(out), "--no-progress", *extra])
        assert eval_cli.main(args) == 0
        return dict(next(iter(json.loads((out / "comparison.json").read_text()).values())))

    off, on = run(), run("--refine", "--refine-max-regions", "2")
    assert "refine" not in off and off["eval_config"]["refine"] is None  # type: ignore[index]
    ref = on["refine"]
    assert isinstance(ref, dict) and ref["frames"] == 2 and ref["regions"] <= 4
    assert ref["pixels_processed"] == 64 * 128 * (2 + ref["regions"]) and ref["full_pixels"] == 2 * 180 * 320
    assert on["eval_config"]["refine"]["max_regions"] == 2  # type: ignore[index]


def test_demo_overlay_outlines_the_refined_regions(tiny_torch: TorchBackend) -> None:
    from perception.demo import panel
    from perception.pipeline.refine import draw_regions

    img = np.zeros((40, 60, 3), np.uint8)
    drawn = draw_regions(img, np.array([[10, 5, 30, 25]]), thickness=1)
    assert (drawn[5, 10:30] == (0, 255, 255)).all() and (drawn[24, 10:30] == (0, 255, 255)).all()
    assert not drawn[15, 20].any() and not img.any()  # inside untouched, input not modified
    two = RefiningPerceptor(tiny_torch, PerceptorConfig(score_thresh=0.0), EAGER)
    f = _frames(1)[0]
    r = two.process(f)
    assert isinstance(r, RefinedResult) and r.refinement is not None and len(r.refinement.regions)
    plain = replace(r, refinement=None)
    assert panel(f.rgb, r).shape == panel(f.rgb, plain).shape and (panel(f.rgb, r) != panel(f.rgb, plain)).any()


def test_cameras_batched_together_match_one_by_one(tiny_torch: TorchBackend) -> None:
    cfg = PerceptorConfig(score_thresh=0.0, max_det=30)
    batched, single = RefiningPerceptor(tiny_torch, cfg, EAGER), RefiningPerceptor(tiny_torch, cfg, EAGER)
    rng = np.random.default_rng(5)
    frames = [FrameInput(c, rng.integers(0, 255, (180, 320, 3), np.uint8), 0.0) for c in ("left", "right")]
    together = batched.process_batch(frames)
    for f, r in zip(frames, together):
        alone = single.process(f)
        assert isinstance(r, RefinedResult) and isinstance(alone, RefinedResult) and r.camera_id == f.camera_id
        assert r.refinement is not None and alone.refinement is not None
        np.testing.assert_array_equal(r.refinement.regions, alone.refinement.regions)
        np.testing.assert_allclose(r.detections.boxes, alone.detections.boxes, atol=1e-3)
    assert set(batched.camera_totals) == {"left", "right"} and batched.totals["frames"] == 2


def test_the_zoom_out_finds_a_car_filling_the_frame() -> None:
    """Real image, shipped network: a car 410 of 482 px tall (326 network pixels: past the largest size the
    300x300-trained trunk scores) is missed by one pass; the node's refinement calls the zoom-out on pass 1's weak
    large candidate and finds it at half the scale."""
    import json

    import cv2

    from perception.footage import data_dir
    from perception.models.checkpoint import checkpoint_input_size
    from perception.pipeline.refine import NODE_REFINE
    from perception.weights import resolve_checkpoint

    name = "ocvdoc_licenseplate_motion.jpg"
    bgr = cv2.imread(str(data_dir() / "real_val" / name), cv2.IMREAD_COLOR)
    if bgr is None:
        pytest.skip(f"{data_dir() / 'real_val' / name} absent: run `make data`")
    labels = json.loads((Path(__file__).resolve().parents[1] / "data" / "real_val" / "labels.json").read_text())
    car = np.array([o["box"] for im in labels["images"] if im["file"] == name for o in im["objects"]], np.float32)
    frame = FrameInput("c", np.ascontiguousarray(bgr[:, :, ::-1]), 0.0, scene_cut=True)
    ckpt = resolve_checkpoint("stan_mbv2")

    def best_iou(det: Detections) -> float:
        cars = det.boxes[det.class_ids == 0]
        return float(iou_matrix(car, cars).max()) if len(cars) else 0.0

    with TorchBackend(ckpt, checkpoint_input_size(ckpt)) as backend:
        one = Perceptor(backend, PerceptorConfig(segmentation=False)).process(frame)
        two = RefiningPerceptor(backend, PerceptorConfig(segmentation=False), replace(NODE_REFINE, deadline_ms=0.0))
        r = two.process(frame)
    assert best_iou(one.detections) < 0.5
    assert isinstance(r, RefinedResult) and r.refinement is not None and r.refinement.zoom_out
    assert best_iou(r.detections) >= 0.5, r.detections
