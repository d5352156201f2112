from __future__ import annotations

import numpy as np
import pytest

from perception.core.classes import DETECTION_NAMES, SEMANTIC_NAMES, semantic_id
from perception.core.types import Frame, GroundTruth
from perception.sim.config import SimConfig, SimError
from perception.sim.drive import generate_sequence, max_frames, render_frame
from perception.sim.events import occlusion_events

SMALL = SimConfig(width=160, height=96)  # as in conftest.py


def _same(a: Frame, b: Frame) -> bool:
    fields = ("boxes", "class_ids", "track_ids", "visibility", "amodal_boxes", "boxes3d", "ignore")
    return (
        np.array_equal(a.rgb, b.rgb)
        and np.array_equal(a.semantic, b.semantic)  # type: ignore[arg-type]
        and np.array_equal(a.instance, b.instance)  # type: ignore[arg-type]
        and np.array_equal(a.depth, b.depth)  # type: ignore[arg-type]
        and all(np.array_equal(getattr(a.gt, k), getattr(b.gt, k)) for k in fields)
        and a.stamp == b.stamp
    )


def test_same_seed_same_frames_and_start_frame_consistency(small_seq: list[Frame]) -> None:
    again = list(generate_sequence(0, 3, SMALL, start_frame=20))
    for f in again:
        assert _same(f, small_seq[f.index])
    assert [f.index for f in again] == [20, 21, 22]
    assert not again[0].scene_cut  # only frame 0 of a sequence starts a scene
    assert _same(render_frame(0, 7, SMALL), small_seq[7])


def test_degrade_is_deterministic_and_changes_only_the_image(small_seq: list[Frame]) -> None:
    cfg = SMALL.replace(degrade=True)
    a, b = render_frame(0, 4, cfg), render_frame(0, 4, cfg)
    assert np.array_equal(a.rgb, b.rgb)
    assert not np.array_equal(a.rgb, small_seq[4].rgb)
    assert np.array_equal(a.semantic, small_seq[4].semantic)  # type: ignore[arg-type]
    assert np.abs(a.rgb.astype(int) - small_seq[4].rgb.astype(int)).mean() < 25


def test_different_seeds_differ(small_seq: list[Frame]) -> None:
    other = render_frame(1, 0, SMALL)
    assert not np.array_equal(other.rgb, small_seq[0].rgb)
    assert other.sequence == 1 and small_seq[0].sequence == 0


def test_consecutive_frames_move(small_seq: list[Frame]) -> None:
    a, b = small_seq[0], small_seq[1]
    assert a.world_T_cam is not None and b.world_T_cam is not None
    step = np.linalg.norm(b.world_T_cam[:3, 3] - a.world_T_cam[:3, 3])
    assert 0.3 < step < 1.5  # ego speed 6..11 m/s at 10 fps (+ sway)
    assert not np.array_equal(a.rgb, b.rgb)


def test_classes_present_over_a_sequence(small_seq: list[Frame]) -> None:
    sem = np.zeros(len(SEMANTIC_NAMES), bool)
    det = np.zeros(len(DETECTION_NAMES), bool)
    for f in small_seq:
        assert f.semantic is not None
        sem[np.unique(f.semantic)] = True
        det[f.gt.class_ids] = True
    for name in ("sky", "road", "lane_marking", "sidewalk", "building", "vegetation", "pole", "car", "pedestrian"):
        assert sem[semantic_id(name)], name
    assert det[DETECTION_NAMES.index("car")] and det[DETECTION_NAMES.index("pedestrian")]
    assert det.sum() >= 4


def test_default_sequence_contains_occlusion_events(medium_seq: list[Frame]) -> None:
    gts = [f.gt for f in medium_seq]
    events = occlusion_events(gts)
    assert len(events) >= 2, events
    for e in events:
        assert e.visible_before < e.hidden_from < e.back_at
    # scored objects of every frame: many, with a spread of visibility
    scored = np.concatenate([g.visibility[~g.ignore] for g in gts])
    assert len(scored) / len(gts) >= 5
    assert (scored < 0.5).mean() > 0.05


def test_occlusion_event_detector_on_a_hand_made_track() -> None:
    def gt(vis: float | None, ignore: bool = False) -> GroundTruth:
        if vis is None:
            return GroundTruth()
        return GroundTruth(boxes=np.zeros((1, 4), np.float32), class_ids=np.zeros(1, np.int64),
                           track_ids=np.array([7]), visibility=np.array([vis], np.float32),
                           ignore=np.array([ignore]))  # fmt: skip

    seq = [gt(0.9), gt(0.6), gt(0.05, True), gt(None), gt(0.3), gt(0.8), gt(0.9)]
    events = occlusion_events(seq)
    assert [(e.track_id, e.visible_before, e.hidden_from, e.back_at) for e in events] == [(7, 1, 2, 5)]
    assert occlusion_events([gt(0.9), gt(0.2), gt(0.9)]) == []  # never below 0.1
    assert occlusion_events([gt(0.9, True), gt(None), gt(0.9, True)]) == []  # too small to count


def test_too_long_sequence_raises_with_advice() -> None:
    cfg = SMALL.replace(world_length_m=400.0)
    n = max_frames(0, cfg)
    assert n > 10
    with pytest.raises(SimError, match="world_length_m"):
        next(generate_sequence(0, n + 5, cfg))
