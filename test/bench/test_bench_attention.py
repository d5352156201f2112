"""`perception bench attention` end to end on a tiny checkpoint and small frames (plumbing, not accuracy)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from perception.bench import attention as bench_attention
from perception.bench.cli import BENCHMARKS


def test_bench_attention_reports_every_variant(tiny_checkpoint: Path, tmp_path: Path) -> None:
    assert BENCHMARKS["attention"][0] == "perception.bench.attention"
    p = argparse.ArgumentParser()
    bench_attention.add_arguments(p)
    args = p.parse_args(["--checkpoint", str(tiny_checkpoint), "--seeds", "1000:1001", "--frames", "2",
                         "--width", "320", "--height", "180", "--max-regions", "2",
                         "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "--no-progress"])
    assert bench_attention.run(args) == 0
    data = json.loads((tmp_path / "out" / "bench_attention.json").read_text())
    rows = {r["name"]: r for r in data["rows"]}
    assert list(rows) == list(bench_attention.VARIANTS)
    a, b, c, d, e = (rows[v] for v in bench_attention.VARIANTS)
    assert a["input"] == "192x320" and b["input"] == "64x128"  # the frame's size rounded up to the stride
    assert a["inputs_per_frame"] == b["inputs_per_frame"] == 1.0
    assert 1.0 <= c["inputs_per_frame"] <= 3.0
    assert d["inputs_per_frame"] == e["inputs_per_frame"] == c["inputs_per_frame"]  # the same pixel budget
    # FLOPs are counted per input size and scale with the inputs a variant ran
    assert a["GFLOPs"] > b["GFLOPs"] > 0 and a["GFLOPs_x_a"] == 1.0
    assert c["GFLOPs"] == pytest.approx(b["GFLOPs"] * c["inputs_per_frame"])
    assert c["pixels_ratio"] == pytest.approx(c["inputs_per_frame"] * 64 * 128 / (320 * 180))
    assert {g["what"] for g in data["goals"]} == {"(c) small AP / (a) small AP", "(c) FLOPs / (a) FLOPs",
                                                  "(c) small AP - (d) small AP"}
    assert (tmp_path / "out" / "bench_attention.md").read_text().startswith("# Attention-guided refinement")


def test_full_input_size_rounds_up_to_the_stride() -> None:
    assert bench_attention.full_input_size(720, 1280) == (736, 1280)
    assert bench_attention.full_input_size(1080, 1920) == (1088, 1920)
