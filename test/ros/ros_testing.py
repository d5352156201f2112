"""Helpers for ROS 2 tests: the localhost environment, a client node with ``spin_until``, message
builders and node processes.

Importing this module puts the localhost Fast DDS profile and a private ROS_DOMAIN_ID into this
process's environment, before any ``rclpy.init``; every node process started from here gets the
same. Nothing leaves loopback.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from perception.ros.env import apply_localhost_env, localhost_env
from perception.ros.tools.node_process import NodeProcess, NodeStartError

DOMAIN_ID = apply_localhost_env()

try:
    import rclpy
    import vision_msgs.msg  # noqa: F401 - the compatibility build (or a ROS install) must be there
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from perception.ros import convert

    HAVE_ROS = True
except ImportError:  # test modules skip themselves with pytest.importorskip
    HAVE_ROS = False

ROOT = Path(__file__).resolve().parents[2]
SKIP_REASON = "ROS 2 wheels / vision_msgs not installed (scripts/setup_env.sh installs them)"

# tiny untrained network: the plumbing is what these tests check, not accuracy
TINY_MODEL: dict[str, Any] = {
    "model.name": "stan_tiny_temporal", "model.allow_untrained": True, "model.input_height": 64,
    "model.input_width": 128, "model.threads": 1,
    "detection.score_threshold": 0.0, "detection.max_detections": 20,
}


def needs_model() -> None:
    """Skip unless the pipeline and the model registry are importable (they land from other branches)."""
    pytest.importorskip("torch")
    pytest.importorskip("perception.core.decode")
    pytest.importorskip("perception.models.registry")


def init_rclpy() -> None:
    if not HAVE_ROS:
        pytest.skip(SKIP_REASON)
    if not rclpy.ok():
        rclpy.init()


class Client:
    """A test-side node with its own executor, and helpers to wait for things."""

    def __init__(self, name: str) -> None:
        init_rclpy()
        self.node = Node(name)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)

    def spin_until(self, predicate: Callable[[], Any], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return bool(predicate())

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def publish_until(self, pub: Any, msg: Any, done: Callable[[], Any], timeout: float = 15.0,
                      every: float = 0.5) -> bool:
        """Publish ``msg`` on ``pub`` (again every ``every`` s) until ``done()``, ``timeout`` s at most.

        A best-effort subscriber drops a sample that arrives before it has matched the writer, and a
        writer can match its reader before the reader matches it (discovery is not symmetric), so a
        frame published once right after ``get_subscription_count() > 0`` can be lost for good."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pub.publish(msg)
            if self.spin_until(done, min(every, max(0.0, deadline - time.monotonic()))):
                return True
        return bool(done())

    def collect(self, msg_type: Any, topic: str, qos: Any = 10) -> list[Any]:
        box: list[Any] = []
        self.node.create_subscription(msg_type, topic, box.append, qos)
        return box

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 15.0,
             resend_every: float | None = None) -> Any:
        """Call a service; ``resend_every`` (idempotent requests only, e.g. a query): send the request again every
        so many seconds until one is answered -- a request sent as soon as the service shows up can be lost when
        the server has not matched this client's reader yet (discovery is not symmetric)."""
        client = self.node.create_client(srv_type, name)
        try:
            assert self.spin_until(client.service_is_ready, timeout), f"service {name} not available"
            futures = [client.call_async(request)]
            deadline = time.monotonic() + timeout
            while not any(f.done() for f in futures) and time.monotonic() < deadline:
                step = min(deadline - time.monotonic(), resend_every or timeout)
                if not self.spin_until(lambda: any(f.done() for f in futures), step) and resend_every:
                    futures.append(client.call_async(request))
            done = [f for f in futures if f.done()]
            assert done, f"service {name} did not answer"
            return done[0].result()
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()


# -- message builders ----------------------------------------------------------------------------
def rgb_image(h: int = 90, w: int = 160, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, size=(h, w, 3), dtype=np.uint8)


def image_msg(rgb: np.ndarray, stamp: float, frame_id: str = "cam", encoding: str = "rgb8") -> Any:
    header = convert.make_header(stamp, frame_id)
    if encoding == "bgr8":
        return convert.array_to_image(rgb[..., ::-1], header, "bgr8")
    return convert.array_to_image(rgb, header, encoding)


def compressed_msg(rgb: np.ndarray, stamp: float, frame_id: str = "cam", fmt: str = "jpeg") -> Any:
    return convert.rgb_to_compressed(rgb, convert.make_header(stamp, frame_id), fmt)


def diag_values(msg: Any, name_part: str) -> dict[str, str] | None:
    for st in msg.status:
        if name_part in st.name:
            return {kv.key: kv.value for kv in st.values}
    return None


# -- node processes ------------------------------------------------------------------------------
def start_node(module: str, name: str, params: dict[str, Any], tmp: Path, remaps: tuple[str, ...] = (),
               extra_env: dict[str, str] | None = None) -> NodeProcess:
    """``python -m <module>`` as node ``name`` with ``params``, DDS on loopback, this session's domain
    (``extra_env``: more variables, e.g. NOTIFY_SOCKET; the DDS ones cannot be overridden)."""
    env = localhost_env(DOMAIN_ID, {**os.environ, **(extra_env or {})})
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH", "")] if p)
    return NodeProcess.node(module, name, params, tmp / f"{name}.log", env, remaps)


def start_active_perception_node(client: Client, name: str, params: dict[str, Any], tmp: Path,
                                 camera: str) -> NodeProcess:
    """perception_node ``name`` started with ``params`` once its /diagnostics for ``camera`` say active (60 s at
    most); a node that died or never got there is stopped and its output raised."""
    from diagnostic_msgs.msg import DiagnosticArray

    proc = start_node("perception.ros.nodes.perception_node", name, params, tmp)
    diags = client.collect(DiagnosticArray, "/diagnostics")
    try:
        proc.wait_ready(lambda: any((v := diag_values(m, f"{name}: {camera}")) and v["state"] == "active"
                                    for m in diags), 60.0, client.spin_until)
    except NodeStartError as e:
        proc.stop()  # never leave the node behind on a failed start
        raise AssertionError(f"node did not become active: {e}") from e
    return proc
