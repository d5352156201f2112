"""perception_node with ``runtime.pipelining: enabled`` and ``output.mask_resolution: network`` on a real ROS 2 graph.

Frames keep flowing through the three stages under a burst (the newest frames win, the rest are counted
stale), the masks come at the network's size with a matching ``mask/camera_info``, image outputs nobody
subscribes to are not published, and SIGINT stops the node cleanly (exit code 0) while frames flow.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import qos_profile_sensor_data
from ros_testing import TINY_MODEL, Client, diag_values, image_msg, needs_model, rgb_image
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray

from perception.core.types import CameraIntrinsics
from perception.ros import convert
from perception.ros.tools.node_process import NodeProcess

NODE = "perception_pipelining_test"
H, W = 90, 160


def _wait_diag(client: Client, box: list[Any], until: Callable[[dict[str, str]], bool],
               timeout: float) -> dict[str, str]:
    found: dict[str, str] = {}

    def ok() -> bool:
        for m in box:
            v = diag_values(m, f"{NODE}: pp")
            if v is not None:
                found.clear()
                found.update(v)
        return bool(found) and until(found)

    assert client.spin_until(ok, timeout), f"diagnostics: {found}"
    return found


def test_pipelined_node_serves_a_burst_counts_drops_publishes_network_masks_and_stops_cleanly(
    client: Client, node_factory: Callable[..., NodeProcess]
) -> None:
    needs_model()
    # a network input large enough that inference (~20 ms on a 2-core EPYC) cannot keep up with the ~400 Hz
    # burst below: at the shared 64x128 size a fast CI machine answered every burst frame (4 ms each), so
    # "the newest frames win" was never exercised and the test failed there
    params = {**TINY_MODEL, "model.input_height": 384, "model.input_width": 704,
              "autostart": True, "cameras": ["pp"], "runtime.pipelining": "enabled",
              "output.mask_resolution": "network", "input.camera_info": True, "diagnostics_period": 0.25,
              "temporal.max_gap_s": 5.0}
    proc = node_factory("perception.ros.nodes.perception_node", NODE, params)
    diags = client.collect(DiagnosticArray, "/diagnostics")
    active = _wait_diag(client, diags, lambda v: v.get("state") == "active" or not proc.alive(), 60.0)
    assert proc.alive(), proc.output()[-3000:]
    assert active["pipelining"] == "enabled"

    pub = client.node.create_publisher(Image, "/pp/image_raw", qos_profile_sensor_data)
    info_pub = client.node.create_publisher(CameraInfo, "/pp/camera_info", qos_profile_sensor_data)
    dets = client.collect(Detection2DArray, "/pp/detections")
    segs = client.collect(Image, "/pp/segmentation")
    infos = client.collect(CameraInfo, "/pp/mask/camera_info")
    intr = CameraIntrinsics(W, H, 120.0, 110.0, 80.0, 45.0)
    rgb = rgb_image(H, W, seed=5)

    # 1. one frame at a time until every subscribed output is there (discovery of our subscriptions included)
    def send_one(stamp: float) -> bool:
        info_pub.publish(convert.intrinsics_to_camera_info(intr, convert.make_header(stamp, "cam")))
        pub.publish(image_msg(rgb, stamp))
        return client.spin_until(lambda: any(convert.stamp_to_seconds(m.header.stamp) == stamp for m in infos), 1.0)

    stamp = 100.0
    while not send_one(stamp) and stamp < 130.0:
        stamp += 0.5
    assert infos, "no mask/camera_info:\n" + proc.output()[-3000:]
    seg = next(m for m in segs if convert.stamp_to_seconds(m.header.stamp) == stamp)
    info = next(m for m in infos if convert.stamp_to_seconds(m.header.stamp) == stamp)
    assert seg.encoding == "mono8" and (seg.width, seg.height) != (W, H)  # the network's size, not the input's
    assert seg.width <= 704 and seg.height <= 384
    assert (info.width, info.height) == (seg.width, seg.height) and info.header == seg.header
    k = np.asarray(info.k).reshape(3, 3)
    np.testing.assert_allclose(k[0, [0, 2]], np.array([120.0, 80.0]) * seg.width / W, rtol=0.03)
    np.testing.assert_allclose(k[1, [1, 2]], np.array([110.0, 45.0]) * seg.height / H, rtol=0.03)

    # 2. a burst far faster than inference: the newest frames win, the rest are counted stale, frames flow
    dets.clear()
    burst = [image_msg(rgb, stamp + 1.0 + 0.003 * i) for i in range(150)]
    # ~400 Hz, spaced so DDS delivers them (a back-to-back burst mostly dies in DDS's depth-1 queue); a plain
    # sleep, not client.spin_for, whose executor granularity stretched the burst to ~65 Hz (here: ~140 of 150
    # frames received, ~90 % of them dropped stale at 20 ms inference)
    for m in burst:
        pub.publish(m)
        time.sleep(0.002)
    client.spin_for(1.0)
    assert dets, "no detections after the burst:\n" + proc.output()[-3000:]
    answered = {convert.stamp_to_seconds(m.header.stamp) for m in dets}
    assert answered <= {convert.stamp_to_seconds(m.header.stamp) for m in burst}
    snap = _wait_diag(client, diags, lambda v: int(v["dropped_stale"]) > 0, 10.0)
    assert int(snap["processed"]) >= len(answered) and snap["dropped_failed"] == "0"
    for name in ("convert_p50_ms", "perceptor_p50_ms", "publish_p50_ms"):
        assert float(snap[name]) >= 0.0
    # and afterwards every single frame is answered again
    def answered_at(s: float) -> Callable[[], bool]:
        return lambda: any(convert.stamp_to_seconds(m.header.stamp) == s for m in dets)

    for i in range(3):
        s = stamp + 10.0 + 0.1 * i
        pub.publish(image_msg(rgb, s))
        assert client.spin_until(answered_at(s), 10.0)

    # 3. SIGINT while frames flow: every stage thread joins, exit code 0, no traceback
    proc.proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 20.0
    i = 0
    while proc.alive() and time.monotonic() < deadline:
        pub.publish(image_msg(rgb, stamp + 20.0 + 0.01 * i))
        i += 1
        client.spin_for(0.01)
    assert not proc.alive(), "node did not stop:\n" + proc.output()[-2000:]
    out = proc.output()
    assert proc.proc.returncode == 0 and "Traceback" not in out, out[-3000:]
