"""Evaluation metrics: detection mAP (pycocotools), segmentation IoU, temporal flicker,
post-occlusion recall and attention concentration, plus an accumulator that gathers them all.

Inputs are core types (:class:`GroundTruth`, :class:`Detections`) in the same pixel frame.
Classes without ground truth get NaN and are excluded from means. ``EvalAccumulator.compute``
returns a plain dict (floats, ints, strings, nested dicts) that ``json.dump`` can write;
use :func:`to_jsonable` for strict JSON (NaN -> null).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from perception.core import classes
from perception.core.boxes import box_mask, iou_matrix
from perception.core.types import Detections, GroundTruth
from perception.eval import EvalError

# COCO's small/medium/large split (32², 96²) is made for 640-px photos; our camera frames are
# small and most road users are far away, so split at 16² and 48² pixels instead.
AREA_RANGES: tuple[tuple[str, float, float], ...] = (
    ("all", 0.0, 1e10),
    ("small", 0.0, 16.0**2),
    ("medium", 16.0**2, 48.0**2),
    ("large", 48.0**2, 1e10),
)


def _nanmean(values: Sequence[float]) -> float:
    v = [x for x in values if not math.isnan(x)]
    return float(np.mean(v)) if v else float("nan")


def _ignore_of(gt: GroundTruth) -> np.ndarray:
    n = len(gt)
    if len(gt.ignore) == 0:
        return np.zeros(n, dtype=bool)
    if len(gt.ignore) != n:
        raise EvalError(f"GroundTruth has {n} boxes but {len(gt.ignore)} ignore flags")
    return np.asarray(gt.ignore, dtype=bool)


# ---------------------------------------------------------------------------------------------
# detection mAP
# ---------------------------------------------------------------------------------------------


def _coco_dicts(
    gts: Sequence[GroundTruth], dets: Sequence[Detections], num_classes: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    images = [{"id": i + 1} for i in range(len(gts))]
    categories = [{"id": c + 1, "name": str(c)} for c in range(num_classes)]
    gt_anns: list[dict[str, Any]] = []
    dt_anns: list[dict[str, Any]] = []
    for i, (gt, det) in enumerate(zip(gts, dets)):
        ignore = _ignore_of(gt)
        for b, c, ign in zip(np.asarray(gt.boxes, np.float64), gt.class_ids, ignore):
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            gt_anns.append(
                {
                    "id": len(gt_anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(c) + 1,
                    "bbox": [float(b[0]), float(b[1]), w, h],
                    "area": max(w, 0.0) * max(h, 0.0),
                    "iscrowd": int(bool(ign)),  # crowd regions absorb detections: neither TP nor FP
                }
            )
        for b, c, s in zip(np.asarray(det.boxes, np.float64), det.class_ids, det.scores):
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            dt_anns.append(
                {
                    "id": len(dt_anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(c) + 1,
                    "bbox": [float(b[0]), float(b[1]), w, h],
                    "area": max(w, 0.0) * max(h, 0.0),
                    "score": float(s),
                    "iscrowd": 0,
                }
            )
    gt_d = {"images": images, "categories": categories, "annotations": gt_anns}
    dt_d = {"images": images, "categories": categories, "annotations": dt_anns}
    return gt_d, dt_d


def _ap_from_precision(precision: np.ndarray) -> float:
    """Mean of a COCOeval precision slice, NaN when COCOeval marked it absent (-1)."""
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else float("nan")


def detection_map(
    gts: Sequence[GroundTruth],
    dets: Sequence[Detections],
    num_classes: int = classes.NUM_DETECTION,
    names: Sequence[str] = classes.DETECTION_NAMES,
    max_dets: int = 100,
) -> dict[str, Any]:
    """COCO box AP with pycocotools: per class AP@0.5 and AP@[.5:.95], and their means.

    Ignored ground truth (``gt.ignore``) is passed as ``iscrowd`` so detections on it count
    neither as true nor as false positives. Classes without (non-ignored) ground truth get NaN
    and are left out of the means. Returns ``mAP50``, ``mAP``, ``mAP_<area>`` and ``per_class``.
    """
    if len(gts) != len(dets):
        raise EvalError(f"{len(gts)} ground-truth frames but {len(dets)} detection frames; pass one per frame")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_d, dt_d = _coco_dicts(gts, dets, num_classes)
    num_gt = np.zeros(num_classes, dtype=np.int64)
    for a in gt_d["annotations"]:
        if not a["iscrowd"]:
            num_gt[a["category_id"] - 1] += 1
    per_class: dict[str, dict[str, float | int]] = {}
    result: dict[str, Any] = {
        "num_frames": len(gts),
        "num_gt": int(num_gt.sum()),
        "num_det": len(dt_d["annotations"]),
    }
    if not gts:
        nan = float("nan")
        result.update({"mAP50": nan, "mAP": nan, **{f"mAP_{a[0]}": nan for a in AREA_RANGES[1:]}})
        result["per_class"] = {names[c]: {"AP50": nan, "AP": nan, "num_gt": 0} for c in range(num_classes)}
        return result
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt_d
        coco_gt.createIndex()
        coco_dt = COCO()
        coco_dt.dataset = dt_d
        coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.areaRng = [[lo, hi] for _, lo, hi in AREA_RANGES]
        ev.params.areaRngLbl = [n for n, _, _ in AREA_RANGES]
        ev.params.maxDets = [max_dets]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"]  # (T iou thresholds, R recall points, K classes, A areas, M maxDets)
    i50 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))
    ap50 = [_ap_from_precision(precision[i50, :, k, 0, -1]) for k in range(num_classes)]
    ap = [_ap_from_precision(precision[:, :, k, 0, -1]) for k in range(num_classes)]
    for k in range(num_classes):
        has_gt = num_gt[k] > 0
        per_class[names[k]] = {
            "AP50": ap50[k] if has_gt else float("nan"),
            "AP": ap[k] if has_gt else float("nan"),
            "num_gt": int(num_gt[k]),
        }
    result["mAP50"] = _nanmean([v["AP50"] for v in per_class.values()])
    result["mAP"] = _nanmean([v["AP"] for v in per_class.values()])
    for a, (area_name, _, _) in enumerate(AREA_RANGES[1:], start=1):
        area_aps = [_ap_from_precision(precision[:, :, k, a, -1]) for k in range(num_classes) if num_gt[k] > 0]
        result[f"mAP_{area_name}"] = _nanmean(area_aps)
    result["per_class"] = per_class
    return result


# ---------------------------------------------------------------------------------------------
# segmentation
# ---------------------------------------------------------------------------------------------


class SegmentationMeter:
    """Confusion matrix over (gt, pred) pixels; rows are ground truth, columns predictions.

    Pixels whose ground truth is ``ignore_index`` (or outside ``[0, num_classes)``) are skipped;
    predictions outside the class range count as wrong for the ground-truth class.
    """

    def __init__(
        self,
        num_classes: int = classes.NUM_SEMANTIC,
        ignore_index: int = classes.IGNORE_INDEX,
        names: Sequence[str] = classes.SEMANTIC_NAMES,
    ) -> None:
        if len(names) != num_classes:
            raise EvalError(f"{len(names)} class names for {num_classes} classes")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.names = tuple(names)
        # one extra column collects predictions outside the class range
        self._conf = np.zeros((num_classes, num_classes + 1), dtype=np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        if pred.shape != gt.shape:
            raise EvalError(f"prediction {pred.shape} and ground truth {gt.shape} differ; resize the prediction first")
        k = self.num_classes
        g = np.asarray(gt).ravel().astype(np.int64)
        p = np.asarray(pred).ravel().astype(np.int64)
        valid = (g != self.ignore_index) & (g >= 0) & (g < k)
        g, p = g[valid], p[valid]
        p_in = np.where((p >= 0) & (p < k), p, k)
        self._conf += np.bincount(g * (k + 1) + p_in, minlength=k * (k + 1)).reshape(k, k + 1)

    @property
    def confusion(self) -> np.ndarray:
        """(K, K) counts: ``confusion[g, p]`` pixels of class g predicted as p (in-range predictions)."""
        return self._conf[:, : self.num_classes].copy()

    def iou_per_class(self) -> np.ndarray:
        """(K,) IoU; NaN for classes absent from the ground truth."""
        k = self.num_classes
        tp = np.diag(self._conf[:, :k]).astype(np.float64)
        gt_count = self._conf.sum(axis=1).astype(np.float64)
        pred_count = self._conf[:, :k].sum(axis=0).astype(np.float64)
        union = gt_count + pred_count - tp
        iou = np.full(k, np.nan)
        present = gt_count > 0
        iou[present] = tp[present] / union[present]
        return iou

    def compute(self) -> dict[str, Any]:
        iou = self.iou_per_class()
        total = int(self._conf.sum())
        return {
            "mIoU": _nanmean(iou.tolist()),
            "pixel_acc": float(np.trace(self._conf[:, : self.num_classes]) / total) if total else float("nan"),
            "num_pixels": total,
            "per_class_iou": {n: float(v) for n, v in zip(self.names, iou)},
        }


# ---------------------------------------------------------------------------------------------
# per-frame matching, temporal flicker, post-occlusion recall
# ---------------------------------------------------------------------------------------------


def _greedy_match(
    gt_boxes: np.ndarray, gt_cls: np.ndarray, boxes: np.ndarray, dcls: np.ndarray, scores: np.ndarray,
    iou_thresh: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching, detections in descending score order each taking the best-IoU unmatched
    same-class ground truth with ``IoU >= iou_thresh``: ``(gt_matched (N,), det_matched (D,))``."""
    gt_hit = np.zeros(len(gt_boxes), dtype=bool)
    det_hit = np.zeros(len(boxes), dtype=bool)
    if len(gt_boxes) == 0 or len(boxes) == 0:
        return gt_hit, det_hit
    iou = iou_matrix(boxes, gt_boxes)  # (D, N)
    iou[np.asarray(dcls)[:, None] != np.asarray(gt_cls)[None, :]] = -1.0
    for d in np.argsort(-np.asarray(scores), kind="stable"):
        cand = np.where(gt_hit, -1.0, iou[d])
        j = int(np.argmax(cand))
        if cand[j] >= iou_thresh:
            gt_hit[j] = det_hit[d] = True
    return gt_hit, det_hit


