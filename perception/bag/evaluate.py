"""Evaluation and golden comparison of recorded outputs, straight from bag files (no ROS graph).

Outputs (a replay's bag): ``<cam>/detections`` (Detection2DArray) and ``<cam>/segmentation``
(mono8), log time = receipt; ``/replay/events`` gives each input's publish time (latency).
Ground truth (a drive's bag, :mod:`perception.bag.drive`): ``<cam>/ground_truth`` and
``<cam>/ground_truth/semantic``. Frames are matched by camera namespace and header stamp; with
several passes (loops) the first output per stamp is evaluated and every pass counts for latency.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perception.bag import BagError
from perception.bag import messages as m
from perception.bag.cdr import header_stamp_ns
from perception.bag.golden import FrameKey, GoldenReport, Tolerances, compare
from perception.bag.io import deserialize, open_bag, read_messages
from perception.core.types import Detections, GroundTruth

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
    """Every metric of :class:`~perception.train.metrics.EvalAccumulator` for the frames of ``gt_bag`` that
    ``output_bag`` answered, plus latency percentiles and coverage; and up to ``samples`` overlays."""
    from perception.train.metrics import EvalAccumulator

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
    overlays = [_overlay(gtb.images[k], outputs.detections[k], gtb.gt.get(k, GroundTruth()), outputs.masks.get(k))
                for k in pick if k in gtb.images]
    return metrics, overlays


def golden_compare(expected_bag: str | Path, actual_bag: str | Path, tol: Tolerances | None = None) -> GoldenReport:
    """Compare two output bags frame by frame (detections; masks where both recorded them)."""
    exp, act = load_outputs(expected_bag), load_outputs(actual_bag)
    shared_masks = {k for k in exp.masks if k[0] in {c for c, _ in act.masks}}
    return compare(exp.detections, act.detections, {k: exp.masks[k] for k in shared_masks}, act.masks,
                   tol or Tolerances())
