"""Multi-object tracking metrics (pure numpy/scipy): CLEAR MOT (MOTA, MOTP, ID switches), the
identity metrics IDF1 / IDP / IDR, and the velocity error of matched objects.

Objects are matched by centre distance (``threshold`` metres, nuScenes-style) rather than box IoU.

- CLEAR MOT (Bernardin & Stiefelhagen 2008), as py-motmetrics does it: a ground-truth object
  keeps its previous partner while they stay within the threshold; the others are matched by
  a min-cost assignment on distance. An ID switch is counted when an object's partner differs
  from the last one it had (gaps in between included). MOTA = 1 - (FN + FP + IDSW) / GT.
- IDF1 (Ristani et al. 2016): one global one-to-one assignment of ground-truth trajectories to
  predicted trajectories that maximises the frames they agree on (IDTP: both present, within the
  threshold); IDF1 = 2 IDTP / (GT detections + predicted detections).
- Ground truth marked ``ignore`` (too small or occluded to be required): predictions matched to it
  are dropped (neither TP nor FP) and it counts as no miss, for both metric families.

- AMOTA (nuScenes, Weng et al. 2020), :func:`amota`: MOTAR = max(0, 1 - (IDSW + FP) / TP) (MOTA
  normalised by the recall reached) averaged over recall thresholds, each reached by keeping only the
  predictions scoring at least the threshold that gives that recall (``TrackFrame.scores``), as the
  nuScenes devkit computes it; recalls the tracks never reach count 0.

HOTA is not implemented here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from perception.tracking.types import TrackingError


def _empty(dtype: type) -> np.ndarray:
    return np.zeros(0, dtype)


@dataclass(frozen=True)
class TrackFrame:
    """Objects of one frame, ground truth or predicted: ``ids`` (N,), ``positions`` (N, D) (use x, y
    for bird's-eye-view matching), optional ``velocities`` (N, 2) (NaN rows: unknown), ``classes``
    (N,), ``ignore`` (N,) (ground truth that need not be tracked) and ``scores`` (N,) (predictions'
    confidence, for :func:`amota`)."""

    ids: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    positions: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    velocities: np.ndarray | None = None
    classes: np.ndarray | None = None
    ignore: np.ndarray | None = None
    scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        ids = np.asarray(self.ids, np.int64).reshape(-1)
        set_(self, "ids", ids)
        pos = np.asarray(self.positions, np.float64)
        set_(self, "positions", pos.reshape(len(ids), -1) if pos.size else np.zeros((len(ids), 2)))
        if len(self.positions) != len(ids):
            raise TrackingError(f"TrackFrame: {len(ids)} ids but {len(self.positions)} positions")
        if len(np.unique(ids)) != len(ids):
            raise TrackingError("TrackFrame: ids repeat within a frame; every object needs its own id")
        for name in ("velocities", "classes", "ignore", "scores"):
            v = getattr(self, name)
            if v is not None and len(v) != len(ids):
                raise TrackingError(f"TrackFrame.{name}: {len(v)} rows for {len(ids)} objects")
        if self.ignore is not None:
            set_(self, "ignore", np.asarray(self.ignore, bool))

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, keep: np.ndarray) -> TrackFrame:
        def sub(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.asarray(a)[keep]

        return TrackFrame(self.ids[keep], self.positions[keep], sub(self.velocities), sub(self.classes),
                          sub(self.ignore), sub(self.scores))  # fmt: skip

    def of_class(self, class_ids: Iterable[int]) -> TrackFrame:
        if self.classes is None:
            raise TrackingError("TrackFrame.of_class needs classes")
        return self.select(np.isin(self.classes, list(class_ids)))


@dataclass(frozen=True)
class TrackingMetrics:
    num_frames: int
    num_gt: int  # ground-truth detections (not ignored)
    num_pred: int  # predicted detections (not matched to ignored ground truth)
    tp: int
    fp: int
    fn: int
    id_switches: int
    mota: float
    motp: float  # mean distance of matches (m)
    idtp: int
    idf1: float
    idp: float
    idr: float
    velocity_error: float  # mean |v_pred - v_gt| (m/s) over matches with known velocities; NaN when none
    velocity_error_median: float
    velocity_count: int
    num_gt_ids: int
    num_pred_ids: int
    tp_scores: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)  # scores of matched predictions

    def summary(self) -> str:
        return (f"IDF1 {self.idf1:.3f}  MOTA {self.mota:.3f}  MOTP {self.motp:.2f} m  IDSW {self.id_switches}  "
                f"FP {self.fp}  FN {self.fn}  GT {self.num_gt}  vel.err {self.velocity_error:.2f} m/s "
                f"(median {self.velocity_error_median:.2f}, n={self.velocity_count})")  # fmt: skip


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    return np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)


def _match(dist: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Min-cost one-to-one matching on distance, pairs farther than ``threshold`` excluded."""
    if dist.size == 0:
        return []
    ok = dist <= threshold
    rows, cols = linear_sum_assignment(np.where(ok, dist, 1e9))
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if ok[r, c]]