def match_detected(gt: GroundTruth, det: Detections, score_thresh: float = 0.3, iou_thresh: float = 0.5) -> np.ndarray:
    """(N,) bool: ground-truth object i is matched one-to-one (greedy, best score first, best IoU)
    by a same-class detection with ``score >= score_thresh`` and ``IoU >= iou_thresh``."""
    keep = np.asarray(det.scores) >= score_thresh
    return _greedy_match(gt.boxes, gt.class_ids, det.boxes[keep], np.asarray(det.class_ids)[keep],
                         np.asarray(det.scores)[keep], iou_thresh)[0]


def _counts(tp: int, num_ref: int, num_det: int) -> dict[str, float | int]:
    nan = float("nan")
    return {"num_ref": num_ref, "num_det": num_det, "matched": tp,
            "recall": tp / num_ref if num_ref else nan, "precision": tp / num_det if num_det else nan}


def recall_precision(
    gts: Sequence[GroundTruth],
    dets: Sequence[Detections],
    score_thresh: float = 0.3,
    iou_thresh: float = 0.5,
    names: Sequence[str] = classes.DETECTION_NAMES,
) -> dict[str, Any]:
    """Recall and precision per class at one operating point (detections with ``score >= score_thresh``,
    one-to-one same-class matches with ``IoU >= iou_thresh``), e.g. against a reference detector's
    pseudo-labels. Ignored ground truth counts in neither: it is not to be found, and a detection that
    matches nothing else but overlaps it (same class, ``IoU >= iou_thresh``) is no false positive.

    Returns ``per_class`` (``num_ref``, ``num_det``, ``matched``, ``recall``, ``precision``; NaN
    without reference objects / detections), ``all`` (summed over classes) and ``class_agnostic``
    (matching boxes regardless of class)."""
    if len(gts) != len(dets):
        raise EvalError(f"{len(gts)} ground-truth frames but {len(dets)} detection frames; pass one per frame")
    k = len(names)
    tally = {mode: np.zeros((3, k), np.int64) for mode in ("class", "agnostic")}  # rows: tp, num_ref, num_det
    for gt, det in zip(gts, dets):
        ignore = _ignore_of(gt)
        keep = np.asarray(det.scores) >= score_thresh
        boxes, scores = det.boxes[keep], np.asarray(det.scores)[keep]
        dcls = np.asarray(det.class_ids, np.int64)[keep]
        gcls = np.asarray(gt.class_ids, np.int64)
        if ((dcls < 0) | (dcls >= k)).any() or ((gcls < 0) | (gcls >= k)).any():
            raise EvalError(f"class ids must lie in [0, {k}) for {k} class names")
        for mode, (gc, dc) in {"class": (gcls, dcls), "agnostic": (np.zeros_like(gcls), np.zeros_like(dcls))}.items():
            _, det_hit = _greedy_match(gt.boxes[~ignore], gc[~ignore], boxes, dc, scores, iou_thresh)
            absorbed = np.zeros(len(boxes), dtype=bool)
            if ignore.any() and len(boxes):
                iou = iou_matrix(boxes, gt.boxes[ignore])
                iou[dc[:, None] != gc[ignore][None, :]] = -1.0
                absorbed = ~det_hit & (iou.max(axis=1) >= iou_thresh)
            t = tally[mode]
            np.add.at(t[0], dcls[det_hit], 1)  # matched pairs, by the detection's (= its match's) class
            np.add.at(t[1], gcls[~ignore], 1)
            np.add.at(t[2], dcls[~absorbed], 1)
    per_class = {names[c]: _counts(*(int(v) for v in tally["class"][:, c])) for c in range(k)}
    return {
        "score_thresh": score_thresh, "iou_thresh": iou_thresh, "num_frames": len(gts),
        "per_class": per_class,
        "all": _counts(*(int(v) for v in tally["class"].sum(axis=1))),
        "class_agnostic": _counts(*(int(v) for v in tally["agnostic"].sum(axis=1))),
    }


