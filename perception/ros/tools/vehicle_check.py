"""The live-graph side of ``perception vehicle check``: listen to the rig's topics for a few seconds.

Subscribes to every camera's image and CameraInfo topic, the LiDAR and ``/tf_static`` (transient local),
keeps plain records (:class:`perception.vehicle.check.GraphObservation`) and leaves the verdict to
:mod:`perception.vehicle.check`. Listening ends ``duration`` seconds after the first message (so DDS
discovery does not eat into the rate window), or at ``duration + grace`` when nothing comes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from perception.vehicle.check import (
    CheckRow,
    GraphObservation,
    InfoSample,
    Limits,
    SensorSample,
    check_dds,
    check_disk,
    check_engine,
    check_graph,
)
from perception.vehicle.config import RigConfig
from perception.vehicle.units import InstallLayout


def _stamp(msg: Any) -> float:
    return float(msg.header.stamp.sec) + 1e-9 * float(msg.header.stamp.nanosec)


def collect(node: Any, rig: RigConfig, duration: float = 3.0, grace: float = 3.0) -> GraphObservation:
    """Listen on ``node`` (spun here on its own executor) and return what arrived."""
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
    from tf2_msgs.msg import TFMessage

    from perception.ros import convert
    from perception.ros.errors import RosError
    from perception.ros.qos import latched, qos_profile

    obs = GraphObservation(duration_s=duration)
    first: list[float] = []
    sensor_qos = qos_profile("best_effort", 10)
    subs: list[Any] = []

    def image_cb(cam: str, msg: Any) -> None:
        now = time.time()
        first.append(now)
        if isinstance(msg, CompressedImage):
            sample = SensorSample(now, _stamp(msg), msg.header.frame_id, str(msg.format))
        else:
            sample = SensorSample(now, _stamp(msg), msg.header.frame_id, str(msg.encoding), int(msg.width),
                                  int(msg.height))
        obs.images.setdefault(cam, []).append(sample)

    def info_cb(cam: str, msg: CameraInfo) -> None:
        problem = ""
        try:
            convert.camera_info_size(msg)
            convert.camera_info_to_intrinsics(msg)
        except RosError as e:
            problem = str(e)
        obs.infos.setdefault(cam, []).append(InfoSample(time.time(), msg.header.frame_id, int(msg.width),
                                                        int(msg.height), problem))

    def lidar_cb(msg: PointCloud2) -> None:
        now = time.time()
        first.append(now)
        obs.lidar.append(SensorSample(now, _stamp(msg), msg.header.frame_id))

    def tf_cb(msg: TFMessage) -> None:
        for t in msg.transforms:
            obs.tf_parents[str(t.child_frame_id)] = str(t.header.frame_id)

    for cam in rig.cameras:
        msg_type = CompressedImage if cam.transport == "compressed" else Image
        subs.append(node.create_subscription(msg_type, cam.image_topic, lambda m, c=cam.name: image_cb(c, m),
                                             sensor_qos))
        if cam.camera_info:
            subs.append(node.create_subscription(CameraInfo, cam.info_topic, lambda m, c=cam.name: info_cb(c, m),
                                                 sensor_qos))
    if rig.lidar.topic:
        subs.append(node.create_subscription(PointCloud2, rig.lidar.topic, lidar_cb, sensor_qos))
    subs.append(node.create_subscription(TFMessage, "/tf_static", tf_cb, latched(100)))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    start = time.time()
    try:
        while True:
            now = time.time()
            if (first and now - first[0] >= duration) or now - start >= duration + grace:
                break
            executor.spin_once(timeout_sec=0.02)
    finally:
        executor.remove_node(node)
        for s in subs:
            node.destroy_subscription(s)
    obs.duration_s = time.time() - (first[0] if first else start)
    return obs


def run_check(node: Any, rig: RigConfig, prefix: Path | None, duration: float = 3.0,
              limits: Limits | None = None) -> list[CheckRow]:
    """Every row: the live graph, then the install (engine), disk and DDS profile."""
    rows = check_graph(rig, collect(node, rig, duration), limits)
    if prefix is not None:
        layout = InstallLayout(prefix)
        rows += check_engine(layout.manifest)
        profile: Path | None = layout.etc / "fastdds_localhost.xml"
    else:
        from perception.ros.env import profile_path

        profile = profile_path()
    if rig.dds.profile not in ("localhost", "default"):
        profile = Path(rig.dds.profile).expanduser()
    return rows + check_disk(rig) + check_dds(rig, profile)
