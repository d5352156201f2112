"""Evaluation and golden comparison of recorded outputs, straight from bag files (no ROS graph).

Outputs (a replay's bag): ``<cam>/detections`` (Detection2DArray) and ``<cam>/segmentation``
(mono8), log time = receipt; ``/replay/events`` gives each input's publish time (latency).
Ground truth (a drive's bag, :mod:`perception.bag.drive`): ``<cam>/ground_truth`` and
``<cam>/ground_truth/semantic``. 3D objects (``<cam>/objects3d``) are scored against
``<cam>/ground_truth/boxes3d`` when the output bag has them (:func:`evaluate_objects_bags`).
Frames are matched by camera namespace and header stamp; with several passes (loops) the first
output per stamp is evaluated and every pass counts for latency. :func:`evaluate_bag_offline` runs a
Perceptor over a drive bag's camera frames and scores them as they stream (the fleet's offline mode).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perception.bag import BagError
from perception.bag import messages as m
from perception.bag.cdr import header_stamp_ns
from perception.bag.io import deserialize, open_bag, read_messages
from perception.core.transforms import TransformTree, pose_matrix, quaternion_to_rotation
from perception.core.types import Detections, GroundTruth
from perception.eval.golden import FrameKey, GoldenReport, Tolerances, compare

if TYPE_CHECKING:
    from perception.pipeline.perceptor import Perceptor

EVENTS_TOPIC = "/replay/events"


def _camera(topic: str, suffix: str) -> str:
    return topic[: -len(suffix)].rstrip("/") or "/"


@dataclass
class BagOutputs:
    detections: dict[FrameKey, Detections] = field(default_factory=dict)  # (camera, stamp)
    masks: dict[FrameKey, np.ndarray] = field(default_factory=dict)
    receipts_ns: list[tuple[FrameKey, int]] = field(default_factory=list)  # every detections receipt
    published_ns: dict[FrameKey, list[int]] = field(default_factory=dict)  # input publish times
    loops: int = 0

    def latencies_ms(self) -> list[float]:
        """Input publish -> detections receipt, per output (the latest publish of that stamp before it)."""
        out = []
        for key, t in self.receipts_ns:
            before = [p for p in self.published_ns.get(key, []) if p <= t]
            if before:
                out.append(1e-6 * (t - max(before)))
        return out


def load_outputs(path: str | Path, masks: bool = True) -> BagOutputs:
    """Detections (and segmentation masks) of every camera in an output bag, by (camera, stamp)."""
    info = open_bag(path)
    det_topics = [t for t, ty in info.topics.items() if t.endswith("/detections")
                  and ty == "vision_msgs/msg/Detection2DArray"]
    if not det_topics:
        raise BagError(f"bag {path} has no <camera>/detections topic (vision_msgs/Detection2DArray): is it the output "
                       f"of `perception replay --out`? It has: {', '.join(sorted(info.topics))}")
    seg_topics = [t for t in info.topics if t.endswith("/segmentation")] if masks else []
    ev = [EVENTS_TOPIC] if EVENTS_TOPIC in info.topics else []
    out = BagOutputs()
    for topic, msgtype, log_ns, raw in read_messages(path, det_topics + seg_topics + ev, check_order=False):
        if topic == EVENTS_TOPIC:
            hdr = deserialize(raw, msgtype)
            kind, _, target = str(hdr.frame_id).partition(" ")
            if kind == "publish":
                cam = target.removesuffix("/compressed").rsplit("/", 1)[0] or "/"
                out.published_ns.setdefault((cam, m.stamp_ns(hdr)), []).append(log_ns)
            elif kind == "loop":
                out.loops += 1
            continue
        if topic.endswith("/detections"):
            key = (_camera(topic, "detections"), header_stamp_ns(raw))
            out.receipts_ns.append((key, log_ns))
            if key not in out.detections:
                out.detections[key] = m.detections_from_msg(deserialize(raw, msgtype))
        else:
            key = (_camera(topic, "segmentation"), header_stamp_ns(raw))
            if key not in out.masks:
                out.masks[key] = np.array(m.image_array(deserialize(raw, msgtype)))
    return out


@dataclass
class GroundTruthBag:
    gt: dict[FrameKey, GroundTruth] = field(default_factory=dict)
    semantic: dict[FrameKey, np.ndarray] = field(default_factory=dict)
    images: dict[FrameKey, np.ndarray] = field(default_factory=dict)


def load_ground_truth(path: str | Path, image_keys: Iterable[FrameKey] = ()) -> GroundTruthBag:
    """Ground truth of a drive bag; RGB images only for ``image_keys`` (sample overlays)."""
    info = open_bag(path)
    gt_topics = [t for t, ty in info.topics.items() if t.endswith("/ground_truth")
                 and ty == "vision_msgs/msg/Detection2DArray"]
    if not gt_topics:
        raise BagError(f"bag {path} has no <camera>/ground_truth topic (vision_msgs/Detection2DArray); "
                       "record drives with `perception sim --bag`")
    sem = [t for t in info.topics if t.endswith("/ground_truth/semantic")]
    wanted = set(image_keys)
    imgs = [t for t, ty in info.topics.items() if t.endswith("/image_raw") and ty == "sensor_msgs/msg/Image"] \
        if wanted else []
    out = GroundTruthBag()
    for topic, msgtype, _, raw in read_messages(path, gt_topics + sem + imgs):
        if topic.endswith("/ground_truth"):
            out.gt[(_camera(topic, "ground_truth"), header_stamp_ns(raw))] = m.ground_truth_from_msg(
                deserialize(raw, msgtype))
        elif topic.endswith("/semantic"):
            out.semantic[(_camera(topic, "ground_truth/semantic"), header_stamp_ns(raw))] = np.array(
                m.image_array(deserialize(raw, msgtype)))
        else:
            key = (_camera(topic, "image_raw"), header_stamp_ns(raw))
            if key in wanted:
                out.images[key] = np.array(m.image_array(deserialize(raw, msgtype)))
    return out


def _overlay(rgb: np.ndarray, det: Detections, gt: GroundTruth, mask: np.ndarray | None) -> np.ndarray:
    from perception.core.viz import colorize_semantic, draw_detections, side_by_side

    tiles = [draw_detections(rgb, det, gt=gt)]
    titles = ["detections (white: ground truth)"]
    if mask is not None and mask.shape == rgb.shape[:2]:
        tiles.append((0.55 * colorize_semantic(mask) + 0.45 * rgb).astype(np.uint8))
        titles.append("segmentation")
    return side_by_side(tiles, titles)


def evaluate_bags(output_bag: str | Path, gt_bag: str | Path, score_thresh: float = 0.3,
                  samples: int = 4) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Every metric of :class:`~perception.eval.metrics.EvalAccumulator` for the frames of ``gt_bag`` that
    ``output_bag`` answered, plus latency percentiles and coverage; and up to ``samples`` overlays."""
    from perception.eval.metrics import EvalAccumulator

    outputs = load_outputs(output_bag)
    keys = sorted(outputs.detections, key=lambda k: (k[0], k[1]))
    pick = [keys[i] for i in np.linspace(0, len(keys) - 1, num=min(samples, len(keys))).astype(int)] if keys else []
    gtb = load_ground_truth(gt_bag, pick)
    if not set(gtb.gt) & set(outputs.detections):
        raise BagError(f"no frame of {output_bag} matches the ground truth of {gt_bag} (camera and header stamp); "
                       "was it replayed from that bag without --restamp?")
    acc = EvalAccumulator(score_thresh=score_thresh)
    answered = 0
    for key in sorted(gtb.gt, key=lambda k: (k[0], k[1])):
        det = outputs.detections.get(key)
        if det is None:
            continue
        answered += 1
        pred, sem = outputs.masks.get(key), gtb.semantic.get(key)
        both = pred is not None and sem is not None and pred.shape == sem.shape
        acc.add(sequence=key[0], gt=gtb.gt[key], detections=det, seg_pred=pred if both else None,
                seg_gt=sem if both else None)
    metrics = acc.compute()
    lat = np.asarray(outputs.latencies_ms())
    metrics["latency_ms"] = ({"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
                              "p99": float(np.percentile(lat, 99)), "max": float(lat.max()), "frames": int(lat.size),
                              "values": lat.tolist()} if lat.size else {"frames": 0})
    metrics["coverage"] = {"gt_frames": len(gtb.gt), "answered": answered,
                           "missing": len(gtb.gt) - answered, "loops": outputs.loops + 1}
    metrics["bags"] = {"outputs": str(output_bag), "ground_truth": str(gt_bag)}
    metrics["objects3d_bag"] = evaluate_objects_bags(output_bag, gt_bag)
    overlays = [_overlay(gtb.images[k], outputs.detections[k], gtb.gt.get(k, GroundTruth()), outputs.masks.get(k))
                for k in pick if k in gtb.images]
    return metrics, overlays


