"""Golden regression: the stored golden outputs agree with themselves, and perturbed outputs are
caught (exit code 1, the first differing frame named), from the bags and through the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bag_testing import GOLDEN

from perception.bag import messages as m
from perception.bag.io import BagWriter, deserialize, read_messages
from perception.core.types import Detections
from perception.eval.bags import golden_compare, load_outputs
from perception.eval.golden import Tolerances, compare, compare_detections

EXPECTED = GOLDEN / "expected"
TOL = Tolerances()


def _det(boxes: list[list[float]], scores: list[float], cls: list[int]) -> Detections:
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                      np.asarray(cls, np.int64))


def test_compare_detections_tolerances() -> None:
    a = _det([[10, 10, 50, 50], [60, 10, 90, 40]], [0.9, 0.6], [0, 1])
    assert compare_detections(a, a, TOL) == ""
    assert compare_detections(a, _det([[11, 10, 51, 50], [60, 10, 90, 40]], [0.88, 0.62], [0, 1]), TOL) == ""
    assert "score" in compare_detections(a, _det([[10, 10, 50, 50], [60, 10, 90, 40]], [0.7, 0.6], [0, 1]), TOL)
    assert "missing" in compare_detections(a, _det([[30, 30, 70, 70], [60, 10, 90, 40]], [0.9, 0.6], [0, 1]), TOL)
    assert "missing" in compare_detections(a, _det([[10, 10, 50, 50], [60, 10, 90, 40]], [0.9, 0.6], [2, 1]), TOL)
    assert "unexpected" in compare_detections(_det([], [], []), a, TOL)
    # a box near the publishing threshold may come and go with CPU numerics
    near = _det([[10, 10, 50, 50], [0, 0, 5, 5]], [0.9, 0.32], [0, 0])
    assert compare_detections(near, _det([[10, 10, 50, 50]], [0.9], [0]), TOL) == ""


def test_compare_masks_and_missing_frames() -> None:
    mask = np.zeros((10, 10), np.uint8)
    bad = mask.copy()
    bad[:2] = 3
    det = {("/cam", 1): _det([], [], []), ("/cam", 2): _det([], [], [])}
    rep = compare(det, {("/cam", 1): _det([], [], [])}, {("/cam", 1): mask}, {("/cam", 1): bad}, TOL)
    assert not rep.ok and rep.frames_compared == 3
    text = rep.summary()
    assert "frame 1 of /cam" in text and "no detections output" in text and "mask agreement 0.8000" in text


def test_golden_bag_matches_itself() -> None:
    rep = golden_compare(EXPECTED, EXPECTED)
    assert rep.ok, rep.summary()
    assert rep.frames_compared == 24  # 12 frames: detections + segmentation


def _perturbed(tmp: Path, frame: int) -> Path:
    """A copy of the golden outputs with the boxes of one frame shifted by 8 px."""
    out = tmp / "perturbed"
    n = 0
    with BagWriter(out) as w:
        for topic, msgtype, log_ns, raw in read_messages(EXPECTED, check_order=False):
            if topic.endswith("/detections"):
                if n == frame:
                    msg = deserialize(raw, msgtype)
                    for d in msg.detections:
                        d.bbox.center.position.x += 8.0
                    w.write(topic, msg, log_ns)
                    n += 1
                    continue
                n += 1
            w.write_raw(topic, msgtype, log_ns, raw)
    return out


def test_perturbed_outputs_are_caught(tmp_path: Path) -> None:
    bad = _perturbed(tmp_path, 5)
    rep = golden_compare(EXPECTED, bad)
    assert not rep.ok
    assert min(d.index for d in rep.diffs) == 5 and all(d.index == 5 for d in rep.diffs)
    assert "frame 5 of /camera" in rep.summary()
    assert load_outputs(bad).detections.keys() == load_outputs(EXPECTED).detections.keys()


def test_golden_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from perception.cli import main

    assert main(["eval", "--bag", str(EXPECTED), "--golden", str(EXPECTED)]) == 0
    bad = _perturbed(tmp_path, 3)
    assert main(["eval", "--bag", str(bad), "--golden", str(EXPECTED)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "frame 3 of /camera" in out
    assert main(["eval", "--bag", str(tmp_path / "missing"), "--golden", str(EXPECTED)]) == 2


def test_stamp_helpers() -> None:
    assert m.stamp_ns(m.header(1_700_000_000_123_456_789, "x")) == 1_700_000_000_123_456_789