def evaluate_tracking(gt: Sequence[TrackFrame], pred: Sequence[TrackFrame], threshold: float = 2.0
                      ) -> TrackingMetrics:  # fmt: skip
    """CLEAR MOT, identity metrics and velocity error of ``pred`` against ``gt`` (one TrackFrame per
    frame each, same length), matching within ``threshold`` (same units as the positions)."""
    if len(gt) != len(pred):
        raise TrackingError(f"{len(gt)} ground-truth frames but {len(pred)} predicted frames")
    last_partner: dict[int, int] = {}  # gt id -> last matched pred id
    tp = fp = fn = idsw = 0
    dist_sum = 0.0
    vel_err: list[float] = []
    tp_scores: list[float] = []
    pairs: dict[tuple[int, int], int] = {}  # (gt id, pred id) -> frames within threshold (IDF1)
    gt_count: dict[int, int] = {}
    pred_count: dict[int, int] = {}
    for g, p in zip(gt, pred, strict=True):
        ign = g.ignore if g.ignore is not None else np.zeros(len(g), bool)
        D = _distances(g.positions, p.positions)
        g_index = {int(i): k for k, i in enumerate(g.ids)}
        p_index = {int(i): k for k, i in enumerate(p.ids)}
        matches: list[tuple[int, int]] = []
        # 1. correspondences kept from the previous frames
        for gid, pid in last_partner.items():
            gi, pi = g_index.get(gid), p_index.get(pid)
            if gi is not None and pi is not None and D[gi, pi] <= threshold and pi not in {m[1] for m in matches}:
                matches.append((gi, pi))
        # 2. the rest by min-cost assignment
        free_g = np.setdiff1d(np.arange(len(g)), [m[0] for m in matches])
        free_p = np.setdiff1d(np.arange(len(p)), [m[1] for m in matches])
        for r, c in _match(D[np.ix_(free_g, free_p)], threshold):
            matches.append((int(free_g[r]), int(free_p[c])))
        dropped_pred = {pi for gi, pi in matches if ign[gi]}
        for gi, pi in matches:
            if ign[gi]:
                continue
            gid, pid = int(g.ids[gi]), int(p.ids[pi])
            if gid in last_partner and last_partner[gid] != pid:
                idsw += 1
            last_partner[gid] = pid
            tp += 1
            dist_sum += float(D[gi, pi])
            if p.scores is not None:
                tp_scores.append(float(p.scores[pi]))
            if g.velocities is not None and p.velocities is not None:
                e = np.linalg.norm(np.asarray(p.velocities[pi])[:2] - np.asarray(g.velocities[gi])[:2])
                if np.isfinite(e):
                    vel_err.append(float(e))
        n_gt = int((~ign).sum())
        n_pred = len(p) - len(dropped_pred)
        fn += n_gt - sum(1 for gi, _ in matches if not ign[gi])
        fp += n_pred - sum(1 for gi, _ in matches if not ign[gi])
        # identity metrics: every (gt, pred) pair within the threshold, ignored rows and their preds out
        keep_g = np.flatnonzero(~ign)
        keep_p = np.array([k for k in range(len(p)) if k not in dropped_pred], np.int64)
        for gi in keep_g:
            gid = int(g.ids[gi])
            gt_count[gid] = gt_count.get(gid, 0) + 1
            for pi in keep_p[D[gi, keep_p] <= threshold] if len(keep_p) else []:
                key = (gid, int(p.ids[pi]))
                pairs[key] = pairs.get(key, 0) + 1
        for pi in keep_p:
            pid = int(p.ids[pi])
            pred_count[pid] = pred_count.get(pid, 0) + 1
    num_gt, num_pred = sum(gt_count.values()), sum(pred_count.values())
    idtp = _global_id_matches(pairs)
    ve = np.asarray(vel_err)
    return TrackingMetrics(
        num_frames=len(gt), num_gt=num_gt, num_pred=num_pred, tp=tp, fp=fp, fn=fn, id_switches=idsw,
        mota=1.0 - (fn + fp + idsw) / num_gt if num_gt else float("nan"),
        motp=dist_sum / tp if tp else float("nan"), idtp=idtp,
        idf1=2 * idtp / (num_gt + num_pred) if num_gt + num_pred else float("nan"),
        idp=idtp / num_pred if num_pred else float("nan"), idr=idtp / num_gt if num_gt else float("nan"),
        velocity_error=float(ve.mean()) if len(ve) else float("nan"),
        velocity_error_median=float(np.median(ve)) if len(ve) else float("nan"), velocity_count=len(ve),
        num_gt_ids=len(gt_count), num_pred_ids=len(pred_count), tp_scores=np.asarray(tp_scores, np.float64),
    )  # fmt: skip


