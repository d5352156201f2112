"""Golden regression: a replay's outputs against a stored expected bag, within tolerances.

Frames are keyed by (camera topic, header stamp). For each expected frame: every expected box
must match an actual box of the same class with IoU >= ``box_iou`` and |score delta| <=
``score_delta``, and vice versa; segmentation masks must agree on >= ``mask_agreement`` of the
pixels. Boxes whose score lies within ``score_delta`` of the publishing threshold may appear on
one side only (CPU numerics differ slightly between machines). Pure functions on core types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from perception.core.boxes import iou_matrix
from perception.core.types import Detections

FrameKey = tuple[str, int]  # (topic, header stamp ns)


@dataclass(frozen=True)
class Tolerances:
    box_iou: float = 0.9
    score_delta: float = 0.05
    mask_agreement: float = 0.98
    score_threshold: float = 0.3  # the threshold the outputs were published with


@dataclass(frozen=True)
class FrameDiff:
    topic: str
    stamp_ns: int
    index: int  # position of the frame in the expected bag (per topic)
    reason: str

    def __str__(self) -> str:
        return f"frame {self.index} of {self.topic} (stamp {self.stamp_ns * 1e-9:.6f} s): {self.reason}"


@dataclass
class GoldenReport:
    frames_compared: int = 0
    diffs: list[FrameDiff] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.diffs and self.frames_compared > 0

    def summary(self, first: int = 5) -> str:
        if self.frames_compared == 0:
            return "golden: no frames compared (the bags share no topic/stamp)"
        if self.ok:
            return f"golden: {self.frames_compared} frames match within tolerances"
        lines = [f"golden: REGRESSION in {len(self.diffs)} of {self.frames_compared} frames; first differing:"]
        lines += [f"  {d}" for d in sorted(self.diffs, key=lambda d: (d.index, d.topic))[:first]]
        return "\n".join(lines)


def compare_detections(expected: Detections, actual: Detections, tol: Tolerances) -> str:
    """'' when they agree within ``tol``, else why not."""
    n, k = len(expected), len(actual)
    iou = iou_matrix(expected.boxes, actual.boxes) if n and k else np.zeros((n, k))
    if n and k:  # identical boxes match even when degenerate (zero area at the image border)
        same = np.all(np.abs(expected.boxes[:, None, :] - actual.boxes[None, :, :]) < 1e-3, axis=2)
        iou = np.where(same, 1.0, iou)
        iou[np.asarray(expected.class_ids)[:, None] != np.asarray(actual.class_ids)[None, :]] = -1.0
    used = np.zeros(k, bool)
    for i in np.argsort(-np.asarray(expected.scores), kind="stable"):
        cand = np.where(used, -1.0, iou[i]) if k else np.zeros(0)
        j = int(np.argmax(cand)) if k else -1
        if j >= 0 and cand[j] >= tol.box_iou:
            used[j] = True
            delta = abs(float(expected.scores[i]) - float(actual.scores[j]))
            if delta > tol.score_delta:
                return f"box {i} (class {int(expected.class_ids[i])}) score {expected.scores[i]:.3f} -> " \
                       f"{actual.scores[j]:.3f} (delta {delta:.3f} > {tol.score_delta})"
        elif float(expected.scores[i]) >= tol.score_threshold + tol.score_delta:
            best = float(cand.max()) if k else 0.0
            return f"expected box {i} (class {int(expected.class_ids[i])}, score {expected.scores[i]:.3f}) " \
                   f"missing (best IoU {max(best, 0.0):.3f} < {tol.box_iou})"
    extra = [j for j in range(k) if not used[j] and float(actual.scores[j]) >= tol.score_threshold + tol.score_delta]
    if extra:
        j = extra[0]
        return f"{len(extra)} unexpected box(es), e.g. class {int(actual.class_ids[j])} score {actual.scores[j]:.3f}"
    return ""


def mask_agreement(expected: np.ndarray, actual: np.ndarray) -> float:
    if expected.shape != actual.shape:
        return 0.0
    return float(np.mean(expected == actual)) if expected.size else 1.0


def compare(
    expected_dets: Mapping[FrameKey, Detections],
    actual_dets: Mapping[FrameKey, Detections],
    expected_masks: Mapping[FrameKey, np.ndarray] | None = None,
    actual_masks: Mapping[FrameKey, np.ndarray] | None = None,
    tol: Tolerances | None = None,
) -> GoldenReport:
    """Every expected frame against the actual one with the same key (a missing frame is a diff)."""
    tol = tol or Tolerances()
    report = GoldenReport()
    for kind, exp, act in (("detections", expected_dets, actual_dets),
                           ("masks", expected_masks or {}, actual_masks or {})):
        per_topic: dict[str, int] = {}
        for key in sorted(exp, key=lambda k: (k[1], k[0])):
            topic, stamp = key
            index = per_topic.get(topic, 0)
            per_topic[topic] = index + 1
            report.frames_compared += 1
            if key not in act:
                report.diffs.append(FrameDiff(topic, stamp, index, f"no {kind} output for this frame"))
                continue
            if kind == "detections":
                why = compare_detections(exp[key], act[key], tol)  # type: ignore[arg-type]
            else:
                agree = mask_agreement(exp[key], act[key])  # type: ignore[arg-type]
                why = "" if agree >= tol.mask_agreement else \
                    f"mask agreement {agree:.4f} < {tol.mask_agreement}"
            if why:
                report.diffs.append(FrameDiff(topic, stamp, index, why))
    return report
