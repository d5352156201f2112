"""The start-up race behind ``objects_no_odom == 1`` in test_objects_graph (issue 21), measured.

    PYTHONPATH=$PWD .venv/bin/python scripts/subscription_order_race.py 25 [--gap 0.05]

A camera-like publisher sends odometry (reliable) then an image (best effort) at 10 Hz. A node-like
subscriber whose participant is already discovered (a node subscribes on activate, seconds after it
started) creates its two subscriptions -- image first, or odometry first -- with ``--gap`` seconds in
between (the work between two ``create_subscription`` calls on a loaded machine), N times each. For
the first image each subscriber receives: did its frame's odometry arrive (by 100 ms after the image)?

A publisher sends only to the subscriptions it has matched, and it matches a participant's
subscriptions in the order they were created. Image first leaves a window in which images are sent to
the node and the odometry of the same frame is not: the frame is processed without odometry.
Measured (2 busy cores, localhost DDS, 2026-12-05): gap 0.05 s: image first 13 of 24 first images without
their odometry, odometry first 0 of 20 (an earlier prototype: 9 of 22 vs 0 of 23); gap 0: image first 1 of 23,
odometry first 0 of 24 -- the once-in-a-CI-run rate of the flake.
Loopback DDS, a private ROS_DOMAIN_ID (perception.ros.env).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from perception.ros.env import apply_localhost_env

IMAGE, ODOM = "/order_race/image_raw", "/order_race/odom"


def publish(seconds: float) -> None:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from std_msgs.msg import UInt32

    from perception.ros.spin import init_without_signal_handlers

    stop = threading.Event()  # SIGTERM from the parent ends the loop before rclpy shuts down
    init_without_signal_handlers()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    node = rclpy.create_node("order_race_camera")
    image = node.create_publisher(UInt32, IMAGE, qos_profile_sensor_data)
    odom = node.create_publisher(UInt32, ODOM, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    end, i = time.monotonic() + seconds, 0
    while time.monotonic() < end and not stop.is_set():
        odom.publish(UInt32(data=i))  # as synthetic_camera.publish_frame: odometry, then the image
        image.publish(UInt32(data=i))
        i += 1
        stop.wait(0.1)
    node.destroy_node()
    rclpy.shutdown()


def subscribe_once(index: int, image_first: bool, gap: float) -> bool | None:
    """One node start: True/False = the first image had/lacked its odometry; None = no image came."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from std_msgs.msg import UInt32

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node(f"order_race_node_{index}", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    log: list[tuple[str, int, float]] = []

    def spin(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.02)

    def sub(topic: str, qos: Any) -> None:
        node.create_subscription(UInt32, topic, lambda m: log.append((topic, m.data, time.monotonic())), qos)

    spin(1.5)  # the participant is known to the camera before the node subscribes (as on activate)
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    order = [(IMAGE, qos_profile_sensor_data), (ODOM, reliable)]
    for k, (topic, qos) in enumerate(order if image_first else order[::-1]):
        if k:
            time.sleep(gap)
        sub(topic, qos)
    spin(0.8)
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=ctx)
    images = [(d, t) for topic, d, t in log if topic == IMAGE]
    if not images:
        return None
    frame, t = images[0]
    return any(topic == ODOM and d == frame and t2 <= t + 0.1 for topic, d, t2 in log)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("n", type=int, nargs="?", default=25)
    p.add_argument("--gap", type=float, default=0.05)
    p.add_argument("--publish", type=float, help=argparse.SUPPRESS)  # the publisher process
    a = p.parse_args()
    if a.publish:  # the parent's domain (inherited)
        apply_localhost_env(int(os.environ["ROS_DOMAIN_ID"]))
        publish(a.publish)
        return 0
    apply_localhost_env()  # a private domain from this process id
    camera = subprocess.Popen([sys.executable, __file__, "--publish", str(2 * a.n * 2.5 + 10)])
    try:
        time.sleep(2.0)
        for image_first in (True, False):
            results = [subscribe_once(i, image_first, a.gap) for i in range(a.n)]
            got = [r for r in results if r is not None]
            print(f"{'image first   ' if image_first else 'odometry first'} (gap {a.gap:.3f} s): "
                  f"{got.count(False)} of {len(got)} first images without their odometry", flush=True)
    finally:
        camera.terminate()
        camera.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