def golden_compare(expected_bag: str | Path, actual_bag: str | Path, tol: Tolerances | None = None) -> GoldenReport:
    """Compare two output bags frame by frame (detections; masks where both recorded them)."""
    exp, act = load_outputs(expected_bag), load_outputs(actual_bag)
    shared_masks = {k for k in exp.masks if k[0] in {c for c, _ in act.masks}}
    return compare(exp.detections, act.detections, {k: exp.masks[k] for k in shared_masks}, act.masks,
                   tol or Tolerances())


# -- 3D objects --------------------------------------------------------------------------------------
OBJECTS_TOPIC_SUFFIX = "/objects3d"
BOXES3D_SUFFIX = "/ground_truth/boxes3d"
DETECTION3D_TYPE = "vision_msgs/msg/Detection3DArray"
TF_STATIC_TOPICS = ("/tf_static",)


def _static_transforms(paths: Iterable[str | Path]) -> TransformTree:
    """Every /tf_static message in the bags, as one tree."""
    tree = TransformTree()
    for path in paths:
        info = open_bag(path)
        topics = [t for t in TF_STATIC_TOPICS if t in info.topics]
        for _, msgtype, _, raw in read_messages(path, topics, check_order=False) if topics else ():
            for t in deserialize(raw, msgtype).transforms:
                q, p = t.transform.rotation, t.transform.translation
                try:
                    tree.add(str(t.header.frame_id), str(t.child_frame_id),
                             pose_matrix(quaternion_to_rotation((q.x, q.y, q.z, q.w)), (p.x, p.y, p.z)))
                except ValueError as e:
                    raise BagError(f"{path}: bad /tf_static transform: {e}") from e
    return tree