@dataclass(frozen=True)
class _FrameTracks:
    """Per-frame, per-track view: track id -> (visibility, ignored, detected)."""

    tracks: dict[int, tuple[float, bool, bool]]


def _frame_tracks(gt: GroundTruth, det: Detections, score_thresh: float, iou_thresh: float) -> _FrameTracks:
    n = len(gt)
    if len(gt.track_ids) != n:
        raise EvalError(f"GroundTruth has {n} boxes but {len(gt.track_ids)} track ids; temporal metrics need them")
    vis = np.asarray(gt.visibility, np.float32) if len(gt.visibility) == n else np.ones(n, np.float32)
    ignore = _ignore_of(gt)
    detected = match_detected(gt, det, score_thresh, iou_thresh)
    return _FrameTracks(
        {int(t): (float(v), bool(ig), bool(d)) for t, v, ig, d in zip(gt.track_ids, vis, ignore, detected)}
    )


def _check_sequences(gt_seqs: Sequence[Sequence[GroundTruth]], det_seqs: Sequence[Sequence[Detections]]) -> None:
    if len(gt_seqs) != len(det_seqs):
        raise EvalError(f"{len(gt_seqs)} ground-truth sequences but {len(det_seqs)} detection sequences")
    for s, (g, d) in enumerate(zip(gt_seqs, det_seqs)):
        if len(g) != len(d):
            raise EvalError(f"sequence {s}: {len(g)} ground-truth frames but {len(d)} detection frames")


