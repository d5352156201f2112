from __future__ import annotations

import argparse
import json
from pathlib import Path

from perception.bench import sim as bench_sim


def test_bench_sim_writes_a_report(tmp_path: Path) -> None:
    p = argparse.ArgumentParser()
    bench_sim.add_arguments(p)
    args = p.parse_args(["--frames", "2", "--warmup", "1", "--width", "96", "--height", "64", "--out", str(tmp_path)])
    assert bench_sim.run(args) == 0
    data = json.loads((tmp_path / "bench_sim.json").read_text())
    names = [r["name"] for r in data["rows"]]
    assert names[:3] == ["camera", "camera+lidar", "camera+degrade"]
    assert "camera: raycast" in names and "camera+lidar: lidar" in names
    cam = data["rows"][0]
    assert cam["fps"] > 0 and cam["x_baseline"] == 1.0
    assert data["goals"][0]["what"].startswith("camera-only frames/s")
    assert (tmp_path / "bench_sim.md").read_text().startswith("# Synthetic world rendering")
