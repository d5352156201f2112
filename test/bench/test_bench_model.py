"""`perception bench model` on a tiny network: runs, writes the report, computes the goals."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from perception.bench import model as bench_model


def test_bench_model_tiny(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser()
    bench_model.add_arguments(parser)
    args = parser.parse_args(
        [
            "--model",
            "stan_tiny",
            "--height",
            "64",
            "--width",
            "96",
            "--iters",
            "3",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--train-height",
            "64",
            "--train-width",
            "96",
            "--train-batch",
            "2",
            "--out",
            str(tmp_path),
            "--compare",
            "stan_tiny_noattn",
        ]
    )
    assert bench_model.run(args) == 0
    data = json.loads((tmp_path / "bench_model.json").read_text())
    names = [r["name"] for r in data["rows"]]
    assert names[:3] == ["stan_tiny fp32", "stan_tiny_noattn fp32", "stan_tiny_temporal fp32"]
    assert all(r["median_ms"] > 0 for r in data["rows"] if "median_ms" in r)
    assert data["rows"][-1]["images_per_s"] > 0
    goals = {g["what"]: g for g in data["goals"]}
    assert "CBAM overhead vs no attention (bf16+cl)" in goals
    assert "temporal streaming / spatial-only (fp32)" in goals
    md = (tmp_path / "bench_model.md").read_text()
    assert md.startswith("# Model latency")
    assert "CPU precision path:" in md  # which precision `auto` takes on this CPU
    assert "stan_tiny_noattn bf16+cl" in names
    assert any("stan_tiny_noattn / stan_tiny_temporal latency (fp32)" in n for n in data["notes"])


def test_paired_ratio() -> None:
    times = {"a": [2.0, 4.0, 3.0], "b": [1.0, 2.0, 3.0]}
    assert bench_model.paired_ratio(times, "a", "b") == 2.0
