"""3D detection metrics, nuScenes-style (pure numpy): centre-distance AP and true-positive errors.

As the nuScenes detection benchmark (Caesar et al. 2020, ``nuscenes.eval.detection.algo``) does it:

- a prediction and a ground-truth box match when their bird's-eye-view centres are within a
  distance threshold (0.5, 1, 2, 4 m), not by IoU;
- per class, all predictions of all frames are taken in descending score order and each is matched
  greedily with the nearest unmatched ground-truth box of its frame and class within the threshold
  (true positive) or is a false positive;
- precision is interpolated at 101 recall points (0 beyond the highest recall reached) and
  AP = mean(max(precision - 0.1, 0)) / 0.9 over recalls above 0.1 (nuScenes' min_recall and
  min_precision), so operating points with precision under 10 % count nothing;
- the true-positive errors at the 2 m threshold: ATE (BEV centre distance, m), ASE (1 - 3D IoU of the
  two boxes aligned on centre and heading) and AOE (smallest heading difference, rad, modulo
  ``yaw_period``). nuScenes averages them along the PR curve; here they are the plain mean over
  every true positive, which weighs the same matches without the interpolation.

Ground truth marked ``ignore`` (too small, occluded, out of range) is a don't-care: a prediction
whose only match within the threshold is an ignored box is dropped (neither true nor false positive).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from perception.core.boxes3d import Boxes3D

THRESHOLDS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
TP_THRESHOLD = 2.0
MIN_RECALL = 0.1
MIN_PRECISION = 0.1
RECALL_POINTS = 101


class Metrics3DError(ValueError):
    """Bad input to a 3D metric (frame counts disagree). The boxes (:class:`Boxes3D`: predictions with
    ``scores``, ground truth with ``ignore``) check themselves."""


def yaw_difference(a: np.ndarray | float, b: np.ndarray | float, period: float = 2 * np.pi) -> np.ndarray:
    """Smallest absolute difference of headings ``a`` and ``b`` (rad) modulo ``period``."""
    d = np.mod(np.asarray(a, np.float64) - np.asarray(b, np.float64), period)
    return np.asarray(np.minimum(d, period - d))


def aligned_iou(size_a: np.ndarray, size_b: np.ndarray) -> np.ndarray:
    """3D IoU of boxes of sizes (N, 3) ``size_a`` and ``size_b`` with the same centre and heading."""
    a, b = np.atleast_2d(size_a), np.atleast_2d(size_b)
    inter = np.prod(np.minimum(a, b), axis=1)
    return np.asarray(inter / (np.prod(a, axis=1) + np.prod(b, axis=1) - inter))


def average_precision(tp: np.ndarray, scores: np.ndarray, num_gt: int) -> float:
    """nuScenes AP of scored decisions ``tp`` (True: true positive, False: false positive) against
    ``num_gt`` ground-truth boxes; NaN without ground truth."""
    if num_gt <= 0:
        return float("nan")
    if not len(tp):
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = np.asarray(tp, bool)[order]
    ctp, cfp = np.cumsum(hits), np.cumsum(~hits)
    prec = ctp / (ctp + cfp)
    rec = ctp / num_gt
    prec = np.interp(np.linspace(0.0, 1.0, RECALL_POINTS), rec, prec, right=0.0)
    tail = prec[round(100 * MIN_RECALL) + 1 :] - MIN_PRECISION
    return float(np.mean(np.clip(tail, 0.0, None)) / (1.0 - MIN_PRECISION))


@dataclass(frozen=True)
class ClassResult:
    """One class at one threshold: AP, counts, and the true positives' errors (NaN when none)."""

    ap: float
    num_gt: int
    num_pred: int
    tp: int
    fp: int
    ate: float
    ase: float
    aoe: float


def match_class(gt: Sequence[Boxes3D], pred: Sequence[Boxes3D], class_id: int, threshold: float,
                yaw_period: float = 2 * np.pi) -> ClassResult:  # fmt: skip
    """Greedy score-ordered centre-distance matching of the ``class_id`` boxes over all frames."""
    if len(gt) != len(pred):
        raise Metrics3DError(f"{len(gt)} ground-truth frames but {len(pred)} predicted frames")
    cand: list[tuple[float, int, int]] = []  # (score, frame, row)
    for f, p in enumerate(pred):
        cand += [(float(p.scores[k]), f, int(k)) for k in np.flatnonzero(p.class_ids == class_id)]
    cand.sort(key=lambda c: -c[0])
    gt_rows = [np.flatnonzero(g.class_ids == class_id) for g in gt]
    taken = [np.zeros(len(r), bool) for r in gt_rows]
    num_gt = int(sum((~g.ignore[r]).sum() for g, r in zip(gt, gt_rows, strict=True)))
    decisions: list[bool] = []
    scores: list[float] = []
    ate: list[float] = []
    ase: list[float] = []
    aoe: list[float] = []
    for score, f, k in cand:
        g, rows = gt[f], gt_rows[f]
        if not len(rows):
            decisions.append(False)
            scores.append(score)
            continue
        d = np.linalg.norm(g.centers[rows, :2] - pred[f].centers[k, :2], axis=1)
        ok = d <= threshold
        real = np.flatnonzero(ok & ~taken[f] & ~g.ignore[rows])
        if len(real):
            j = int(real[np.argmin(d[real])])
            taken[f][j] = True
            decisions.append(True)
            scores.append(score)
            gi = rows[j]
            ate.append(float(d[j]))
            ase.append(float(1.0 - aligned_iou(g.sizes[gi], pred[f].sizes[k])[0]))
            aoe.append(float(yaw_difference(pred[f].yaws[k], g.yaws[gi], yaw_period)))
        elif not (ok & g.ignore[rows]).any():
            decisions.append(False)
            scores.append(score)
        # else: its match is a don't-care box: dropped
    tp = int(sum(decisions))

    def mean(v: list[float]) -> float:
        return float(np.mean(v)) if v else float("nan")

    return ClassResult(average_precision(np.array(decisions, bool), np.array(scores), num_gt), num_gt, len(decisions),
                       tp, len(decisions) - tp, mean(ate), mean(ase), mean(aoe))  # fmt: skip


def detection_metrics(gt: Sequence[Boxes3D], pred: Sequence[Boxes3D], classes: dict[int, str],
                      thresholds: Sequence[float] = THRESHOLDS, yaw_period: float = 2 * np.pi
                      ) -> dict[str, Any]:  # fmt: skip
    """Per class (by name): AP at each threshold (``AP@2m`` ...), their mean ``AP`` and the
    true-positive errors at 2 m; plus ``mAP`` over the classes with ground truth."""
    per_class: dict[str, dict[str, float]] = {}
    for cid, name in classes.items():
        row: dict[str, float] = {}
        for thr in thresholds:
            r = match_class(gt, pred, cid, thr, yaw_period)
            row[f"AP@{thr:g}m"] = r.ap
            if thr == TP_THRESHOLD:
                row.update(num_gt=r.num_gt, num_pred=r.num_pred, tp=r.tp, fp=r.fp, ATE=r.ate, ASE=r.ase, AOE=r.aoe)
        row["AP"] = float(np.mean([row[f"AP@{t:g}m"] for t in thresholds]))
        per_class[name] = row
    with_gt = [r["AP"] for r in per_class.values() if np.isfinite(r["AP"])]
    return {"per_class": per_class, "mAP": float(np.mean(with_gt)) if with_gt else float("nan"),
            "thresholds": list(thresholds)}  # fmt: skip