_Rows3D = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _detections3d(msg: Any) -> _Rows3D:
    """(ids, class ids, scores, centres, sizes (bbox x, y, z), quaternions (x, y, z, w), valid id) of a
    Detection3DArray; ids that are not integers are -1 (untracked)."""
    n = len(msg.detections)
    ids, cls, scores = np.full(n, -1, np.int64), np.full(n, -1, np.int64), np.zeros(n)
    centers, sizes, quats = np.zeros((n, 3)), np.zeros((n, 3)), np.zeros((n, 4))
    for i, d in enumerate(msg.detections):
        text = str(d.id).removesuffix(m.IGNORE_SUFFIX)
        ids[i] = int(text) if text.lstrip("-").isdigit() else -1
        if d.results:
            best = max(d.results, key=lambda r: r.hypothesis.score)
            scores[i] = best.hypothesis.score
            cid = str(best.hypothesis.class_id)
            cls[i] = int(cid) if cid.isdigit() else -1
        p, q, s = d.bbox.center.position, d.bbox.center.orientation, d.bbox.size
        centers[i], quats[i], sizes[i] = (p.x, p.y, p.z), (q.x, q.y, q.z, q.w), (s.x, s.y, s.z)
    return ids, cls, scores, centers, sizes, quats, ids >= 0


