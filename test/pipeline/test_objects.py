"""The object pipeline (fusion + tracking) on a tiny rendered drive, with ground-truth 2D boxes and
masks standing in for the network: 3D objects, stable track ids, resets, the camera-only fallback."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from perception.core.temporal import ResetReason
from perception.eval.metrics3d import detection_metrics
from perception.eval.objects import (
    ObjectDrive,
    ObjectsEvalConfig,
    evaluate_objects,
    ground_truth_result,
    gt_boxes,
    loss_causes,
    markdown,
    predicted_boxes,
    render_drive,
)
from perception.eval.track_groundtruth import predicted_frame
from perception.eval.tracking import evaluate_tracking
from perception.pipeline.objects import ObjectFrame, ObjectPipeline
from perception.pipeline.perceptor import PerceptionResult, PipelineError

FRAMES = 14


@pytest.fixture(scope="module")
def drive() -> ObjectDrive:
    return render_drive(0, ObjectsEvalConfig(frames=FRAMES, width=320, height=192))


def perception(drive: ObjectDrive, t: int, stamp: float | None = None,
               reset: ResetReason = ResetReason.NONE) -> PerceptionResult:  # fmt: skip
    """The 2D stage played by the ground truth: every fusable, non-ignored box, score 0.9."""
    r = ground_truth_result(drive.frames[t])
    return dataclasses.replace(r, stamp=r.stamp if stamp is None else stamp, reset=reset)


def run(drive: ObjectDrive, pipeline: ObjectPipeline, lidar: bool = True) -> list[ObjectFrame]:
    return [pipeline.process(perception(drive, t), drive.frames[t].lidar if lidar else None,
                             drive.frames[t].intrinsics, drive.extrinsics[t], drive.gt[t].odom_T_base)
            for t in range(len(drive))]  # fmt: skip


def test_objects_and_tracks_follow_the_ground_truth(drive: ObjectDrive) -> None:
    out = run(drive, ObjectPipeline(session="test"))
    assert out[0].reset is ResetReason.FIRST_FRAME and all(o.reset is ResetReason.NONE for o in out[1:])
    assert all(o.lidar for o in out)
    n_obj = sum(len(o.objects) for o in out)
    assert n_obj >= 2 * FRAMES and sum((o.objects.sources == "lidar").sum() for o in out) >= 0.8 * n_obj
    # 3D detection: the fused objects are where the ground truth is (AP at 2 m of the boxes the camera saw)
    det = detection_metrics([gt_boxes(g) for g in drive.gt], [predicted_boxes(o.objects) for o in out],
                            {0: "car", 2: "pedestrian"})  # fmt: skip
    assert det["per_class"]["car"]["AP@2m"] > 0.7, det  # 0.78: some cars at 40-50 m miss
    assert det["per_class"]["car"]["ATE"] < 0.5, det
    # with the ground truth as the 2D stage nothing is lost there; most objects are found within 2 m
    causes = [c for t, o in enumerate(out)
              for _, c in loss_causes(o.objects, perception(drive, t).detections, drive.frames[t],
                                      gt_boxes(drive.gt[t]), drive.gt[t])]  # fmt: skip
    assert len(causes) >= 2 * FRAMES and "no_2d" not in causes and causes.count("found") >= 0.8 * len(causes)
    # tracks: confirmed from the third frame on, one identity per object
    assert not out[0].tracks and not out[1].tracks and len(out[-1].tracks) >= 2
    m = evaluate_tracking([g.track_frame() for g in drive.gt], [predicted_frame(o.tracks) for o in out])
    assert m.id_switches == 0 and m.idf1 > 0.7 and m.mota > 0.6, m.summary()
    assert {"fusion", "tracking", "total", "fusion.crop", "fusion.cluster"} <= set(out[-1].timings_ms)
    assert all(o.timings_ms["total"] >= o.timings_ms["fusion"] for o in out)
    # objects no LiDAR cluster answered, though a scan was there, are discounted (weak evidence)
    for o in out:
        d = o.objects.detection_index >= 0  # LiDAR-only objects (-1: clusters no detection claimed) score less
        np.testing.assert_allclose(o.objects.scores[d], np.where(o.objects.sources[d] == "camera", 0.45, 0.9),
                                   rtol=1e-6)  # fmt: skip
        assert (o.objects.scores[~d] <= 0.3 + 1e-6).all() and (o.objects.sources[~d] == "lidar").all()
    # the tracks point back at the 2D detections that updated them (Detection2D.id for camera-only users)
    assert all(0 <= trk.index_2d < len(perception(drive, FRAMES - 1).detections) for trk in out[-1].tracks
               if trk.time_since_update == 0)  # fmt: skip


def test_camera_only_fallback_without_a_scan(drive: ObjectDrive) -> None:
    out = run(drive, ObjectPipeline(session="cam"), lidar=False)
    assert not any(o.lidar for o in out)
    assert all(set(o.objects.sources.tolist()) <= {"camera"} for o in out)
    assert all(np.allclose(o.objects.scores, 0.9) for o in out)  # without a scan the camera is all there is
    assert sum(len(o.objects) for o in out) >= 2 * FRAMES and len(out[-1].tracks) >= 1
    det = detection_metrics([gt_boxes(g) for g in drive.gt], [predicted_boxes(o.objects) for o in out], {0: "car"})
    assert det["per_class"]["car"]["AP@4m"] > 0.5, det


def test_tracks_reset_on_cuts_and_time_jumps(drive: ObjectDrive) -> None:
    p = ObjectPipeline(session="reset")
    run(drive, p)
    last = len(drive) - 1
    assert any(t.confirmed for t in p.tracker.tracks), "the drive left confirmed tracks"

    def step(t: int, stamp: float, reset: ResetReason = ResetReason.NONE) -> ObjectFrame:
        return p.process(perception(drive, t, stamp, reset), drive.frames[t].lidar, drive.frames[t].intrinsics,
                         drive.extrinsics[t], drive.gt[t].odom_T_base)  # fmt: skip

    # the 2D stage saw a scene cut: the tracks go with it (no confirmed track right after)
    out = step(last, drive.gt[last].stamp + 0.1, ResetReason.SCENE_CUT)
    assert out.reset is ResetReason.SCENE_CUT and out.tracks == []
    assert p.tracker.tracks and all(t.hits == 1 and not t.confirmed for t in p.tracker.tracks)  # all newborn
    # time going backwards (a bag loop) resets instead of failing in the tracker
    assert step(0, 0.0).reset is ResetReason.TIME_BACKWARDS
    assert step(1, 0.1).reset is ResetReason.NONE
    assert step(2, 5.0).reset is ResetReason.TIME_JUMP
    assert min(t.track_id for t in p.tracker.tracks) == 1  # ids restarted with the tracker


def test_degenerate_fits_give_no_object(drive: ObjectDrive, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fit with a non-finite centre is dropped by fusion (the box type refuses NaN): the frame's other
    objects still come out, unchanged, and reach the tracker."""
    from perception.fusion import fuser

    frame, ext, g = drive.frames[0], drive.extrinsics[0], drive.gt[0]
    clean = ObjectPipeline().process(perception(drive, 0), None, frame.intrinsics, ext, g.odom_T_base)
    assert len(clean.objects) >= 2
    bad = int(clean.objects.detection_index[0])
    real = fuser.camera_object

    def degenerate(box: np.ndarray, *args: Any, **kw: Any) -> Any:
        obj = real(box, *args, **kw)
        if obj is not None and np.array_equal(box, perception(drive, 0).detections.boxes[bad]):
            return dataclasses.replace(obj, center=np.array([np.nan, 0.0, 0.0]))
        return obj

    monkeypatch.setattr(fuser, "camera_object", degenerate)
    out = ObjectPipeline().process(perception(drive, 0), None, frame.intrinsics, ext, g.odom_T_base)
    keep = clean.objects.detection_index != bad
    assert out.objects.detection_index.tolist() == clean.objects.detection_index[keep].tolist()
    np.testing.assert_array_equal(out.objects.centers, clean.objects.centers[keep])


