"""One camera into perception_node faster than it infers: stale drops, temporal resets and the level.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 .venv/bin/python scripts/node_stale_resets.py 60   # camera Hz (target)

stan_s_temporal (shipped weights) at 384x640, one thread, temporal.max_gap_s 0.1, 15 s of a still image.
Loopback DDS and a private ROS_DOMAIN_ID (test/ros/ros_testing.py); the node is stopped by its pid.
"""

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test" / "ros"))
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import qos_profile_sensor_data
from ros_testing import TINY_MODEL, Client, diag_values, image_msg, init_rclpy, rgb_image, start_node
from sensor_msgs.msg import Image

hz = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
init_rclpy()
c = Client("stale_client")
pub = c.node.create_publisher(Image, "/st/image_raw", qos_profile_sensor_data)
diags = c.collect(DiagnosticArray, "/diagnostics")
params = {**TINY_MODEL, "model.name": "stan_s_temporal", "model.input_height": 384, "model.input_width": 640,
          "autostart": True, "cameras": ["st"], "temporal.max_gap_s": 0.1, "temporal.detect_scene_cuts": False}
p = start_node("perception.ros.nodes.perception_node", "stale_node", params, Path(tempfile.mkdtemp()))
rgb = rgb_image(480, 640, seed=1)
assert c.spin_until(lambda: any((v := diag_values(m, "stale_node: st")) and v["state"] == "active" for m in diags), 90)
t0, i, last, stalls = time.monotonic(), 0, time.monotonic(), 0
while time.monotonic() - t0 < 15.0:
    pub.publish(image_msg(rgb, 1000.0 + i / hz))
    now = time.monotonic()
    stalls += now - last > 0.1  # this publisher itself paused longer than max_gap_s (then sends a burst)
    last = now
    i += 1
    c.spin_until(lambda k=i: time.monotonic() - t0 >= k / hz, 1.0)
c.spin_for(1.5)
m = [m for m in diags if diag_values(m, "stale_node: st")][-1]
v = diag_values(m, "stale_node: st") or {}
level = {0: "OK", 1: "WARN", 2: "ERROR"}[int.from_bytes(m.status[0].level, "little")]
keys = ("received", "processed", "dropped_stale", "resets", "infer_p50_ms")
print({k: v.get(k) for k in keys}, "level", level, "publisher stalls > 0.1 s:", stalls)
p.stop()
