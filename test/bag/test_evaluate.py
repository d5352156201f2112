"""Evaluation from bags: the golden drive's ground truth against its recorded outputs (no ROS graph)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from bag_testing import GOLDEN

from perception.bag import BagError
from perception.bag.evaluate import evaluate_bags, load_ground_truth, load_outputs


def test_evaluate_golden_bags() -> None:
    metrics, samples = evaluate_bags(GOLDEN / "expected", GOLDEN / "drive", samples=3)
    assert metrics["coverage"] == {"gt_frames": 12, "answered": 12, "missing": 0, "loops": 1}
    s = metrics["summary"]
    assert 0.2 < s["mAP50"] <= 1.0 and 0.3 < s["mIoU"] <= 1.0 and 0.0 <= s["flicker"] <= 1.0
    lat = metrics["latency_ms"]
    assert lat["frames"] == 12 and 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert len(samples) == 3 and all(x.ndim == 3 and x.shape[2] == 3 and x.shape[1] >= 2 * 320 for x in samples)


def test_ground_truth_of_drive_bag() -> None:
    gt = load_ground_truth(GOLDEN / "drive")
    assert len(gt.gt) == len(gt.semantic) == 12
    assert sum(len(g) for g in gt.gt.values()) > 20


def test_eval_cli_writes_markdown_and_html(tmp_path: Path) -> None:
    from perception.cli import main

    assert main(["eval", "--bag", str(GOLDEN / "expected"), "--gt", str(GOLDEN / "drive"), "--out", str(tmp_path)]) == 0
    for name in ("report.md", "report.html", "metrics.json", "latency_hist.png", "ap_per_class.png", "sample_00.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    html = (tmp_path / "report.html").read_text()
    assert "<table>" in html and 'src="latency_hist.png"' in html
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert not math.isnan(saved["summary"]["mAP50"])


def test_input_bag_is_not_an_output_bag() -> None:
    with pytest.raises(BagError, match="no <camera>/detections"):
        load_outputs(GOLDEN / "drive")
    with pytest.raises(BagError, match="no <camera>/ground_truth"):
        load_ground_truth(GOLDEN / "expected")