@dataclass(frozen=True)
class Amota:
    """:func:`amota`'s result: AMOTA, and per recall threshold the score threshold used (NaN: the
    recall is never reached) and the MOTAR there."""

    amota: float
    recalls: np.ndarray
    score_thresholds: np.ndarray
    motar: np.ndarray


def amota(gt: Sequence[TrackFrame], pred: Sequence[TrackFrame], threshold: float = 2.0, num_thresholds: int = 40,
          min_recall: float = 0.1) -> Amota:  # fmt: skip
    """nuScenes AMOTA of scored tracks (every predicted frame needs ``scores``).

    The recall thresholds are ``linspace(0, 1, num_thresholds)`` from ``min_recall`` on (nuScenes:
    40 and 0.1). For each recall r the score threshold is the score of the ceil(r x GT)-th best-scoring
    match of the unfiltered run; the predictions scoring at least that are evaluated again
    (:func:`evaluate_tracking`) and MOTAR = max(0, 1 - (IDSW + FP) / TP) is taken there (nuScenes'
    1 - (IDSW + FP + FN - (1 - recall) GT) / (recall GT) with the recall reached, which is the same).
    AMOTA is the mean over the recall thresholds, 0 for those no threshold reaches."""
    if any(p.scores is None for p in pred):
        raise TrackingError("amota needs TrackFrame.scores on every predicted frame (e.g. existence x class "
                            "probability)")  # fmt: skip
    if num_thresholds < 2 or not 0.0 <= min_recall < 1.0:
        raise TrackingError(f"amota: need num_thresholds >= 2 (got {num_thresholds}) and min_recall in [0, 1)")
    full = evaluate_tracking(gt, pred, threshold)
    recalls = np.linspace(0.0, 1.0, num_thresholds)
    recalls = recalls[recalls >= min_recall - 1e-12]
    ranked = np.sort(full.tp_scores)[::-1]
    thresholds = np.full(len(recalls), np.nan)
    motar = np.zeros(len(recalls))
    done: dict[float, float] = {}
    for k, r in enumerate(recalls):
        need = int(np.ceil(r * full.num_gt - 1e-9))
        if full.num_gt == 0 or need > len(ranked):
            continue
        thr = float(ranked[max(need, 1) - 1])
        thresholds[k] = thr
        if thr not in done:
            m = evaluate_tracking(gt, [p.select(np.asarray(p.scores) >= thr) for p in pred], threshold)
            done[thr] = max(0.0, 1.0 - (m.id_switches + m.fp) / m.tp) if m.tp else 0.0
        motar[k] = done[thr]
    return Amota(float(motar.mean()) if len(motar) else float("nan"), recalls, thresholds, motar)


def _global_id_matches(pairs: dict[tuple[int, int], int]) -> int:
    """IDTP: the largest total of agreeing frames over one-to-one assignments of gt ids to pred ids.

    Ristani et al. pose it as a min-cost assignment over (gt + pred) x (gt + pred) with IDFN/IDFP
    costs; since IDFN = GT - IDTP and IDFP = PRED - IDTP, minimising their sum is maximising IDTP,
    which one assignment on the agreement matrix does (unassigned trajectories agree on nothing)."""
    if not pairs:
        return 0
    gids = sorted({k[0] for k in pairs})
    pids = sorted({k[1] for k in pairs})
    gi = {g: i for i, g in enumerate(gids)}
    pi = {p: i for i, p in enumerate(pids)}
    A = np.zeros((len(gids), len(pids)))
    for (g, p), n in pairs.items():
        A[gi[g], pi[p]] = n
    rows, cols = linear_sum_assignment(A, maximize=True)
    return int(A[rows, cols].sum())
