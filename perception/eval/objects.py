"""3D objects and tracking of a checkpoint on unseen synthetic drives (`perception eval --objects3d`).

Every frame of a drive rendered WITH the spinning LiDAR goes through the product's chain: the
``Perceptor`` (the network's 2D boxes and segmentation, temporal memory streamed) and the
:class:`~perception.pipeline.objects.ObjectPipeline` (fusion with the scan, then the tracker with
the ego pose). Scored against the world's ground truth:

- 3D detection: nuScenes-style centre-distance AP (0.5 / 1 / 2 / 4 m) per class and the true
  positives' ATE / ASE / AOE (:mod:`perception.eval.metrics3d`) of the fused objects in base_link.
  As in nuScenes, ground truth and predictions farther than the class's range (50 m vehicles, 40 m
  people) are left out; small / occluded ground truth is a don't-care. AOE is modulo 180 deg: a
  box fitted to one scan has no front and back.
- tracking: AMOTA (per class, nuScenes; "all" is their mean) / IDF1 / MOTA / ID switches and
  velocity error (:mod:`perception.eval.tracking`, 2 m)
  of the confirmed tracks in odom against ground-truth tracks (hidden objects: don't-care; the
  same class ranges, as nuScenes tracking applies them).
- the camera-only fallback: every 2D detection ranged from the camera alone (no scan); its range
  error (m, signed: positive = too far) by distance band, for detections matching a ground-truth
  box (2D IoU >= 0.5, same class group), plus its AP.
- milliseconds per frame of fusion + tracking (``perf_counter``; the machine may be shared).
- diagnosis: the confirmed tracks scored as detections too; where each ground-truth object is lost
  (no 2D detection, a LiDAR or camera object off by more than 2 m: :func:`loss_causes`); and the
  same drives with the ground-truth 2D boxes and mask as the 2D stage (``gt_2d``), an upper bound
  that separates the 2D detector's share of the errors from the fusion's and the tracker's.

The drives are rendered at every run (about 0.1-0.5 s a frame with the LiDAR), not cached.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perception.core.boxes import iou_matrix
from perception.core.boxes3d import Boxes3D
from perception.core.classes import DETECTION_NAMES
from perception.core.temporal import ResetReason
from perception.core.types import Detections, Frame
from perception.eval.metrics3d import detection_metrics
from perception.eval.track_groundtruth import GroundTruthFrame, predicted_frame, with_velocities
from perception.eval.tracking import TrackFrame, TrackingMetrics, amota, evaluate_tracking
from perception.fusion import Extrinsics, fuse
from perception.pipeline.objects import ObjectPipeline, ObjectPipelineConfig
from perception.pipeline.perceptor import FrameInput, PerceptionResult, Perceptor, PerceptorConfig
from perception.pipeline.refine import RefineConfig, RefiningPerceptor
from perception.runtime.base import Backend
from perception.tracking import TrackedObject

CLASS_RANGE: dict[int, float] = {0: 50.0, 1: 50.0, 2: 40.0, 3: 40.0}  # nuScenes class ranges: car, truck, ped, cyclist
BANDS: tuple[tuple[float, float], ...] = ((0.0, 20.0), (20.0, 40.0), (40.0, 80.0))
_GROUP = {0: 0, 1: 0, 2: 2, 3: 3}  # 2D class groups for the camera-only association (car <-> truck)
ID_STRIDE = 1_000_000  # track ids of drive k are offset by k * ID_STRIDE: drives never share an identity


@dataclass(frozen=True)
class ObjectsEvalConfig:
    """Drives ``seeds`` [first, last) of ``frames`` frames at ``width`` x ``height`` with a
    ``lidar_beams``-beam LiDAR; the 2D stage keeps boxes scoring ``score_thresh`` or more (the
    tracker's low score: its second association stage and the AP curve need the low ones)."""

    seeds: tuple[int, int] = (1000, 1004)
    frames: int = 40
    width: int = 448
    height: int = 256
    lidar_beams: int = 32
    score_thresh: float = 0.1
    track_threshold: float = 2.0
    pipeline: ObjectPipelineConfig = dataclasses.field(default_factory=ObjectPipelineConfig)
    refine: RefineConfig | None = None  # the 2D stage with attention-guided refinement (None: one pass)

    def as_dict(self) -> dict[str, Any]:
        return {"seeds": list(self.seeds), "frames": self.frames, "size": [self.height, self.width],
                "lidar_beams": self.lidar_beams, "score_thresh": self.score_thresh,
                "refine": None if self.refine is None else dataclasses.asdict(self.refine),
                "class_range_m": {DETECTION_NAMES[k]: v for k, v in CLASS_RANGE.items()}}  # fmt: skip


@dataclass(frozen=True)
class ObjectDrive:
    """A rendered drive with what the 3D evaluation needs: frames (rgb, mask, scan, 2D ground truth),
    per frame the extrinsics and the ground-truth objects in odom (with velocities)."""

    seed: int
    frames: tuple[Frame, ...]
    extrinsics: tuple[Extrinsics, ...]
    gt: tuple[GroundTruthFrame, ...]

    def __len__(self) -> int:
        return len(self.frames)


def render_drive(seed: int, cfg: ObjectsEvalConfig) -> ObjectDrive:
    """Frames 0 .. ``cfg.frames`` - 1 of drive ``seed`` with the LiDAR (depth, instance ids and point
    labels are dropped to keep memory low)."""
    from perception.eval.track_cli import frame_ground_truth
    from perception.sim.config import SimConfig
    from perception.sim.drive import frame_at, get_world
    from perception.sim.world import ego_pose

    world = get_world(seed, SimConfig(width=cfg.width, height=cfg.height, lidar=True, lidar_beams=cfg.lidar_beams))
    frames, exts, gts = [], [], []
    for i in range(cfg.frames):
        f, _ = frame_at(world, i)
        assert f.world_T_lidar is not None and f.world_T_cam is not None
        exts.append(Extrinsics.from_frames(ego_pose(world, f.stamp, 0.0), f.world_T_lidar, f.world_T_cam))
        gts.append(frame_ground_truth(world, i, f, max(CLASS_RANGE.values())))
        frames.append(dataclasses.replace(f, depth=None, instance=None, lidar_labels=None))
    return ObjectDrive(seed, tuple(frames), tuple(exts), tuple(with_velocities(gts)))


def load_drives(cfg: ObjectsEvalConfig) -> list[ObjectDrive]:
    return [render_drive(s, cfg) for s in range(*cfg.seeds)]


def _class_range(classes: np.ndarray) -> np.ndarray:
    return np.array([CLASS_RANGE.get(int(c), 0.0) for c in classes], np.float64).reshape(-1)


def gt_boxes(g: GroundTruthFrame) -> Boxes3D:
    """Ground truth of one frame in base_link; beyond its class range or marked ignore: don't-care."""
    base_T_odom = np.linalg.inv(g.odom_T_base)
    centers = g.centers @ base_T_odom[:3, :3].T + base_T_odom[:3, 3]
    yaws = g.yaws + np.arctan2(base_T_odom[1, 0], base_T_odom[0, 0])
    far = np.linalg.norm(centers[:, :2], axis=1) > _class_range(g.classes)
    return Boxes3D(class_ids=g.classes, centers=centers, sizes=g.sizes, yaws=yaws, ignore=g.ignore | far)


def predicted_boxes(objects: Boxes3D) -> Boxes3D:
    """Fused objects (base_link) within their class range."""
    rng = np.linalg.norm(objects.centers[:, :2], axis=1)
    return objects.select(rng <= _class_range(objects.class_ids))


def track_boxes(tracks: Sequence[TrackedObject], odom_T_base: np.ndarray) -> Boxes3D:  # noqa: N803
    """Confirmed tracks (odom) as base_link boxes within their class range, scored by existence
    probability times class probability (what a planner would threshold)."""
    if not tracks:
        return Boxes3D.empty()
    base_T_odom = np.linalg.inv(odom_T_base)
    objs = [t.transformed(base_T_odom, "base_link") for t in tracks]
    classes = np.array([o.class_id for o in objs], np.int64)
    centers = np.array([o.position for o in objs])
    keep = np.linalg.norm(centers[:, :2], axis=1) <= _class_range(classes)
    scores = np.array([o.existence_probability * o.class_probability for o in objs])
    return Boxes3D(class_ids=classes, centers=centers, sizes=np.array([o.dimensions for o in objs]),
                   yaws=np.array([o.yaw for o in objs]), scores=scores).select(keep)  # fmt: skip


def camera_range_errors(objects: Boxes3D, detections: Detections, frame: Frame, g: GroundTruthFrame,
                        ext: Extrinsics, iou: float = 0.5) -> list[tuple[float, float]]:  # fmt: skip
    """(ground-truth range, signed range error) from the camera of each camera-only object whose 2D
    detection matches a non-ignored ground-truth box (IoU >= ``iou``, class group, greedy by score)."""
    gt2d = frame.gt
    if not len(objects) or not len(gt2d):
        return []
    ious = iou_matrix(detections.boxes[objects.detection_index], gt2d.boxes)
    det_g = np.array([_GROUP.get(int(c), -1) for c in objects.class_ids])
    gt_g = np.array([_GROUP.get(int(c), -2) for c in gt2d.class_ids])
    ious = np.where((det_g[:, None] == gt_g[None]) & ~gt2d.ignore[None], ious, 0.0)
    index = {int(t): k for k, t in enumerate(g.ids)}
    base_T_odom = np.linalg.inv(g.odom_T_base)
    cam_xy = ext.base_T_cam[:2, 3]
    used: set[int] = set()
    out = []
    for k in np.argsort(-objects.scores, kind="stable"):
        j = int(np.argmax(ious[k])) if ious.shape[1] else -1
        if j < 0 or ious[k, j] < iou or j in used or (row := index.get(int(gt2d.track_ids[j]))) is None:
            continue
        used.add(j)
        gt_xy = (base_T_odom[:3, :3] @ g.centers[row] + base_T_odom[:3, 3])[:2]
        rng = float(np.linalg.norm(gt_xy - cam_xy))
        out.append((rng, float(np.linalg.norm(objects.centers[k, :2] - cam_xy)) - rng))
    return out


CAUSES = ("found", "no_2d", "lidar_off", "camera_off", "not_fused")


def loss_causes(objects: Boxes3D, detections: Detections, frame: Frame, gt: Boxes3D, g: GroundTruthFrame,
                iou: float = 0.5, threshold: float = 2.0) -> list[tuple[int, str]]:  # fmt: skip
    """(class id, cause) for every ground-truth object the 3D AP counts that the camera's 2D ground
    truth also has: ``found`` (the object of its best-overlapping 2D detection lies within
    ``threshold`` m), ``no_2d`` (no detection of its class group overlaps it by IoU >= ``iou``: the
    2D stage missed it or boxed it loosely), ``lidar_off`` / ``camera_off`` (its detection's 3D
    object, from the LiDAR / the camera, is farther), ``not_fused`` (its detection gave no object).
    ``gt``: :func:`gt_boxes` of ``g``."""
    gt2d = frame.gt
    row = {int(t): k for k, t in enumerate(g.ids)}
    ious = iou_matrix(gt2d.boxes, detections.boxes)
    det_g = np.array([_GROUP.get(int(c), -1) for c in detections.class_ids])
    out = []
    for j in range(len(gt2d)):
        k = row.get(int(gt2d.track_ids[j]))
        c = int(gt2d.class_ids[j])
        if k is None or gt.ignore[k] or c not in CLASS_RANGE:
            continue
        same = np.flatnonzero(det_g == _GROUP[c])
        if not len(same) or ious[j, same].max() < iou:
            out.append((c, "no_2d"))
            continue
        obj = np.flatnonzero(objects.detection_index == same[np.argmax(ious[j, same])])
        if not len(obj):
            out.append((c, "not_fused"))
            continue
        err = float(np.linalg.norm(objects.centers[obj[0], :2] - gt.centers[k, :2]))
        out.append((c, "found" if err <= threshold else f"{objects.sources[obj[0]]}_off"))
    return out


def track_frames(g: GroundTruthFrame, tracks: Sequence[TrackedObject], k: int) -> tuple[TrackFrame, TrackFrame]:
    """Ground truth and tracks of one frame of drive number ``k`` for the tracking metrics, as nuScenes
    tracking scores them: ground truth beyond its class range is a don't-care, tracks beyond it are
    dropped; ids are offset by ``k * ID_STRIDE`` so drives never share an identity."""
    gt = g.track_frame().of_class(list(CLASS_RANGE))
    base_T_odom = np.linalg.inv(g.odom_T_base)
    assert gt.ignore is not None and gt.classes is not None
    dist = np.linalg.norm(gt.positions @ base_T_odom[:2, :2].T + base_T_odom[:2, 3], axis=1)
    gt = dataclasses.replace(gt, ids=gt.ids + k * ID_STRIDE, ignore=gt.ignore | (dist > _class_range(gt.classes)))
    pred = predicted_frame(tracks)
    assert pred.classes is not None
    dist = np.linalg.norm(pred.positions @ base_T_odom[:2, :2].T + base_T_odom[:2, 3], axis=1)
    pred = pred.select(dist <= _class_range(pred.classes))
    return gt, dataclasses.replace(pred, ids=pred.ids + k * ID_STRIDE)


def _tracking_row(m: TrackingMetrics, amota_: float) -> dict[str, float]:
    return {"AMOTA": amota_, "IDF1": m.idf1, "MOTA": m.mota, "MOTP_m": m.motp, "IDSW": m.id_switches, "FP": m.fp,
            "FN": m.fn, "GT": m.num_gt, "velocity_error_mps": m.velocity_error,
            "velocity_error_median_mps": m.velocity_error_median, "velocity_n": m.velocity_count,
            "gt_tracks": m.num_gt_ids, "pred_tracks": m.num_pred_ids}  # fmt: skip


def _stats(v: Sequence[float]) -> dict[str, float]:
    a = np.asarray(v, np.float64)
    if not len(a):
        return {"n": 0}
    return {"n": len(a), "median": float(np.median(a)), "p95": float(np.percentile(a, 95)), "max": float(a.max())}


def ground_truth_result(frame: Frame, scene_cut: bool = False, score: float = 0.9) -> PerceptionResult:
    """The 2D stage played by the ground truth: every non-ignored box of a fused class (scoring
    ``score``) and the rendered segmentation; the stage's memory reset (REQUESTED) on ``scene_cut``."""
    keep = ~frame.gt.ignore & np.isin(frame.gt.class_ids, list(CLASS_RANGE))
    det = Detections(frame.gt.boxes[keep], np.full(int(keep.sum()), score, np.float32), frame.gt.class_ids[keep])
    reason = ResetReason.REQUESTED if scene_cut else ResetReason.NONE
    return PerceptionResult("cam0", frame.stamp, det, frame.semantic, None, reason, {})


def evaluate_objects(perceptor: Perceptor | None, drives: Sequence[ObjectDrive], cfg: ObjectsEvalConfig,
                     progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Stream the drives through ``perceptor`` and the object pipeline; every figure of the module doc.
    ``perceptor`` None: the ground-truth 2D boxes and mask are the 2D stage (:func:`ground_truth_result`),
    an upper bound that tells the 2D detector's share of the errors from the fusion's and tracker's."""
    from tqdm import tqdm

    classes = {c: DETECTION_NAMES[c] for c in CLASS_RANGE}
    gt3d: list[Boxes3D] = []
    pred3d: list[Boxes3D] = []
    cam3d: list[Boxes3D] = []
    trk3d: list[Boxes3D] = []
    causes: dict[str, dict[str, int]] = {name: dict.fromkeys(CAUSES, 0) for name in classes.values()}
    gt_tracks: list[TrackFrame] = []
    pred_tracks: list[TrackFrame] = []
    cam_err: list[tuple[float, float]] = []
    ms: dict[str, list[float]] = {"total": [], "fusion": [], "tracking": []}
    sources = {"lidar": 0, "camera": 0}
    for k, drive in enumerate(tqdm(drives, desc="3D objects", disable=not progress, unit="drive")):
        if perceptor is not None:
            perceptor.reset("cam0")
        pipeline = ObjectPipeline(cfg.pipeline, session=f"eval-{drive.seed}")
        for t, (frame, ext, g) in enumerate(zip(drive.frames, drive.extrinsics, drive.gt, strict=True)):
            if perceptor is None:
                r = ground_truth_result(frame, scene_cut=t == 0)
            else:
                r = perceptor.process(FrameInput("cam0", frame.rgb, frame.stamp, scene_cut=t == 0))
            out = pipeline.process(r, frame.lidar, frame.intrinsics, ext, g.odom_T_base)
            for key in ms:
                ms[key].append(out.timings_ms[key])
            for s in out.objects.sources:
                sources[str(s)] += 1
            cam_only, _ = fuse(None, r.detections, frame.intrinsics, ext, None, cfg.pipeline.fusion)
            gt3d.append(gt_boxes(g))
            for c, cause in loss_causes(out.objects, r.detections, frame, gt3d[-1], g):
                causes[classes[c]][cause] += 1
            pred3d.append(predicted_boxes(out.objects))
            cam3d.append(predicted_boxes(cam_only))
            trk3d.append(track_boxes(out.tracks, g.odom_T_base))
            cam_err += camera_range_errors(cam_only, r.detections, frame, g, ext)
            gt_frame, pred_frame = track_frames(g, out.tracks, k)
            gt_tracks.append(gt_frame)
            pred_tracks.append(pred_frame)
    det = detection_metrics(gt3d, pred3d, classes, yaw_period=np.pi)
    tracking: dict[str, dict[str, float]] = {}
    for c, name in classes.items():
        gt_c, pred_c = [f.of_class([c]) for f in gt_tracks], [f.of_class([c]) for f in pred_tracks]
        m = evaluate_tracking(gt_c, pred_c, cfg.track_threshold)
        if m.num_gt:
            tracking[name] = _tracking_row(m, amota(gt_c, pred_c, cfg.track_threshold).amota)
    # all classes: AMOTA is the mean of the per-class ones (nuScenes), the rest over every object
    per_class_amota = [r["AMOTA"] for r in tracking.values()]
    tracking = {"all": _tracking_row(evaluate_tracking(gt_tracks, pred_tracks, cfg.track_threshold),
                                     float(np.mean(per_class_amota)) if per_class_amota else float("nan")),
                **tracking}  # fmt: skip
    bands = {}
    for lo, hi in BANDS:
        sel = [(r, e) for r, e in cam_err if lo <= r < hi]
        if sel:
            err = np.array([e for _, e in sel])
            rel = np.abs(err) / np.array([r for r, _ in sel])
            bands[f"{lo:g}-{hi:g} m"] = {"n": len(sel), "median_abs_m": float(np.median(np.abs(err))),
                                         "p90_abs_m": float(np.percentile(np.abs(err), 90)),
                                         "median_signed_m": float(np.median(err)),
                                         "median_rel": float(np.median(rel))}  # fmt: skip
    metrics: dict[str, Any] = {
        "detection": det,
        "detection_tracks": detection_metrics(gt3d, trk3d, classes, yaw_period=np.pi),
        "loss_causes": causes,
        "camera_only": {"detection": detection_metrics(gt3d, cam3d, classes, yaw_period=np.pi),
                        "range_error": bands},
        "tracking": tracking,
        "timing_ms": {key: _stats(v) for key, v in ms.items()},
        "sources": sources,
        "frames": len(gt3d),
        "config": cfg.as_dict(),
    }
    metrics["goals"] = goals(metrics)
    return metrics


def goals(m: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 11's goals on unseen drives, each with its value and whether it is met."""
    pc = m["detection"]["per_class"]
    rows = [("car AP@2m", pc["car"]["AP@2m"], ">= 0.8", lambda v: v >= 0.8),
            ("pedestrian AP@2m", pc["pedestrian"]["AP@2m"], ">= 0.6", lambda v: v >= 0.6),
            ("IDF1 (all tracked classes)", m["tracking"]["all"]["IDF1"], ">= 0.8", lambda v: v >= 0.8),
            ("car velocity error, m/s", m["tracking"].get("car", {}).get("velocity_error_mps", float("nan")),
             "<= 0.5", lambda v: v <= 0.5),
            ("fusion + tracking, median ms/frame", m["timing_ms"]["total"].get("median", float("nan")), "<= 50",
             lambda v: v <= 50.0)]  # fmt: skip
    return [{"goal": name, "value": float(v), "target": target, "met": bool(np.isfinite(v) and ok(v))}
            for name, v, target, ok in rows]  # fmt: skip


def evaluate_objects_backend(backend: Backend, drives: Sequence[ObjectDrive], cfg: ObjectsEvalConfig,
                             progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """:func:`evaluate_objects` with a Perceptor on ``backend`` (loaded here, closed afterwards)."""
    t0 = time.perf_counter()
    with backend:
        if cfg.refine is None:
            perceptor = Perceptor(backend, PerceptorConfig(score_thresh=cfg.score_thresh, attention=False))
        else:  # the policy reads pass 1's attention map
            perceptor = RefiningPerceptor(backend, PerceptorConfig(score_thresh=cfg.score_thresh), cfg.refine)
        metrics = evaluate_objects(perceptor, drives, cfg, progress)
        if isinstance(perceptor, RefiningPerceptor):
            metrics["refine"] = {**perceptor.totals, "pixel_ratio": perceptor.pixel_ratio}
    metrics["eval_seconds"] = time.perf_counter() - t0
    upper = evaluate_objects(None, drives, cfg, progress=False)
    metrics["gt_2d"] = {"goals": upper["goals"], "loss_causes": upper["loss_causes"],
                        "AP@2m": {n: r["AP@2m"] for n, r in upper["detection"]["per_class"].items()},
                        "IDF1": {n: r["IDF1"] for n, r in upper["tracking"].items()}}  # fmt: skip
    return metrics


def evaluate_objects_checkpoint(checkpoint: str | Path, drives: Sequence[ObjectDrive], cfg: ObjectsEvalConfig,
                                progress: bool = True) -> dict[str, Any]:  # fmt: skip
    from perception.models.checkpoint import checkpoint_input_size
    from perception.runtime.torch_backend import TorchBackend

    return evaluate_objects_backend(TorchBackend(checkpoint, checkpoint_input_size(checkpoint)), drives, cfg, progress)


def _f(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{digits}f}"


def markdown(m: dict[str, Any]) -> list[str]:
    """The report section of :func:`evaluate_objects`' metrics (markdown lines)."""
    c = m["config"]
    det = m["detection"]
    thr = [f"AP@{t:g}m" for t in det["thresholds"]]
    md = [f"## 3D objects and tracking (LiDAR {c['lidar_beams']} beams + camera, {m['frames']} frames, seeds "
          f"{c['seeds'][0]}:{c['seeds'][1]})", "",
          "nuScenes-style centre-distance AP of the fused objects (base_link), true-positive errors at 2 m "
          "(AOE modulo 180 deg).", "",
          "| class | " + " | ".join(thr) + " | AP | ATE m | ASE | AOE deg | GT | TP | FP |",
          "|---|" + "---|" * (len(thr) + 7)]  # fmt: skip
    for name, r in det["per_class"].items():
        md.append(f"| {name} | " + " | ".join(_f(r[k]) for k in thr) + f" | {_f(r['AP'])} | {_f(r['ATE'], 2)} | "
                  f"{_f(r['ASE'], 2)} | {_f(np.rad2deg(r['AOE']) if r['AOE'] is not None else None, 1)} | "
                  f"{r['num_gt']} | {r['tp']} | {r['fp']} |")  # fmt: skip
    trk = m["detection_tracks"]["per_class"]
    md += ["", "The confirmed tracks scored the same way (existence x class probability as the score): AP@2m "
           + ", ".join(f"{n} {_f(r['AP@2m'])}" for n, r in trk.items()) + f"; mAP {_f(m['detection_tracks']['mAP'])}"]
    md += ["", "Where the ground truth is lost (objects the AP counts, through their best-overlapping 2D "
           "detection: none at IoU >= 0.5, or its 3D object farther than 2 m):", "",
           "| class | " + " | ".join(CAUSES) + " |", "|---|" + "---|" * len(CAUSES)]
    md += [f"| {name} | " + " | ".join(str(r[c]) for c in CAUSES) + " |" for name, r in m["loss_causes"].items()]
    md += ["", f"mAP {_f(det['mAP'])}; objects from LiDAR {m['sources']['lidar']}, camera-only fallback "
           f"{m['sources']['camera']}", "", "Tracking (confirmed tracks in odom, 2 m):", "",
           "| classes | AMOTA | IDF1 | MOTA | IDSW | FP | FN | GT | velocity error m/s (median) |",
           "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in m["tracking"].items():
        md.append(f"| {name} | {_f(r.get('AMOTA'))} | {_f(r['IDF1'])} | {_f(r['MOTA'])} | {r['IDSW']} | {r['FP']} | "
                  f"{r['FN']} | {r['GT']} | "
                  f"{_f(r['velocity_error_mps'], 2)} ({_f(r['velocity_error_median_mps'], 2)}) |")  # fmt: skip
    cam = m["camera_only"]
    md += ["", "Camera-only fallback (every detection ranged from the camera alone): range error by distance band",
           "", "| band | n | median abs m | p90 abs m | median signed m | median relative |",
           "|---|---|---|---|---|---|"]
    for band, r in cam["range_error"].items():
        md.append(f"| {band} | {r['n']} | {_f(r['median_abs_m'], 2)} | {_f(r['p90_abs_m'], 2)} | "
                  f"{_f(r['median_signed_m'], 2)} | {_f(r['median_rel'], 3)} |")  # fmt: skip
    md.append("")
    cam_ap = cam["detection"]["per_class"]
    md.append("camera-only AP@2m: " + ", ".join(f"{n} {_f(r['AP@2m'])}" for n, r in cam_ap.items()))
    tm = m["timing_ms"]
    md += ["", "Milliseconds per frame (median / p95): " + ", ".join(
        f"{k} {_f(v.get('median'), 1)} / {_f(v.get('p95'), 1)}" for k, v in tm.items()), "",
        "Goals; the last column has the ground-truth 2D boxes and mask as the 2D stage (an upper bound: the "
        "fusion and tracker with a perfect 2D detector):", "",
        "| goal | value | target | met | with ground-truth 2D |", "|---|---|---|---|---|"]  # fmt: skip
    upper = {g["goal"]: g for g in m.get("gt_2d", {}).get("goals", [])}
    for g in m["goals"]:
        u = upper.get(g["goal"])
        ub = f"{_f(u['value'])} ({'met' if u['met'] else 'not met'})" if u else "n/a"
        md.append(f"| {g['goal']} | {_f(g['value'])} | {g['target']} | {'yes' if g['met'] else 'NO'} | {ub} |")
    md.append("")
    return md