def test_bad_inputs_are_rejected(drive: ObjectDrive) -> None:
    p = ObjectPipeline()
    r = perception(drive, 0)
    f = drive.frames[0]
    with pytest.raises(PipelineError, match="odom_T_base"):
        p.process(r, f.lidar, f.intrinsics, drive.extrinsics[0], np.eye(3))
    with pytest.raises(PipelineError, match="segmentation"):
        p.process(dataclasses.replace(r, segmentation=np.zeros((2, 2, 2), np.uint8)), f.lidar, f.intrinsics,
                  drive.extrinsics[0], np.eye(4))  # fmt: skip


def test_objects_evaluation_reports_amota(drive: ObjectDrive) -> None:
    """`perception eval --objects3d`'s figures on the drive with the ground truth as the 2D stage: AMOTA
    per class (nuScenes) and their mean, next to IDF1 / MOTA, in the metrics and the report."""
    cfg = ObjectsEvalConfig(frames=FRAMES, width=320, height=192)
    m = evaluate_objects(None, [drive], cfg, progress=False)
    trk = m["tracking"]
    per_class = [r["AMOTA"] for name, r in trk.items() if name != "all"]
    assert per_class and all(0.0 <= a <= 1.0 for a in per_class)
    assert trk["all"]["AMOTA"] == pytest.approx(np.mean(per_class))
    assert trk["car"]["AMOTA"] > 0.5, trk["car"]  # ground-truth boxes: the cars are tracked well
    assert any("| AMOTA |" in line for line in markdown(m))


def test_a_bag_loop_restarts_the_tracks_without_huge_velocities(drive: ObjectDrive) -> None:
    """The drive played twice, as a looping bag does: time goes back while the 2D stage (here) did not
    say so. The tracker is reset (never fed a negative step, never bridging the jump of the ego pose),
    and the re-confirmed tracks move at the world's speeds, not at the jump's."""
    p = ObjectPipeline(session="loop")
    first = run(drive, p)
    second = run(drive, p)
    assert second[0].reset is ResetReason.TIME_BACKWARDS and second[0].tracks == []
    assert all(o.reset is ResetReason.NONE for o in second[1:])
    assert min(t.track_id for t in p.tracker.tracks) == 1  # ids restarted with the tracker
    for a, b in zip(first, second, strict=True):  # the same frames give the same tracks again
        assert [t.track_id for t in a.tracks] == [t.track_id for t in b.tracks]
        np.testing.assert_allclose([t.velocity for t in a.tracks], [t.velocity for t in b.tracks], atol=1e-9)
    speeds = [t.speed for o in second for t in o.tracks]
    assert speeds and max(speeds) < 20.0, max(speeds)  # the synthetic traffic drives at most ~15 m/s