def temporal_flicker(
    gt_seqs: Sequence[Sequence[GroundTruth]],
    det_seqs: Sequence[Sequence[Detections]],
    score_thresh: float = 0.3,
    iou_thresh: float = 0.5,
) -> dict[str, Any]:
    """Fraction of consecutive frame pairs (t-1, t) of a non-ignored GT track, present in both,
    in which its detected state changes. Returns ``flicker`` (NaN without pairs), ``pairs``, ``switches``."""
    _check_sequences(gt_seqs, det_seqs)
    pairs = switches = 0
    for gts, dets in zip(gt_seqs, det_seqs):
        prev: _FrameTracks | None = None
        for gt, det in zip(gts, dets):
            cur = _frame_tracks(gt, det, score_thresh, iou_thresh)
            if prev is not None:
                for tid, (_, ig, d) in cur.tracks.items():
                    p = prev.tracks.get(tid)
                    if p is None or ig or p[1]:
                        continue
                    pairs += 1
                    switches += int(d != p[2])
            prev = cur
    return {"flicker": switches / pairs if pairs else float("nan"), "pairs": pairs, "switches": switches}


def post_occlusion_recall(
    gt_seqs: Sequence[Sequence[GroundTruth]],
    det_seqs: Sequence[Sequence[Detections]],
    window: int = 5,
    score_thresh: float = 0.3,
    iou_thresh: float = 0.5,
    visible: float = 0.3,
    hidden: float = 0.1,
) -> dict[str, Any]:
    """Recall on objects re-emerging from occlusion.

    Counted: instances at frame t that are non-ignored with visibility >= ``visible`` and whose
    track, in one of the previous ``window`` frames u, was hidden (visibility < ``hidden`` or
    absent from the ground truth) after having been visible (>= ``visible``) at some frame
    before u. Returns ``post_occlusion_recall`` (NaN if none counted), ``count``, ``detected``.
    """
    _check_sequences(gt_seqs, det_seqs)
    count = hit = 0
    for gts, dets in zip(gt_seqs, det_seqs):
        frames = [_frame_tracks(g, d, score_thresh, iou_thresh) for g, d in zip(gts, dets)]
        first_visible: dict[int, int] = {}
        for t, ft in enumerate(frames):
            for tid, (v, ig, d) in ft.tracks.items():
                if v >= visible and not ig:
                    seen = first_visible.get(tid)
                    if seen is not None and seen < t - 1:
                        lo = max(seen + 1, t - window)
                        if any(_hidden(frames[u], tid, hidden) for u in range(lo, t)):
                            count += 1
                            hit += int(d)
            for tid, (v, _, _) in ft.tracks.items():
                if v >= visible and tid not in first_visible:
                    first_visible[tid] = t
    return {"post_occlusion_recall": hit / count if count else float("nan"), "count": count, "detected": hit}


