"""``perception bench throughput`` smoke test: tiny counts, real bag files, real DDS, real node.

No timing assertions (the machine is shared): only that every figure is measured and reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_bag_read_rows(tmp_path: Path) -> None:
    from perception.ros.tools.bench_throughput import read_rows

    rows = read_rows(4, tmp_path, repeats=1)
    assert len(rows) == 4 and all(r["GB_per_s"] > 0 and r["frames"] == 4 for r in rows)


def test_throughput_bench_smoke(tmp_path: Path) -> None:
    pytest.importorskip("rclpy")
    pytest.importorskip("vision_msgs.msg")
    pytest.importorskip("perception.sim.drive")
    import ros_testing  # noqa: F401 - localhost DDS profile and this session's private domain

    from perception.cli import main

    rc = main(["bench", "throughput", "--frames", "3", "--width", "160", "--height", "96", "--input-size", "64x128",
               "--threads", "1", "--rates", "10,20", "--seconds", "1", "--latency-rate", "10", "--latency-seconds", "1",
               "--cameras", "2", "--multi-seconds", "1", "--rounds", "1", "--read-frames", "3", "--out", str(tmp_path)])
    assert rc == 0
    data = json.loads((tmp_path / "bench_throughput.json").read_text())
    names = [r["name"] for r in data["rows"]]
    assert "1 camera at 10 Hz" in names and any(n.startswith("latency at 10 Hz") for n in names)
    assert any("max_batch 2 (batched)" in n for n in names) and any("max_batch 1" in n for n in names)
    lat = next(r for r in data["rows"] if r["name"].startswith("latency"))
    assert lat["answered"] > 0 and lat["latency_p50_ms"] > 0
    goals = [g["what"].split(",")[0] for g in data["goals"]]
    assert goals[:2] == ["peak rate with < 5 % drops", "2 cameras batched / unbatched images/s"]
    assert data["machine"]["cores"] >= 1