def evaluate_objects_bags(output_bag: str | Path, gt_bag: str | Path) -> dict[str, Any]:
    """3D objects of an output bag (``<cam>/objects3d``, vision_msgs/Detection3DArray in base_link,
    ``id`` = track id) against a drive bag's 3D ground truth (``<cam>/ground_truth/boxes3d``, camera
    optical frame, ``id`` = track id; objects its 2D ground truth marks ``:ignore`` are don't-care):
    centre-distance AP per class (nuScenes class ranges) and IDF1 / MOTA / ID switches (2 m, in
    base_link: per-frame matching needs no ego pose; velocities are not scored, the bags hold no
    odometry). The ground truth is moved into base_link with ``base_link -> camera`` from /tf_static
    in either bag. Returns ``{"scored": False, "reason": ...}`` when a piece is missing."""
    from perception.core.boxes3d import Boxes3D
    from perception.eval.metrics3d import detection_metrics
    from perception.eval.objects import CLASS_RANGE
    from perception.eval.track_groundtruth import objects_from_boxes3d
    from perception.eval.tracking import TrackFrame, evaluate_tracking

    out_info, gt_info = open_bag(output_bag), open_bag(gt_bag)
    obj_topics = [t for t, ty in out_info.topics.items() if t.endswith(OBJECTS_TOPIC_SUFFIX) and ty == DETECTION3D_TYPE]
    if not obj_topics:
        return {"scored": False, "reason": f"{output_bag} has no <camera>{OBJECTS_TOPIC_SUFFIX} ({DETECTION3D_TYPE}): "
                "record a run with objects.enabled (perception replay records the 2D outputs only)"}
    box_topics = [t for t, ty in gt_info.topics.items() if t.endswith(BOXES3D_SUFFIX) and ty == DETECTION3D_TYPE]
    if not box_topics:
        return {"scored": False, "reason": f"{gt_bag} has no <camera>{BOXES3D_SUFFIX}: record drives with "
                "`perception sim --bag`"}
    gt_msgs: dict[FrameKey, Any] = {}
    ignore_ids: dict[FrameKey, set[int]] = {}
    two_d = [t[: -len(BOXES3D_SUFFIX)] + "/ground_truth" for t in box_topics]
    for topic, msgtype, _, raw in read_messages(gt_bag, box_topics + [t for t in two_d if t in gt_info.topics]):
        if topic.endswith(BOXES3D_SUFFIX):
            gt_msgs[(_camera(topic, BOXES3D_SUFFIX.lstrip("/")), header_stamp_ns(raw))] = deserialize(raw, msgtype)
        else:
            g = m.ground_truth_from_msg(deserialize(raw, msgtype))
            ignore_ids[(_camera(topic, "ground_truth"), header_stamp_ns(raw))] = {int(i) for i in g.track_ids[g.ignore]}
    preds: dict[FrameKey, Any] = {}
    for topic, msgtype, _, raw in read_messages(output_bag, obj_topics, check_order=False):
        key = (_camera(topic, OBJECTS_TOPIC_SUFFIX.lstrip("/")), header_stamp_ns(raw))
        preds.setdefault(key, deserialize(raw, msgtype))  # loops: the first pass
    keys = sorted(set(gt_msgs) & set(preds))
    if not keys:
        return {"scored": False, "reason": f"no frame of {output_bag}'s objects matches {gt_bag}'s 3D ground truth "
                "(camera and header stamp)"}
    tfs = _static_transforms([output_bag, gt_bag])
    base = str(preds[keys[0]].header.frame_id) or "base_link"
    cam_frame = str(gt_msgs[keys[0]].header.frame_id)
    base_T_cam = tfs.lookup(base, cam_frame)
    if base_T_cam is None:
        return {"scored": False, "reason": f"neither bag has /tf_static with {base} -> {cam_frame}, needed to move the "
                "ground truth (camera frame) to the objects' frame; the drive bags of `perception sim --bag` record "
                "no /tf_static: record the run with it"}

    def ranged(classes: np.ndarray, centers: np.ndarray) -> np.ndarray:
        rng = np.array([CLASS_RANGE.get(int(c), 0.0) for c in classes]).reshape(-1)
        return np.asarray(np.linalg.norm(centers[:, :2], axis=1) <= rng)

    gts, dets, gt_tracks, pred_tracks = [], [], [], []
    for key in keys:
        ids, cls, _, c, s, q, _ = _detections3d(gt_msgs[key])
        ry = 2.0 * np.arctan2(q[:, 1], q[:, 3])  # rotation about the optical y axis (ground_truth_3d)
        boxes = np.column_stack([c, s[:, 0], s[:, 2], s[:, 1], ry])  # cx cy cz l w h ry
        centers, sizes, yaws = objects_from_boxes3d(boxes, base_T_cam)
        ign = np.isin(ids, list(ignore_ids.get(key, set()))) | ~ranged(cls, centers)
        gts.append(Boxes3D(class_ids=cls, centers=centers, sizes=sizes, yaws=yaws, ignore=ign))
        gt_tracks.append(TrackFrame(ids, centers[:, :2], None, cls, ign))
        pids, pcls, pscores, pc, ps, pq, tracked = _detections3d(preds[key])
        pyaw = 2.0 * np.arctan2(pq[:, 2], pq[:, 3])  # yaw about z (base_link)
        keep = ranged(pcls, pc) & np.isin(pcls, list(CLASS_RANGE))
        dets.append(Boxes3D(class_ids=pcls[keep], centers=pc[keep], sizes=ps[keep], yaws=pyaw[keep],
                            scores=pscores[keep]))  # fmt: skip
        sel = keep & tracked
        pred_tracks.append(TrackFrame(pids[sel], pc[sel, :2], None, pcls[sel], scores=pscores[sel]))
    from perception.core.classes import DETECTION_NAMES

    classes = {c: DETECTION_NAMES[c] for c in CLASS_RANGE}
    tm = evaluate_tracking(gt_tracks, pred_tracks, 2.0)
    return {"scored": True, "frames": len(keys), "gt_frames": len(gt_msgs), "frame_ids": [base, cam_frame],
            "detection": detection_metrics(gts, dets, classes, yaw_period=np.pi),
            "tracking": {"IDF1": tm.idf1, "MOTA": tm.mota, "IDSW": tm.id_switches, "FP": tm.fp, "FN": tm.fn,
                         "GT": tm.num_gt}}  # fmt: skip


