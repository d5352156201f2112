"""Run the detectors that ``perception eval --labels`` scores over a folder of labelled images.

Ours: the same Perceptor the ROS node runs, at the node's defaults (its parameter table,
``perception.ros.nodes.params``: the checkpoint's own input size, score threshold 0.3,
NMS IoU 0.6, at most 100 detections, attention-guided refinement with up to 2 crops:
:class:`~perception.pipeline.refine.RefiningPerceptor`), torch backend fp32. Each image is a new scene (temporal
memory reset): a still photo has no past. The reference: SSD-MobileNetV2 COCO at 300x300 through
cv2.dnn (:mod:`perception.footage.reference`), evaluation only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from perception.core.types import Detections
from perception.eval import EvalError
from perception.eval.labelled import LabelledImage

if TYPE_CHECKING:
    from perception.pipeline.refine import RefineConfig


@dataclass(frozen=True)
class NodeDefaults:
    """The perception node's detection defaults (config/perception.yaml ``detection.*``; tested equal to the node's
    parameter table)."""

    score_thresh: float = 0.3
    nms_iou: float = 0.6
    max_det: int = 100
    vehicle_nms_iou: float = 0.7
    precision: str = "fp32"
    input_size: tuple[int, int] | None = None  # (h, w) network input (model.input_height / _width); None: checkpoint's


def node_refine() -> RefineConfig | None:
    """The node's default refinement (its ``refine.*`` defaults); None when it is off by default."""
    from perception.pipeline.refine import NODE_REFINE

    return NODE_REFINE if NODE_REFINE.enabled else None


@dataclass
class DetectorRun:
    """What one detector produced on every image."""

    name: str
    description: str
    detections: list[Detections] = field(default_factory=list)
    attention: list[np.ndarray | None] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def read_image(directory: Path, im: LabelledImage) -> np.ndarray:
    """Image ``im`` from ``directory`` as (H, W, 3) uint8 RGB, checked against its labelled size (placed on its
    grey canvas when ``im`` is one: :func:`perception.eval.labelled.on_canvas`)."""
    from perception.core.letterbox import MIN_SIDE, PAD_VALUE
    from perception.eval.labelled import closer_offset

    path = directory / im.file
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise EvalError(f"cannot read labelled image {path}; fetch the set with `make data` "
                        "(bash scripts/get_real_data.sh) or pass the folder holding it as --images")
    if min(bgr.shape[:2]) < MIN_SIDE:
        raise EvalError(f"labelled image {path} is {bgr.shape[1]}x{bgr.shape[0]} pixels; the network takes images of "
                        f"at least {MIN_SIDE}x{MIN_SIDE}")
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    if im.placed is None and rgb.shape[:2] != (im.height, im.width):
        raise EvalError(f"{path} is {rgb.shape[1]}x{rgb.shape[0]} but labelled as {im.width}x{im.height}")
    if im.enlarge != 1.0:  # the scene closer (labelled.closer): enlarged, its centre framed at the file's size
        h, w = rgb.shape[:2]
        ox, oy = closer_offset(w, h, im.enlarge)
        big = cv2.resize(rgb, (round(w * im.enlarge), round(h * im.enlarge)), interpolation=cv2.INTER_LINEAR)
        rgb = np.ascontiguousarray(big[oy:oy + h, ox:ox + w])
    if im.placed is None:
        return rgb
    x0, y0 = im.placed
    if im.shrink != 1.0:
        rgb = cv2.resize(rgb, (max(1, round(rgb.shape[1] * im.shrink)), max(1, round(rgb.shape[0] * im.shrink))),
                         interpolation=cv2.INTER_AREA)
    h, w = rgb.shape[:2]
    if x0 + w > im.width or y0 + h > im.height:
        raise EvalError(f"{path} ({w}x{h}) does not fit its {im.width}x{im.height} canvas at ({x0}, {y0})")
    canvas = np.full((im.height, im.width, 3), PAD_VALUE, np.uint8)
    canvas[y0:y0 + h, x0:x0 + w] = rgb
    return canvas