def _hidden(frame: _FrameTracks, tid: int, hidden: float) -> bool:
    entry = frame.tracks.get(tid)
    return entry is None or entry[0] < hidden


# ---------------------------------------------------------------------------------------------
# attention concentration
# ---------------------------------------------------------------------------------------------


def object_mask(gt: GroundTruth, shape: tuple[int, int], instance: np.ndarray | None = None) -> np.ndarray:
    """(H, W) bool pixels of non-ignored objects: from the instance mask (track ids, 0 background)
    when given, else the union of non-ignored GT boxes."""
    keep = ~_ignore_of(gt)
    if instance is not None:
        if instance.shape != shape:
            raise EvalError(f"instance mask {instance.shape} does not match the attention map {shape}")
        if len(gt.track_ids) == len(gt):
            return np.isin(instance, np.asarray(gt.track_ids)[keep]) & (instance != 0)
        return instance != 0
    return box_mask(np.asarray(gt.boxes)[keep], *shape)


def attention_concentration(attention: np.ndarray, gt: GroundTruth, instance: np.ndarray | None = None) -> float | None:
    """Attention mass share on object pixels divided by their area share (1 = uniform; > 1 =
    concentrated on objects). ``None`` when the frame has no object pixels or no attention mass."""
    a = np.asarray(attention, dtype=np.float64)
    if a.ndim != 2:
        raise EvalError(f"attention must be (H, W) at image resolution, got {a.shape}; upsample it first")
    if (a < 0).any():
        raise EvalError("attention must be non-negative")
    mask = object_mask(gt, (int(a.shape[0]), int(a.shape[1])), instance)
    area_share = mask.mean()
    total = a.sum()
    if area_share == 0 or total <= 0:
        return None
    return float(a[mask].sum() / total / area_share)


