"""The colcon path of the README: ``colcon build --packages-select perception`` in a fresh workspace, then
``source install/setup.bash`` and run what was installed.

1. the install space holds the entry points, launch files and config; with it sourced, ``perception`` is
   imported from the install space (not this source tree) and finds its share directory and the localhost
   DDS profile there;
2. the installed ``perception_node`` entry point runs with the installed config/perception.yaml, answers
   images with detections, and exits 0 on SIGINT;
3. ``launch/perception.launch.py`` from the install space's share directory runs under real launch_ros
   (scripts/launch_file.py, as ``ros2 launch perception perception.launch.py``), finds its config through
   the package share directory, and stops cleanly on SIGINT (skipped without launch / launch_ros).
Loopback DDS, this session's private ROS_DOMAIN_ID.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
if importlib.util.find_spec("colcon_core") is None:
    pytest.skip("colcon-common-extensions (requirements-dev.txt) not installed", allow_module_level=True)

import colcon_ws
from colcon_ws import build_workspace, clean_stop_problems, missing_tools, sourced, start_launch, stop_group
from rclpy.qos import qos_profile_sensor_data
from ros_testing import DOMAIN_ID, TINY_MODEL, Client, image_msg, rgb_image
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from perception.ros.env import localhost_env


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    t0 = time.monotonic()
    path = build_workspace(tmp_path_factory.mktemp("colcon") / "ws")
    print(f"colcon build: {time.monotonic() - t0:.1f} s")
    yield path


def _send_until_detections(client: Client, images: str, answers: str, proc: subprocess.Popen[bytes],
                           timeout: float) -> bool:  # fmt: skip
    """Publish images on ``images`` until two Detection2DArray came back on ``answers``."""
    pub = client.node.create_publisher(Image, images, qos_profile_sensor_data)
    detections = client.collect(Detection2DArray, answers)
    msg = image_msg(rgb_image(48, 64, seed=3), 1.0)

    def answered() -> bool:
        pub.publish(msg)
        return len(detections) >= 2 or proc.poll() is not None

    try:
        return client.spin_until(answered, timeout) and proc.poll() is None
    finally:
        client.node.destroy_publisher(pub)


def _sigint(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stop_group(proc)


def test_install_space_is_complete_and_imported(install: Path) -> None:
    share = install / "perception" / "share" / "perception"
    for f in ("package.xml", "launch/perception.launch.py", "launch/demo.launch.py", "config/perception.yaml",
              "config/fastdds_localhost.xml"):
        assert (share / f).is_file(), f"{f} not installed"
    assert {"perception", "perception_node", "synthetic_camera"} <= {p.name for p in (install / "perception" / "lib"
                                                                                      / "perception").iterdir()}
    probe = ("import perception, perception.ros.env as e; print(perception.__file__); print(e.share_dir()); "
             "print(e.profile_path())")
    r = subprocess.run(sourced(install, [sys.executable, "-c", probe]), env=colcon_ws.workspace_env(os.environ),
                       cwd=install.parent, capture_output=True, text=True, timeout=60)  # not this tree's cwd
    assert r.returncode == 0, r.stderr
    module, share_dir, profile = r.stdout.split()
    assert Path(module).is_relative_to(install), f"perception imported from {module}, not the install space"
    assert Path(share_dir) == share and Path(profile) == share / "config" / "fastdds_localhost.xml"


def test_installed_entry_point_runs_and_stops_on_sigint(install: Path, client: Client, tmp_path: Path) -> None:
    share = install / "perception" / "share" / "perception"
    params = tmp_path / "params.yaml"
    overrides = {**TINY_MODEL, "autostart": True, "cameras": ["colcon_node"]}
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": overrides}}), encoding="utf-8")
    argv = [str(install / "perception" / "lib" / "perception" / "perception_node"), "--ros-args",
            "-r", "__node:=colcon_node", "--params-file", str(share / "config" / "perception.yaml"),
            "--params-file", str(params)]
    log = tmp_path / "node.log"
    with log.open("wb") as out:
        env = colcon_ws.workspace_env(localhost_env(DOMAIN_ID))
        proc = subprocess.Popen(sourced(install, argv), env=env, cwd=install.parent, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        up = _send_until_detections(client, "/colcon_node/image_raw", "/colcon_node/detections", proc, 60.0)
        assert up, "no detections from the installed perception_node:\n" + log.read_text()[-3000:]
        _sigint(proc)
    finally:
        stop_group(proc)
    output = log.read_text(encoding="utf-8", errors="replace")
    assert proc.returncode == 0 and "Traceback" not in output, output[-3000:]


def test_launch_file_from_the_share_directory_under_launch_ros(install: Path, client: Client, tmp_path: Path) -> None:
    why = missing_tools()
    if why:
        pytest.skip(why)
    log = tmp_path / "launch.log"
    # perception.launch.py as installed: its parameter file found through the package share directory
    args = ["perception", "perception.launch.py", "camera_topic:=/colcon_launch/image_raw", "backend:=torch"]
    proc = start_launch(install, args, localhost_env(DOMAIN_ID), log)
    try:
        up = _send_until_detections(client, "/colcon_launch/image_raw", "/camera/detections", proc, 90.0)
        # the launch started the installed entry point (lib/perception/perception_node of the install space)
        cmdlines = [Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in colcon_ws.children(proc.pid)]
        assert up, "no detections from perception.launch.py:\n" + log.read_text()[-3000:]
        _sigint(proc)
    finally:
        stop_group(proc)
    node = str(install / "perception" / "lib" / "perception" / "perception_node").encode()
    assert any(node in c for c in cmdlines), cmdlines
    output = log.read_text(encoding="utf-8", errors="replace")
    assert not clean_stop_problems(proc.returncode, output, nodes=1), output[-3000:]
