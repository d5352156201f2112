"""`perception bench runtime` on the shipped network at a small size: every CPU backend runs on the same
inputs, the report has the ratios and the goal, and unavailable backends are listed with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from perception.cli import main


def test_bench_runtime_small(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    rc = main(["bench", "runtime", "--input-size", "64x128", "--iters", "2", "--warmup", "1", "--threads", "1",
               "--no-int8", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)])
    assert rc == 0
    data = json.loads((out / "bench_runtime.json").read_text())
    rows = {r["name"]: r for r in data["rows"]}
    assert {"torch eager fp32", "torch bf16+channels_last", "onnxruntime fp32"} <= set(rows)
    assert rows["torch eager fp32"]["x_vs_torch_fp32"] == pytest.approx(1.0)
    assert rows["onnxruntime fp32"]["max_score_diff"] < 1e-3  # same network, same numbers
    assert rows["onnxruntime fp32"]["seg_label_agreement"] > 0.999
    # the pruned graph (no segmentation) computes the same detections, and no segmentation to compare
    no_seg = rows["onnxruntime fp32, no segmentation"]
    assert no_seg["max_score_diff"] < 1e-3 and "seg_label_agreement" not in no_seg
    assert any("best CPU backend" in g["what"] for g in data["goals"])
    # the loaded-machine column: the same variants timed again next to a competing torch process
    assert all(r["loaded_ms"] > 0 and r["x_slower_loaded"] > 0 for r in data["rows"])
    assert any("loaded_ms: the same rounds again while 1 other process" in n for n in data["notes"])
    md = (out / "bench_runtime.md").read_text()
    assert "Machine:" in md and "x_vs_torch_fp32" in md and "loaded_ms" in md
