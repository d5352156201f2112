"""`perception demo --ros` end to end: two node processes on loopback DDS, recorded to MCAP, rendered."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("rosbags")

from ros_testing import ROOT, needs_model


def test_demo_over_ros_records_a_bag_and_renders(tmp_path: Path) -> None:
    needs_model()
    pytest.importorskip("perception.sim.drive")
    import torch

    from perception.models.checkpoint import save_checkpoint
    from perception.models.registry import build_model, model_config

    torch.manual_seed(0)
    ckpt = tmp_path / "tiny"  # a real checkpoint file (untrained weights): the node loads it like any other
    save_checkpoint(ckpt, build_model("stan_tiny_temporal"), "stan_tiny_temporal", model_config("stan_tiny_temporal"),
                    {"input_size": [64, 128]})
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "perception.cli", "demo", "--ros", "--checkpoint", str(ckpt),
           "--frames", "8", "--width", "160", "--height", "96", "--stills", "2", "--out", str(out)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((out / "ros_summary.json").read_text())
    assert summary["frames_published"] == 8 and summary["frames_with_detections"] >= 1
    assert summary["headers_preserved"] and summary["output_sizes_match_input"] and summary["label_info_received"]
    assert summary["node_exit_codes"] == {"synthetic_camera": 0, "perception": 0}
    assert list((out / "ros_demo_bag").glob("*.mcap"))
    assert list(out.glob("ros_frame_*.png")) and (out / "ros_overlay.mp4").exists()

    from rosbags.rosbag2 import Reader

    with Reader(out / "ros_demo_bag") as reader:
        topics = {c.topic for c in reader.connections}
    assert {"/camera/image_raw", "/camera/detections", "/camera/segmentation", "/camera/attention",
            "/camera/objects/tracked", "/odom"} <= topics
    assert summary["frames_with_tracks_panel"] >= 1  # the objects stage ran: a bird's-eye view per frame
