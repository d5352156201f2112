"""``perception bench ros --skip-e2e`` smoke test: conversion rows and the node's in-process frame-path split.

No timing assertions (the machine is shared): only that every figure is measured and reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_bench_ros_frame_path_smoke(tmp_path: Path) -> None:
    pytest.importorskip("rclpy")
    pytest.importorskip("vision_msgs.msg")
    pytest.importorskip("foxglove_msgs.msg")
    import ros_testing  # noqa: F401 - localhost DDS profile and this session's private domain

    from perception.cli import main

    rc = main(["bench", "ros", "--skip-e2e", "--width", "160", "--height", "96", "--input-size", "64x128",
               "--threads", "1", "--frames", "2", "--warmup", "0", "--frame-path-frames", "2", "--out", str(tmp_path)])
    assert rc == 0
    rows = json.loads((tmp_path / "bench_ros.json").read_text())["rows"]
    path = [r for r in rows if r["name"].startswith("frame path:")]
    assert [r["name"].split(": ")[1] for r in path] == [
        "detections + attention subscribed", "every output subscribed, full resolution",
        "every output subscribed, network resolution"]
    assert all(r["perceptor_ms"] > 0 and r["median_ms"] >= r["perceptor_ms"] for r in path)
    assert any(r["name"] == "segmentation/color (palette + rgb8 msg)" for r in rows)