def run_checkpoint(checkpoint: str | Path, directory: Path, images: Sequence[LabelledImage],
                   node: NodeDefaults | None = None, refine: RefineConfig | None = None,
                   onnx: str | Path = "") -> DetectorRun:
    """Our network through the node's Perceptor on every image (see the module doc); with ``refine``
    the node's ``refine.enabled: true`` path (RefiningPerceptor: native-resolution crops where attention
    points), named ``<checkpoint>+refine``. ``onnx``: run that exported model (fp32 or INT8 QDQ, ``perception
    export``) on ONNX Runtime instead of ``checkpoint`` on torch."""
    from perception.models.checkpoint import checkpoint_input_size
    from perception.pipeline.perceptor import FrameInput, Perceptor, PerceptorConfig
    from perception.pipeline.refine import RefiningPerceptor
    from perception.runtime.base import Backend
    from perception.runtime.select import ModelSource, RuntimeConfig, build_backend
    from perception.runtime.torch_backend import TorchBackend, TorchBackendConfig

    node = node or NodeDefaults()
    backend: Backend
    if onnx and node.input_size is not None:
        raise EvalError(f"{onnx}: an exported model runs at the input size it was exported at; export it at the size "
                        "to try (perception export --input-size HxW) or give --checkpoint")
    if onnx:
        backend = build_backend(ModelSource(), RuntimeConfig(backend="onnxruntime", onnx=str(onnx), fallback=False))
        image = next(s for s in backend.input_specs if s.name == "image")
        size = (int(image.shape[2]), int(image.shape[3]))
        name, runtime = Path(str(onnx)).name.removesuffix(".onnx"), "onnxruntime"
    else:
        size = node.input_size or checkpoint_input_size(checkpoint)
        name, runtime = Path(str(checkpoint)).name.removesuffix(".safetensors"), f"torch {node.precision}"
        backend = TorchBackend(checkpoint, size, TorchBackendConfig(precision=node.precision))
    name += "+refine" if refine is not None else ""
    run = DetectorRun(name, f"{name} (Perceptor at the node's defaults, {size[1]}x{size[0]} input, {runtime}"
                            f"{', attention-guided refinement' if refine is not None else ''})")
    with backend:
        pcfg = PerceptorConfig(score_thresh=node.score_thresh, nms_iou=node.nms_iou, max_det=node.max_det,
                               vehicle_nms_iou=node.vehicle_nms_iou, segmentation=False)
        perceptor = Perceptor(backend, pcfg) if refine is None else RefiningPerceptor(backend, pcfg, refine)
        for k, im in enumerate(images):
            rgb = read_image(directory, im)
            r = perceptor.process(FrameInput("labelled", rgb, float(k), scene_cut=True))
            run.detections.append(r.detections)
            att = r.attention
            run.attention.append(None if att is None else np.asarray(att, np.float32))
            run.latency_ms.append(r.total_ms)
        meta = getattr(backend, "meta", {}) or {}
        run.info = {"model": meta.get("name", "?"), "checkpoint": str(onnx or checkpoint), "input_size": list(size),
                    "backend": backend.status().get("backend.active", backend.name), "precision": node.precision,
                    "score_thresh": node.score_thresh,
                    "nms_iou": node.nms_iou, "vehicle_nms_iou": node.vehicle_nms_iou, "max_det": node.max_det}
        if isinstance(perceptor, RefiningPerceptor):
            ref = perceptor.refine
            run.info["refine"] = {"max_regions": ref.max_regions, "max_pixels": ref.max_pixels, **perceptor.totals,
                                  "pixel_ratio": perceptor.pixel_ratio}
    return run


def run_reference(directory: Path, images: Sequence[LabelledImage], model_dir: str = "",
                  score_thresh: float = 0.3) -> DetectorRun:
    """The reference SSD (300x300, COCO classes mapped onto ours) on every image."""
    from perception.footage.reference import ReferenceConfig, ReferenceDetector

    ref = ReferenceDetector(ReferenceConfig(model_dir, score_thresh=max(score_thresh, 0.05),
                                            ignore_thresh=max(score_thresh, 0.05)))
    run = DetectorRun("reference", ref.description)
    for im in images:
        rgb = read_image(directory, im)
        t = time.perf_counter()
        det = ref.detect(rgb)
        run.latency_ms.append(1e3 * (time.perf_counter() - t))
        run.detections.append(det.select(det.scores >= score_thresh))
        run.attention.append(None)
    run.info = {"model": ref.name, "model_dir": str(ref.model_dir), "input_size": [300, 300],
                "score_thresh": score_thresh, **ref.identity()}
    return run


def overlay(rgb: np.ndarray, im: LabelledImage, runs: Sequence[DetectorRun], k: int) -> np.ndarray:
    """One still per image: for each detector its detections in class colours over the labels (green;
    don't-care ones grey), then each attention map that exists."""
    from perception.core.viz import draw_detections, overlay_heatmap, side_by_side

    base = rgb.copy()
    for (x0, y0, x1, y1), ign in zip(im.boxes, im.ignore):
        cv2.rectangle(base, (round(x0), round(y0)), (round(x1), round(y1)), (128, 128, 128) if ign else (0, 255, 0),
                      max(1, round(min(im.width, im.height) / 300)), cv2.LINE_AA)
    panels, titles = [], []
    for run in runs:
        panels.append(draw_detections(base, run.detections[k]))
        titles.append(f"{run.name}: {len(run.detections[k])} det.")
    for run in runs:
        att = run.attention[k]
        if att is not None:
            panels.append(overlay_heatmap(rgb, att))
            titles.append(f"{run.name} attention")
    height = min(480, im.height)
    return side_by_side(panels, titles, cols=2 if len(panels) > 2 else None, height=height)


def latency(values: Sequence[float]) -> dict[str, float | int]:
    v = np.asarray(values, np.float64)
    if not len(v):
        return {"frames": 0}
    return {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "frames": len(v)}
