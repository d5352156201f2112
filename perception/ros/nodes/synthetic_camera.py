"""``synthetic_camera``: the built-in synthetic driving world as a live ROS 2 camera.

Publishes in real time (``fps``), every message stamped with the node clock at publish time:
  <camera>/image_raw (sensor_msgs/Image rgb8), <camera>/image_raw/compressed (JPEG, optional),
  <camera>/camera_info (sensor_msgs/CameraInfo), <camera>/points (sensor_msgs/PointCloud2, optional,
  LiDAR frame), <camera>/ground_truth (vision_msgs/Detection2DArray, ``id`` = track id),
  <odom_topic> (nav_msgs/Odometry: the ego pose odom -> base_link and its body-frame twist),
  /tf (odom -> base_link) and /tf_static (base_link -> the camera optical frame, base_link -> lidar;
  transient local, published again when a new drive changes the rig).
Frames are rendered ahead on a thread (open3d raycasting), so a slow frame delays publication
instead of piling up; after ``num_frames`` the next drive (seed + 1) starts: a scene cut.
Shutdown (SIGINT / SIGTERM, :func:`perception.ros.spin.spin_until_signal`): the node is destroyed --
its threads stopped and joined -- before rclpy shuts down, so nothing publishes on an invalid context.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import rclpy
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection2DArray

from perception.ros import convert, frames
from perception.ros.nodes.params import SYNTHETIC_CAMERA_PARAMS
from perception.ros.qos import latched, qos_profile
from perception.ros.spin import init_without_signal_handlers, spin_until_signal


@dataclass(frozen=True)
class SimFrame:
    """A rendered frame with the ego state: ``odom_T_base`` (the drive's world frame is odom),
    ``velocity`` (base frame, m/s), ``yaw_rate`` (rad/s), and the rig ``base_T_cam`` / ``base_T_lidar``
    (None without LiDAR)."""

    frame: Any
    odom_T_base: np.ndarray
    velocity: np.ndarray
    yaw_rate: float
    base_T_cam: np.ndarray
    base_T_lidar: np.ndarray | None


def _ego_state(world: Any, t: float, dt: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(odom_T_base, body-frame velocity, yaw rate) at ``t`` by a finite difference over ``dt``."""
    from perception.sim.world import ego_pose

    pose = ego_pose(world, t, 0.0)
    t0, t1 = (t, t + dt) if t + dt <= world.max_time else (t - dt, t)
    a, b = ego_pose(world, t0, 0.0), ego_pose(world, t1, 0.0)
    v_world = (b[:3, 3] - a[:3, 3]) / dt
    dyaw = np.arctan2(b[1, 0], b[0, 0]) - np.arctan2(a[1, 0], a[0, 0])
    yaw_rate = float((dyaw + np.pi) % (2 * np.pi) - np.pi) / dt
    return pose, pose[:3, :3].T @ v_world, yaw_rate


def _frames(seed: int, num_frames: int, sim_cfg: Any, loop: bool) -> Iterator[SimFrame]:
    from perception.sim.drive import generate_sequence, get_world

    while True:
        world = get_world(seed, sim_cfg)
        for frame in generate_sequence(seed, num_frames, sim_cfg):
            pose, velocity, yaw_rate = _ego_state(world, frame.stamp, 0.05)
            base_T_odom = np.linalg.inv(pose)
            lidar = None if frame.world_T_lidar is None else base_T_odom @ frame.world_T_lidar
            yield SimFrame(frame, pose, velocity, yaw_rate, base_T_odom @ frame.world_T_cam, lidar)
        if not loop:
            return
        seed += 1


class SyntheticCameraNode(Node):
    def __init__(self, node_name: str = "synthetic_camera", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        for name, (default, text) in SYNTHETIC_CAMERA_PARAMS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text))
        p = {name: self.get_parameter(name).value for name in SYNTHETIC_CAMERA_PARAMS}
        from perception.sim.config import SimConfig

        self.sim_cfg = SimConfig(width=p["width"], height=p["height"], hfov_deg=p["hfov_deg"], fps=p["fps"],
                                 lidar=p["lidar"])
        self.p = p
        cam = p["camera"]
        q = qos_profile(p["qos_reliability"], 1)
        self.pub_image = self.create_publisher(Image, f"{cam}/image_raw", q)
        self.pub_compressed = (self.create_publisher(CompressedImage, f"{cam}/image_raw/compressed", q)
                               if p["publish_compressed"] else None)
        self.pub_info = self.create_publisher(CameraInfo, f"{cam}/camera_info", q)
        self.pub_points = self.create_publisher(PointCloud2, f"{cam}/points", q) if p["lidar"] else None
        self.pub_gt = self.create_publisher(Detection2DArray, f"{cam}/ground_truth", qos_profile("reliable", 5))
        self.pub_odom = self.create_publisher(Odometry, p["odom_topic"], qos_profile("reliable", 10)) \
            if p["odom_topic"] else None
        self.pub_tf_static = self.create_publisher(TFMessage, "/tf_static", latched()) if p["publish_tf"] else None
        self.pub_tf = self.create_publisher(TFMessage, "/tf", qos_profile("reliable", 10)) if p["publish_tf"] else None
        self._rig: tuple[bytes, bytes] | None = None  # the rig last sent on /tf_static
        self.published = 0
        self.late = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=4)
        self._stop = threading.Event()
        self._render = threading.Thread(target=self._render_loop, name="sim-render", daemon=True)
        self._publish = threading.Thread(target=self._publish_loop, name="sim-publish", daemon=True)
        self._render.start()
        self._publish.start()
        self.get_logger().info(
            f"synthetic camera {self.sim_cfg.width}x{self.sim_cfg.height} at {p['fps']} Hz on "
            f"{self.resolve_topic_name(f'{cam}/image_raw')} (seed {p['seed']}, {p['num_frames']} frames per drive)"
        )

    def _render_loop(self) -> None:
        try:
            for frame in _frames(self.p["seed"], self.p["num_frames"], self.sim_cfg, self.p["loop"]):
                while not self._stop.is_set():
                    try:
                        self._queue.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except Exception as e:  # the renderer failing must be visible, not a silent dead thread
            self.get_logger().error(f"synthetic world failed: {type(e).__name__}: {e}")
        while not self._stop.is_set():  # the end of the drive; never blocks a stop on a full queue
            try:
                self._queue.put(None, timeout=0.1)
                return
            except queue.Full:
                continue

    def _wait_for_subscribers(self) -> None:
        wanted = int(self.p["wait_for_subscribers"])
        if wanted <= 0:
            return
        self.get_logger().info(f"waiting for {wanted} subscriber(s) on {self.pub_image.topic_name}")
        while not self._stop.is_set() and self.pub_image.get_subscription_count() < wanted:
            self._stop.wait(0.05)

    def _publish_loop(self) -> None:
        self._wait_for_subscribers()
        period = 1.0 / float(self.p["fps"])
        next_t = time.monotonic()
        limit = int(self.p["max_frames"])
        while not self._stop.is_set():
            try:
                frame = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if frame is None:
                self.get_logger().info(f"end of the synthetic drive after {self.published} frames")
                return
            delay = next_t - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                self.late += 1
            next_t = max(next_t + period, time.monotonic() - period)
            if self._stop.is_set():
                return
            self.publish_frame(frame)
            if limit and self.published >= limit:
                self.get_logger().info(f"published {self.published} frames (max_frames): stopping")
                return

    def _publish_rig(self, sim: SimFrame, now: float) -> None:
        """/tf_static: base -> camera (and -> lidar), when it changed (the first frame, a new drive's rig)."""
        lidar = sim.base_T_lidar
        rig = (np.round(sim.base_T_cam, 6).tobytes(), b"" if lidar is None else np.round(lidar, 6).tobytes())
        if self.pub_tf_static is None or rig == self._rig:
            return
        self._rig = rig
        header = convert.make_header(now, self.p["base_frame_id"])
        transforms = [frames.transform_msg(sim.base_T_cam, header, self.p["frame_id"])]
        if lidar is not None:
            transforms.append(frames.transform_msg(lidar, header, self.p["lidar_frame_id"]))
        self.pub_tf_static.publish(TFMessage(transforms=transforms))

    def publish_frame(self, sim: SimFrame) -> None:
        frame = sim.frame
        now = self.get_clock().now().nanoseconds * 1e-9
        self._publish_rig(sim, now)
        odom_header = convert.make_header(now, self.p["odom_frame_id"])
        if self.pub_odom is not None:
            self.pub_odom.publish(frames.odometry_msg(sim.odom_T_base, odom_header, self.p["base_frame_id"],
                                                      sim.velocity, sim.yaw_rate))  # fmt: skip
        if self.pub_tf is not None:
            tf = frames.transform_msg(sim.odom_T_base, odom_header, self.p["base_frame_id"])
            self.pub_tf.publish(TFMessage(transforms=[tf]))
        header = convert.make_header(now, self.p["frame_id"])
        self.pub_image.publish(convert.array_to_image(frame.rgb, header, "rgb8"))
        if self.pub_compressed is not None:
            self.pub_compressed.publish(convert.rgb_to_compressed(frame.rgb, header))
        self.pub_info.publish(convert.intrinsics_to_camera_info(frame.intrinsics, header))
        self.pub_gt.publish(convert.ground_truth_to_msg(frame.gt, header))
        if self.pub_points is not None and frame.lidar is not None:
            lidar_header = convert.make_header(now, self.p["lidar_frame_id"])
            self.pub_points.publish(convert.points_to_pointcloud2(frame.lidar, lidar_header))
        self.published += 1

    def destroy_node(self) -> None:
        """Stop and join the threads first: only then may rclpy shut down (the publisher thread must not
        publish on an invalid context). The publisher thread never blocks for long (every wait is on
        ``_stop`` or 0.1 s), so it is joined without a limit; the renderer publishes nothing and may be
        inside one raycast: it gets 2 s, then is left to die with the process (a daemon)."""
        self._stop.set()
        self._publish.join()
        self._render.join(2.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    # no rclpy signal handlers: its SIGINT handler shuts the context down at once, while the sim-publish
    # thread may be inside publish_frame ("publisher's context is invalid"); spin_until_signal stops the
    # node (and its threads) first, then shuts rclpy down
    init_without_signal_handlers(args)
    try:
        node = SyntheticCameraNode()
    except KeyboardInterrupt:  # Ctrl-C while starting (imports, the world): nothing published yet
        rclpy.try_shutdown()
        return
    except ImportError as e:
        print(f"synthetic_camera: the synthetic world is not available ({e}); install the package with its sim")
        rclpy.try_shutdown()
        raise SystemExit(1) from e
    spin_until_signal(node)


if __name__ == "__main__":
    main()
