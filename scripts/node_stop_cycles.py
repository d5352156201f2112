"""Start and stop perception_node N times with frames flowing (~100 Hz), count clean exits.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 .venv/bin/python scripts/node_stop_cycles.py 20 ALT   # INT | TERM | ALT

Loopback DDS and a private ROS_DOMAIN_ID (test/ros/ros_testing.py); every node is stopped by its pid.
"""

import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test" / "ros"))
from rclpy.qos import qos_profile_sensor_data
from ros_testing import TINY_MODEL, Client, image_msg, init_rclpy, rgb_image, start_node
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

n, mode = int(sys.argv[1]), sys.argv[2]
init_rclpy()
c = Client("stop_cycles_client")
pub = c.node.create_publisher(Image, "/sd/image_raw", qos_profile_sensor_data)
dets = c.collect(Detection2DArray, "/sd/detections")
msg = image_msg(rgb_image(48, 64, seed=1), 1.0)
tmp = Path(tempfile.mkdtemp())
res = []
for i in range(n):
    dets.clear()
    p = start_node("perception.ros.nodes.perception_node", f"cyc_{i}",
                   {**TINY_MODEL, "autostart": True, "cameras": ["sd"]}, tmp)
    c.spin_until(lambda: (pub.publish(msg), len(dets) >= 3)[1], 60)
    sig = {"INT": signal.SIGINT, "TERM": signal.SIGTERM}.get(mode, signal.SIGINT if i % 2 == 0 else signal.SIGTERM)
    p.proc.send_signal(sig)
    t0 = time.monotonic()
    while p.alive() and time.monotonic() - t0 < 20:
        pub.publish(msg)
        c.spin_for(0.01)
    if p.alive():
        p.stop()
    out = p.output()
    res.append((sig.name, p.proc.returncode, "Traceback" in out, "RCLError" in out))
    print(res[-1], flush=True)
clean = sum(1 for _, rc, tb, _ in res if rc == 0 and not tb)
print(f"clean exits: {clean}/{n}; with a traceback: {sum(r[2] for r in res)}; RCLError: {sum(r[3] for r in res)}")
c.close()
