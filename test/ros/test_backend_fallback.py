"""A node told to run a corrupt ONNX model falls back to torch, keeps serving, and says so in /diagnostics."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("onnxruntime")

from collections.abc import Callable
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.qos import qos_profile_sensor_data
from ros_testing import TINY_MODEL, Client, diag_values, image_msg, needs_model, rgb_image
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from perception.ros import convert
from perception.ros.tools.node_process import NodeProcess


def test_corrupt_onnx_falls_back_to_torch_and_is_reported(
    client: Client, node_factory: Callable[..., NodeProcess], tmp_path: Path
) -> None:
    needs_model()
    corrupt = tmp_path / "model.onnx"
    corrupt.write_bytes(b"\x08\x07" + b"not an onnx model" * 64)  # what a half-copied file looks like
    name = "perception_fallback_test"
    proc = node_factory("perception.ros.nodes.perception_node", name, {
        **TINY_MODEL, "autostart": True, "cameras": ["fcam"], "model.backend": "onnxruntime",
        "model.onnx": str(corrupt), "diagnostics_period": 0.3,
    })
    diags = client.collect(DiagnosticArray, "/diagnostics")
    dets = client.collect(Detection2DArray, "/fcam/detections")
    pub = client.node.create_publisher(Image, "/fcam/image_raw", qos_profile_sensor_data)
    rgb = rgb_image(64, 128, seed=3)

    def served() -> bool:
        pub.publish(image_msg(rgb, 20.0))
        return any(convert.stamp_to_seconds(d.header.stamp) == 20.0 for d in dets)

    assert client.spin_until(lambda: proc.alive() and served(), 60.0), proc.output()[-3000:]

    def reported() -> dict[str, str] | None:
        for m in reversed(diags):
            for st in m.status:
                if name in st.name and st.level == DiagnosticStatus.WARN:
                    return diag_values(m, name)
        return None

    assert client.spin_until(lambda: reported() is not None, 10.0), [m.status for m in diags[-2:]]
    values = reported()
    assert values is not None
    assert values["backend"] == "torch" and values["backend.requested"] == "onnxruntime"
    assert values["backend.fallbacks"] == "1" and "model.onnx" in values["backend.last_error"]
    assert "backend onnxruntime failed to load" in proc.output()
