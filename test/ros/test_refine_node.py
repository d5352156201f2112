"""perception_node with refine.enabled: the two-pass Perceptor runs in the node and /diagnostics reports
the pixels it processed against the full-resolution frame."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import qos_profile_sensor_data
from ros_testing import (
    TINY_MODEL,
    Client,
    diag_values,
    image_msg,
    needs_model,
    rgb_image,
    start_active_perception_node,
)
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from perception.ros.tools.node_process import NodeProcess

NODE = "perception_refine_test"


@pytest.fixture(scope="module")
def node(module_client: Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    needs_model()
    params = {**TINY_MODEL, "autostart": True, "cameras": ["r"], "diagnostics_period": 0.25,
              "refine.enabled": True, "refine.max_regions": 2}
    proc = start_active_perception_node(module_client, NODE, params, Path(tmp_path_factory.mktemp("node")), "r")
    yield proc
    assert proc.alive(), "node died:\n" + proc.output()
    proc.stop()


def test_diagnostics_report_the_refined_pixel_ratio(node: NodeProcess, module_client: Client) -> None:
    pub = module_client.node.create_publisher(Image, "/r/image_raw", qos_profile_sensor_data)
    dets = module_client.collect(Detection2DArray, "/r/detections")
    diags = module_client.collect(DiagnosticArray, "/diagnostics")
    found: dict[str, str] = {}

    def refined() -> bool:
        for m in diags:
            v = diag_values(m, f"{NODE}: r")
            if v is not None and float(v.get("refine.pixel_ratio", "0")) > 0:
                found.update(v)
        return bool(found)

    for k in range(40):  # a 180x320 frame on a 64x128 network: pass 1 sees it at 0.4x, crops at 1x
        pub.publish(image_msg(rgb_image(180, 320, seed=k), 1.0 + 0.05 * k))
        if module_client.spin_until(lambda: bool(dets) and refined(), 0.25):
            break
    assert dets, "no detections came back:\n" + node.output()
    assert found, "no refine.pixel_ratio in /diagnostics:\n" + node.output()
    assert found["refine.enabled"] == "true"
    ratio, regions = float(found["refine.pixel_ratio"]), float(found["refine.regions_per_frame"])
    # pass 1 alone is 64*128 / (180*320) = 0.142 of the frame; each crop adds as much again, at most 2 crops
    assert 0.14 <= ratio <= 0.43 and 0.0 <= regions <= 2.0
    assert ratio == pytest.approx(64 * 128 * (1 + regions) / (180 * 320), abs=0.01)
