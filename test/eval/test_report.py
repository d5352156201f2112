from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from perception.core.types import Detections, GroundTruth
from perception.eval import EvalError
from perception.eval.metrics import EvalAccumulator
from perception.eval.report import compare_table, write_eval_report


def _metrics(miss: bool) -> dict:
    acc = EvalAccumulator(num_sem_classes=3, sem_names=("road", "sky", "car"))
    box = np.array([[10, 10, 40, 40]], np.float32)
    for t in range(4):
        gt = GroundTruth(
            boxes=box,
            class_ids=np.array([0]),
            track_ids=np.array([1]),
            visibility=np.ones(1, np.float32),
            ignore=np.zeros(1, bool),
        )
        hit = not (miss and t % 2)
        det = Detections(
            box if hit else np.zeros((0, 4), np.float32),
            np.full(int(hit), 0.9, np.float32),
            np.zeros(int(hit), np.int64),
        )
        seg_gt = np.array([[0, 0], [1, 2]])
        seg_pred = np.array([[0, 1], [1, 2]]) if miss else seg_gt
        att = np.ones((64, 64), np.float32)
        acc.add("seq", gt, det, seg_pred, seg_gt, att)
    return acc.compute()


def test_write_eval_report(tmp_path: Path) -> None:
    m = _metrics(miss=True)
    sample = np.zeros((32, 48, 3), np.uint8)
    paths = write_eval_report(m, tmp_path / "rep", "Test model", samples=[sample, sample])
    for key in ("json", "markdown", "ap_plot", "iou_plot", "sample_00", "sample_01"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0, key
    loaded = json.loads(paths["json"].read_text())
    assert loaded["summary"]["flicker"] == pytest.approx(1.0)
    assert loaded["detection"]["per_class"]["truck"]["AP50"] is None  # NaN -> null
    md = paths["markdown"].read_text()
    assert "# Test model" in md and "| car |" in md and "mIoU" in md and "ap_per_class.png" in md
    assert "| truck | – | – | 0 |" in md
    # a report from the loaded JSON (nulls) renders too
    write_eval_report(loaded, tmp_path / "again", "again")
    with pytest.raises(EvalError, match="RGB uint8"):
        write_eval_report(m, tmp_path / "bad", samples=[np.zeros((4, 4), np.float32)])


def test_compare_table_marks_best() -> None:
    good, bad = _metrics(miss=False), _metrics(miss=True)
    table = compare_table({"attn": good, "plain": bad})
    lines = table.splitlines()
    assert lines[0] == "| metric | attn | plain |"
    flicker = next(line for line in lines if line.startswith("| flicker"))
    assert flicker == "| flicker (lower is better) | **0.000** | 1.000 |"
    miou = next(line for line in lines if line.startswith("| mIoU"))
    assert miou.split("|")[2].strip() == "**1.000**"
    assert any(line.startswith("| AP@0.5 car") for line in lines)
    with pytest.raises(EvalError):
        compare_table({})
