"""``perception vehicle check`` on a real small graph: a synthetic_camera process (images, CameraInfo, LiDAR,
/tf_static) passes; a stopped camera, a wrong rate, a broken CameraInfo, a missing transform and a full disk
each fail, named. The CLI prints the table and exits non-zero on a failure."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("open3d")

import yaml
from ros_testing import DOMAIN_ID, ROOT, Client, image_msg, rgb_image
from sensor_msgs.msg import CameraInfo, Image

from perception.ros.tools.node_process import NodeProcess
from perception.ros.tools.vehicle_check import run_check
from perception.vehicle.check import table
from perception.vehicle.config import rig_from_dict


def good_rig(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    tree: dict[str, Any] = {
        "name": "check_car",
        "cameras": [{"name": "vc_front", "rate_hz": 10, "frame_id": "vc_front_optical"}],
        "lidar": {"topic": "/vc_front/points", "frame_id": "vc_lidar", "rate_hz": 10},
        "recording": {"enabled": True, "directory": str(tmp_path / "incidents"), "min_free_gb": 0.001},
    }
    tree.update(changes)
    return tree


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from ros_testing import start_node

    proc = start_node("perception.ros.nodes.synthetic_camera", "vc_synthetic", {
        "camera": "vc_front", "fps": 10.0, "width": 160, "height": 96, "lidar": True,
        "frame_id": "vc_front_optical", "lidar_frame_id": "vc_lidar", "odom_topic": ""},
        tmp_path_factory.mktemp("vc"))
    yield proc
    proc.stop()


def _wait_for_camera(client: Client, camera: NodeProcess) -> None:
    box = client.collect(Image, "/vc_front/image_raw", convert_qos())
    assert client.spin_until(lambda: box or not camera.alive(), 90.0) and camera.alive(), camera.output()


def convert_qos() -> Any:
    from perception.ros.qos import qos_profile

    return qos_profile("best_effort", 1)


def test_the_live_graph_passes(client: Client, camera: NodeProcess, tmp_path: Path) -> None:
    _wait_for_camera(client, camera)
    rows = run_check(client.node, rig_from_dict(good_rig(tmp_path)), None, duration=2.0)
    text = table(rows)
    assert all(r.ok for r in rows), text
    checks = {(r.item, r.check) for r in rows}
    for want in [("camera vc_front", c) for c in ("rate", "encoding", "frame_id", "stamps", "camera_info",
                                                  "tf_static")] + [("lidar", "rate"), ("lidar", "tf_static"),
                                                                   ("sensors", "sync"), ("disk", "free"),
                                                                   ("dds", "profile")]:
        assert want in checks, text


def _publish_bad_camera(client: Client, stop: threading.Event) -> Callable[[], None]:
    img = client.node.create_publisher(Image, "/vc_bad/image_raw", 10)
    info = client.node.create_publisher(CameraInfo, "/vc_bad/camera_info", 10)
    frame = rgb_image(48, 64)

    def run() -> None:
        import time

        while not stop.is_set():
            msg = image_msg(frame, time.time(), "vc_bad_optical")
            img.publish(msg)
            info.publish(CameraInfo(header=msg.header, width=64, height=48))  # K all zeros: not calibrated
            stop.wait(0.1)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t.join


def test_each_failure_is_named(client: Client, camera: NodeProcess, tmp_path: Path) -> None:
    _wait_for_camera(client, camera)
    rig = rig_from_dict(good_rig(
        tmp_path,
        cameras=[{"name": "vc_front", "rate_hz": 30, "frame_id": "vc_front_optical"},  # wrong rate
                 {"name": "vc_rear", "rate_hz": 10, "frame_id": "vc_rear_optical"},  # stopped camera
                 {"name": "vc_bad", "rate_hz": 10, "frame_id": "vc_bad_optical"}],  # broken CameraInfo
        lidar={"topic": "/vc_front/points", "frame_id": "vc_lidar_top", "rate_hz": 10},  # no such transform
        recording={"enabled": True, "directory": str(tmp_path), "min_free_gb": 1e6},  # "full" disk
    ))
    stop = threading.Event()
    join = _publish_bad_camera(client, stop)
    try:
        rows = run_check(client.node, rig, None, duration=2.0)
    finally:
        stop.set()
        join()
    text = table(rows)
    failed = {(r.item, r.check): r.detail for r in rows if not r.ok}
    assert "expected 30 Hz" in failed[("camera vc_front", "rate")], text
    assert "nothing on /vc_rear/image_raw" in failed[("camera vc_rear", "rate")], text
    assert "nothing on /vc_rear/camera_info" in failed[("camera vc_rear", "camera_info")], text
    assert "not a calibrated" in failed[("camera vc_bad", "camera_info")], text
    assert "no /tf_static chain base_link -> vc_lidar_top" in failed[("lidar", "tf_static")], text
    assert "vc_lidar, the rig says vc_lidar_top" in failed[("lidar", "frame_id")], text
    assert "need 1e+06 GB" in failed[("disk", "free")], text
    assert ("camera vc_front", "tf_static") not in failed and ("camera vc_front", "camera_info") not in failed
    assert "FAILED: " in text.splitlines()[-1]


def test_the_cli_exits_non_zero_naming_failures(camera: NodeProcess, client: Client, tmp_path: Path) -> None:
    _wait_for_camera(client, camera)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", ""))
                                                         if p)}
    cmd = [sys.executable, "-m", "perception.cli", "vehicle", "check", "--domain-id", str(DOMAIN_ID),
           "--duration", "2"]
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(good_rig(tmp_path)))
    out = subprocess.run([*cmd, "--config", str(good)], capture_output=True, text=True, env=env, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(good_rig(tmp_path, cameras=[{"name": "vc_gone", "frame_id": "vc_gone_optical"}])))
    out = subprocess.run([*cmd, "--config", str(bad)], capture_output=True, text=True, env=env, timeout=120,
                         check=False)
    assert out.returncode == 1 and "FAILED: camera vc_gone rate" in out.stdout, out.stdout + out.stderr
