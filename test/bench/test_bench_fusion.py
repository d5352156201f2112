from __future__ import annotations

import argparse
import json
from pathlib import Path

from perception.bench import fusion as bench_fusion
from perception.bench.cli import BENCHMARKS


def test_bench_fusion_writes_a_report(tmp_path: Path) -> None:
    assert BENCHMARKS["fusion"][0] == "perception.bench.fusion"
    p = argparse.ArgumentParser()
    bench_fusion.add_arguments(p)
    args = p.parse_args(["--frames", "1", "--warmup", "0", "--width", "320", "--height", "192", "--beams", "16",
                         "--az-step", "0.4", "--no-naive", "--out", str(tmp_path)])  # fmt: skip
    assert bench_fusion.run(args) == 0
    data = json.loads((tmp_path / "bench_fusion.json").read_text())
    names = [r["name"] for r in data["rows"]]
    assert names[0] == "fuse (mask)" and "fuse, open3d segment_plane" in names
    assert {f"fuse (mask): {s}" for s in ("crop", "ground", "cluster", "associate", "boxes", "camera")} <= set(names)
    assert any(n.startswith("camera-only range error") for n in names)
    assert data["goals"][0]["what"].startswith("fusion step")
    assert any("minAreaRect" in n for n in data["notes"])
    assert (tmp_path / "bench_fusion.md").read_text().startswith("# LiDAR-camera fusion")


def test_l_shape_bench_measures_both_fits() -> None:
    r = bench_fusion.l_shape_bench(iters=2)
    assert abs(r["l_shape_deg"] - 34.0) < 1.0 and abs(r["min_area_rect_deg"] - 34.0) > 10.0
    assert r["l_shape_ms"] > 0 and r["min_area_rect_ms"] > 0
