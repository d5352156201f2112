"""``perception bench recorder`` smoke test: 2 small cameras for ~22 s, real DDS, the real recorder process, real
snapshots read back, a real SIGKILL. No timing assertions (the machine is shared): every figure measured and
reported, the three snapshots complete and gap-free, the killed one not listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_recorder_bench_smoke(tmp_path: Path) -> None:
    pytest.importorskip("rclpy")
    pytest.importorskip("vision_msgs.msg")
    import ros_testing  # noqa: F401 - localhost DDS profile and this session's private domain

    from perception.cli import main

    main(["bench", "recorder", "--cameras", "2", "--rate", "20", "--width", "160", "--height", "96",
          "--attention", "12x20", "--duration", "22", "--before", "2", "--after", "1", "--budget-mb", "32",
          "--dir", str(tmp_path / "incidents"), "--out", str(tmp_path)])
    data = json.loads((tmp_path / "bench_recorder.json").read_text())
    assert [r["trigger"] for r in data["rows"]] == ["service", "topic", "diagnostics"]
    assert all(r["readable"] and r["window_s"] == pytest.approx(3.0) for r in data["rows"])
    goals = {g["what"].split(" (")[0].split(",")[0]: g for g in data["goals"]}
    assert goals["snapshots complete and readable"]["met"]
    assert goals["camera frames and per-camera outputs missing inside the windows"]["value"] == 0
    kill = next(g for g in data["goals"] if g["what"].startswith("kill -9"))
    assert kill["met"], kill
    cpu = next(g for g in data["goals"] if g["what"].startswith("recorder CPU"))
    assert cpu["value"] > 0
    assert sorted(p.name for p in (tmp_path / "incidents").iterdir() if not p.name.startswith(".")) == \
        [r["name"] for r in data["rows"]]