# ---------------------------------------------------------------------------------------------
# accumulator
# ---------------------------------------------------------------------------------------------


class EvalAccumulator:
    """Collects frames in sequence order and computes every metric at once.

    ``add`` any subset of (gt, detections), (seg_pred, seg_gt) and attention per frame; frames
    with the same ``sequence`` id must arrive in time order (interleaving sequences is fine).
    """

    def __init__(
        self,
        num_det_classes: int = classes.NUM_DETECTION,
        det_names: Sequence[str] = classes.DETECTION_NAMES,
        num_sem_classes: int = classes.NUM_SEMANTIC,
        sem_names: Sequence[str] = classes.SEMANTIC_NAMES,
        score_thresh: float = 0.3,
        window: int = 5,
    ) -> None:
        self.num_det_classes = num_det_classes
        self.det_names = tuple(det_names)
        self.score_thresh = score_thresh
        self.window = window
        self._seqs: dict[Hashable, tuple[list[GroundTruth], list[Detections]]] = {}
        self._seg = SegmentationMeter(num_sem_classes, classes.IGNORE_INDEX, sem_names)
        self._has_seg = False
        self._att: list[float] = []
        self._att_frames = 0

    def add(
        self,
        sequence: Hashable,
        gt: GroundTruth | None = None,
        detections: Detections | None = None,
        seg_pred: np.ndarray | None = None,
        seg_gt: np.ndarray | None = None,
        attention: np.ndarray | None = None,
        instance: np.ndarray | None = None,
    ) -> None:
        if (gt is None) != (detections is None):
            raise EvalError("pass gt and detections together (or neither) for detection metrics")
        if (seg_pred is None) != (seg_gt is None):
            raise EvalError("pass seg_pred and seg_gt together (or neither) for segmentation metrics")
        if gt is not None and detections is not None:
            g, d = self._seqs.setdefault(sequence, ([], []))
            g.append(gt)
            d.append(detections)
        if seg_pred is not None and seg_gt is not None:
            self._seg.update(seg_pred, seg_gt)
            self._has_seg = True
        if attention is not None:
            if gt is None:
                raise EvalError("attention concentration needs the frame's gt")
            self._att_frames += 1
            value = attention_concentration(attention, gt, instance)
            if value is not None:
                self._att.append(value)

    def compute(self) -> dict[str, Any]:
        gt_seqs = [g for g, _ in self._seqs.values()]
        det_seqs = [d for _, d in self._seqs.values()]
        flat_gt = [g for seq in gt_seqs for g in seq]
        flat_det = [d for seq in det_seqs for d in seq]
        nan = float("nan")
        out: dict[str, Any] = {}
        if flat_gt:
            out["detection"] = detection_map(flat_gt, flat_det, self.num_det_classes, self.det_names)
            out["temporal"] = temporal_flicker(gt_seqs, det_seqs, self.score_thresh)
            out["occlusion"] = post_occlusion_recall(gt_seqs, det_seqs, self.window, self.score_thresh)
        if self._has_seg:
            out["segmentation"] = self._seg.compute()
        if self._att_frames:
            out["attention"] = {
                "concentration": float(np.mean(self._att)) if self._att else nan,
                "frames": len(self._att),
            }
        out["summary"] = {
            "mAP50": out.get("detection", {}).get("mAP50", nan),
            "mAP": out.get("detection", {}).get("mAP", nan),
            "mIoU": out.get("segmentation", {}).get("mIoU", nan),
            "flicker": out.get("temporal", {}).get("flicker", nan),
            "post_occlusion_recall": out.get("occlusion", {}).get("post_occlusion_recall", nan),
            "attention_concentration": out.get("attention", {}).get("concentration", nan),
        }
        return out


def to_jsonable(obj: Any) -> Any:
    """Deep copy with NaN/inf floats as None and numpy scalars/arrays as Python values (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
