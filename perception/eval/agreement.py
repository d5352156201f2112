"""Agreement on unlabelled real footage: our networks against an independent reference detector.

Each frame of the footage goes through the same ``Perceptor`` the ROS node uses and through the
evaluation-only reference detector (:mod:`perception.footage.reference`); the reference's detections
are pseudo-labels. Reported per class at one operating point: recall (share of the reference's objects
we find, IoU >= 0.5, same class) and precision (share of our detections the reference confirms), with
pedestrian recall as the headline; plus COCO AP against the pseudo-labels and overlay stills.
This measures agreement with another detector, not accuracy: the reference misses and invents
objects too (it runs at 300x300 and has no notion of our traffic signs beyond COCO's stop signs).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perception.core.types import Detections, GroundTruth
from perception.footage.reference import ReferenceDetector, pseudo_labels
from perception.footage.source import Footage
from perception.pipeline.perceptor import FrameInput, Perceptor, PerceptorConfig
from perception.runtime.torch_backend import TorchBackend


@dataclass(frozen=True)
class AgreementConfig:
    score_thresh: float = 0.3  # our operating point for recall / precision (AP uses every score >= 0.05)
    iou_thresh: float = 0.5
    stills: int = 4  # overlay stills (ours | reference | attention), evenly spread over the frames
    precision: str = "fp32"  # torch backend precision


@dataclass
class _Run:
    name: str
    checkpoint: str
    backend: TorchBackend
    perceptor: Perceptor | None = None
    dets: list[Detections] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    stills: list[np.ndarray] = field(default_factory=list)


def _still(rgb: np.ndarray, ours: Detections, attention: np.ndarray | None, ref: Detections, gt: GroundTruth,
           name: str, ref_name: str, score_thresh: float, ref_thresh: float) -> np.ndarray:
    """ours (with the pseudo-labels as thin white / grey boxes) | the reference | our attention."""
    from perception.core.viz import draw_detections, overlay_heatmap, side_by_side

    panels = [draw_detections(rgb, ours.select(ours.scores >= score_thresh), gt=gt),
              draw_detections(rgb, ref.select(ref.scores >= ref_thresh))]
    titles = [f"ours: {name}", f"reference: {ref_name}"]
    if attention is not None:
        panels.append(overlay_heatmap(rgb, attention))
        titles.append("our attention")
    return side_by_side(panels, titles)


def _summary(agreement: dict[str, Any], detection: dict[str, Any]) -> dict[str, float]:
    ped = agreement["per_class"]["pedestrian"]
    return {
        "pedestrian_recall": ped["recall"], "pedestrian_precision": ped["precision"],
        "recall": agreement["all"]["recall"], "precision": agreement["all"]["precision"],
        "class_agnostic_recall": agreement["class_agnostic"]["recall"], "mAP50": detection["mAP50"],
    }


def _latency(values: Sequence[float]) -> dict[str, float | int]:
    v = np.asarray(values, np.float64)
    return {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "frames": len(v)}


def evaluate_agreement(
    checkpoints: Sequence[str | Path],
    footage: Footage,
    reference: ReferenceDetector,
    cfg: AgreementConfig | None = None,
    progress: bool = True,
) -> tuple[dict[str, dict[str, Any]], dict[str, list[np.ndarray]], list[Detections]]:
    """Stream ``footage`` once through every checkpoint (torch backend) and the reference.

    Returns ``(metrics by checkpoint name, overlay stills by name, the reference's detections per frame)``;
    each metrics dict renders with :func:`perception.eval.report.write_eval_report`."""
    from tqdm import tqdm

    from perception.eval.metrics import detection_map, recall_precision
    from perception.models.checkpoint import checkpoint_input_size
    from perception.runtime.torch_backend import TorchBackendConfig

    cfg = cfg or AgreementConfig()
    rcfg = reference.config
    paths = [Path(str(c)) for c in checkpoints]
    names = [p.name.removesuffix(".safetensors") for p in paths]
    if len(set(names)) < len(names):  # runs/a/model, runs/b/model -> a_model, b_model
        names = [f"{p.parent.name}_{n}" for p, n in zip(paths, names)]
    runs = [_Run(n, str(c), TorchBackend(c, checkpoint_input_size(c), TorchBackendConfig(precision=cfg.precision)))
            for n, c in zip(names, checkpoints)]
    still_at = set(np.linspace(footage.start, footage.stop - 1, num=max(0, cfg.stills)).astype(int).tolist())
    ref_dets: list[Detections] = []
    gts: list[GroundTruth] = []
    ref_ms: list[float] = []
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        for run in runs:
            stack.enter_context(run.backend)
            # no segmentation: real footage has no labels for it; attention for the stills
            run.perceptor = Perceptor(run.backend, PerceptorConfig(score_thresh=0.05, segmentation=False))
        for frame in tqdm(footage, total=len(footage), desc="footage", disable=not progress, unit="frame"):
            t = time.perf_counter()
            ref = reference.detect(frame.rgb)
            ref_ms.append(1e3 * (time.perf_counter() - t))
            gt = pseudo_labels(ref, rcfg.score_thresh, rcfg.ignore_thresh)
            ref_dets.append(ref)
            gts.append(gt)
            for run in runs:
                assert run.perceptor is not None
                r = run.perceptor.process(FrameInput("footage", frame.rgb, frame.stamp, scene_cut=frame.scene_cut))
                run.dets.append(r.detections)
                run.latency_ms.append(r.total_ms)
                if frame.index in still_at:
                    run.stills.append(_still(frame.rgb, r.detections, r.attention, ref, gt,
                                             str(run.backend.meta.get("name", run.name)), reference.title,
                                             cfg.score_thresh, rcfg.ignore_thresh))
    seconds = time.perf_counter() - t0
    source = {"path": footage.info.path, "kind": footage.info.kind, "range": str(footage.range),
              "first": footage.start, "stop": footage.stop, "num_frames": len(footage),
              "width": footage.info.width, "height": footage.info.height, "fps": footage.info.fps}
    ref_info = {"name": reference.name, "description": reference.description, "model_dir": str(reference.model_dir),
                "score_thresh": rcfg.score_thresh, "ignore_thresh": rcfg.ignore_thresh,
                "latency_ms": _latency(ref_ms),
                "objects": int(sum(int((~g.ignore).sum()) for g in gts)),
                "dont_care": int(sum(int(g.ignore.sum()) for g in gts))}
    results: dict[str, dict[str, Any]] = {}
    stills: dict[str, list[np.ndarray]] = {}
    for run in runs:
        agreement = recall_precision(gts, run.dets, cfg.score_thresh, cfg.iou_thresh)
        detection = detection_map(gts, run.dets)
        results[run.name] = {
            "model": run.backend.meta.get("name", "?"), "checkpoint": run.checkpoint, "backend": run.backend.name,
            "mode": "agreement with a reference detector (pseudo-labels)", "source": source, "reference": ref_info,
            "agreement": agreement, "detection": detection, "latency_ms": _latency(run.latency_ms),
            "eval_seconds": seconds, "summary": _summary(agreement, detection),
        }
        stills[run.name] = run.stills
    return results, stills, ref_dets