# -- a Perceptor over a drive bag (the fleet's offline mode) ----------------------------------------
def _latency(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"frames": 0}
    lat = np.asarray(values)
    return {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
            "p99": float(np.percentile(lat, 99)), "max": float(lat.max()), "frames": int(lat.size)}


def evaluate_bag_offline(path: str | Path, perceptor: Perceptor, score_thresh: float) -> dict[str, Any]:
    """Metrics of the Perceptor on one drive bag's camera frames against its ground truth."""
    from perception.eval.metrics import EvalAccumulator
    from perception.pipeline.perceptor import FrameInput

    info = open_bag(path)
    raw = [t for t, ty in info.topics.items() if t.endswith("/image_raw") and ty == "sensor_msgs/msg/Image"]
    comp = [t for t, ty in info.topics.items() if t.endswith("/image_raw/compressed")
            and ty == "sensor_msgs/msg/CompressedImage"]
    images = raw or comp
    gts = [t for t, ty in info.topics.items()
           if t.endswith("/ground_truth") and ty == "vision_msgs/msg/Detection2DArray"]
    sems = [t for t in info.topics if t.endswith("/ground_truth/semantic")]
    if not images or not gts:
        raise BagError(f"bag {path} needs <camera>/image_raw[/compressed] and <camera>/ground_truth topics "
                         f"(record drives with `perception sim --bag`); it has {', '.join(sorted(info.topics))}")
    has_sem = {_camera(t, "ground_truth/semantic") for t in sems}
    acc = EvalAccumulator(score_thresh=score_thresh)
    perceptor.reset()
    results: dict[tuple[str, int], Any] = {}
    gt: dict[tuple[str, int], Any] = {}
    sem: dict[tuple[str, int], np.ndarray] = {}
    latencies: list[float] = []
    counts = {"images": 0, "scored": 0, "segmentation": 0}

    def score(key: tuple[str, int], final: bool = False) -> None:
        if key not in results or key not in gt or (key[0] in has_sem and key not in sem and not final):
            return
        r, g, s = results.pop(key), gt.pop(key), sem.pop(key, None)
        pred = r.segmentation
        both = pred is not None and s is not None and pred.shape == s.shape
        acc.add(sequence=key[0], gt=g, detections=r.detections, seg_pred=pred if both else None,
                seg_gt=s if both else None)
        counts["scored"] += 1
        counts["segmentation"] += int(both)

    for topic, msgtype, _, data in read_messages(path, images + gts + sems, check_order=False):
        if topic in images:
            cam = _camera(topic, "image_raw/compressed" if topic.endswith("/compressed") else "image_raw")
            msg = deserialize(data, msgtype)
            stamp = m.stamp_ns(msg.header)
            res = perceptor.process(FrameInput(cam, m.rgb_of(msg, msgtype), stamp * 1e-9))
            latencies.append(res.total_ms)
            counts["images"] += 1
            key = (cam, stamp)
            results[key] = res
        elif topic in gts:
            key = (_camera(topic, "ground_truth"), header_stamp_ns(data))
            gt[key] = m.ground_truth_from_msg(deserialize(data, msgtype))
        else:
            key = (_camera(topic, "ground_truth/semantic"), header_stamp_ns(data))
            sem[key] = np.array(m.image_array(deserialize(data, msgtype)))
        score(key)
    for key in sorted(set(results) & set(gt)):
        score(key, final=True)
    metrics = acc.compute()
    metrics["latency_ms"] = _latency(latencies)
    metrics["coverage"] = {"images": counts["images"], "scored": counts["scored"],
                           "with_segmentation": counts["segmentation"], "unscored_images": len(results)}
    return metrics
