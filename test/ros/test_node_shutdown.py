"""perception_node as a process: clean stops under SIGINT / SIGTERM with frames flowing, and the exit
code / diagnostics of a node whose configure was rejected."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.qos import qos_profile_sensor_data
from ros_testing import TINY_MODEL, Client, image_msg, needs_model, rgb_image
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from perception.ros.tools.node_process import NodeProcess


def _stop(client: Client, proc: NodeProcess, signals: tuple[int, ...], publish: Callable[[], None]) -> int:
    """Send ``signals`` (by pid, 50 ms apart) while frames keep flowing; the exit code."""
    for sig in signals:
        proc.proc.send_signal(sig)
        for _ in range(5):
            publish()
            client.spin_for(0.01)
    deadline = time.monotonic() + 20.0
    while proc.alive() and time.monotonic() < deadline:
        publish()
        client.spin_for(0.01)
    assert not proc.alive(), "node did not stop:\n" + proc.output()[-2000:]
    return int(proc.proc.returncode)


def test_repeated_start_stop_with_frames_flowing_is_clean(
    client: Client, node_factory: Callable[..., NodeProcess]
) -> None:
    """Defect 9: the worker published after rclpy shut the context down (RCLError, 75-90 % of launches),
    and SIGTERM killed the node outright. Five cycles, SIGINT and SIGTERM, frames at ~100 Hz."""
    needs_model()
    pub = client.node.create_publisher(Image, "/sd/image_raw", qos_profile_sensor_data)
    dets = client.collect(Detection2DArray, "/sd/detections")
    msg = image_msg(rgb_image(48, 64, seed=1), 1.0)
    plan: list[tuple[int, ...]] = [(signal.SIGINT,), (signal.SIGTERM,), (signal.SIGINT, signal.SIGTERM),
                                   (signal.SIGTERM,), (signal.SIGINT,)]
    for i, signals in enumerate(plan):
        dets.clear()
        proc = node_factory("perception.ros.nodes.perception_node", f"perception_shutdown_{i}",
                            {**TINY_MODEL, "autostart": True, "cameras": ["sd"]})

        def served_or_dead(p: NodeProcess = proc) -> bool:
            pub.publish(msg)
            return len(dets) >= 3 or not p.alive()

        served = client.spin_until(served_or_dead, 60.0)
        assert served and proc.alive(), proc.output()[-3000:]
        code = _stop(client, proc, signals, lambda: pub.publish(msg))
        out = proc.output()
        assert code == 0, f"cycle {i} ({signals}): exit code {code}\n{out[-3000:]}"
        assert "Traceback" not in out and "RCLError" not in out, f"cycle {i}:\n{out[-3000:]}"


def test_rejected_configure_is_an_error_on_diagnostics_and_a_non_zero_exit(
    client: Client, node_factory: Callable[..., NodeProcess]
) -> None:
    """Defect 7: after "configure rejected" the node published nothing on /diagnostics and exited 0."""
    name = "perception_rejected_test"
    diags = client.collect(DiagnosticArray, "/diagnostics")
    proc = node_factory("perception.ros.nodes.perception_node", name,
                        {**TINY_MODEL, "autostart": True, "detection.score_threshold": 2.0,
                         "diagnostics_period": 0.3})

    def error() -> DiagnosticStatus | None:
        for m in diags:
            for st in m.status:
                if st.name == f"{name}: node" and st.level == DiagnosticStatus.ERROR:
                    return st
        return None

    assert client.spin_until(lambda: error() is not None or not proc.alive(), 30.0), proc.output()[-2000:]
    st = error()
    assert st is not None, proc.output()[-2000:]
    assert "configure rejected" in st.message and "detection.score_threshold" in st.message
    code = _stop(client, proc, (signal.SIGINT,), lambda: None)
    assert code == 1, proc.output()[-2000:]
    assert "Traceback" not in proc.output()
