"""A bench graph: perception_node processes plus this process's client node (``bench fuzz``, ``bench soak``).

The node processes are :class:`~perception.ros.tools.node_process.NodeProcess` (loopback DDS, a private domain
shared with this process, stopped SIGINT -> SIGTERM -> SIGKILL); the client publishes per camera, indexes the
detections it receives by stamp, and keeps the latest /diagnostics values and every level seen per camera.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from perception.ros.tools.node_process import NodeProcess, stop_processes


class Graph:
    """Node processes (another process each) plus this process's client node: publishers per camera,
    detections indexed by stamp, the latest /diagnostics values and every level seen per camera."""

    def __init__(self, nodes: dict[str, dict[str, Any]], tmp: Path, client_name: str) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor

        from perception.ros.env import apply_localhost_env, localhost_env

        self.domain = apply_localhost_env()
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"{client_name}_{os.getpid()}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.answers: dict[str, set[int]] = {}  # camera -> stamps (ns) with detections received
        self.diag: dict[str, dict[str, str]] = {}  # "<node>: <camera>" -> latest values
        self.levels: dict[str, Counter[int]] = {}  # same key -> diagnostics levels seen
        self.pubs: dict[tuple[str, str], Any] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.runs: dict[str, NodeProcess] = {}
        try:
            for name, params in nodes.items():
                self.runs[name] = NodeProcess.perception_node(name, params, tmp / f"{name}.log",
                                                              localhost_env(self.domain))
        except BaseException:
            self.close()
            raise

    def _on_diag(self, msg: Any) -> None:
        for st in msg.status:
            self.diag[st.name] = {kv.key: kv.value for kv in st.values}
            self.levels.setdefault(st.name, Counter())[int.from_bytes(st.level, "little") if isinstance(
                st.level, bytes) else int(st.level)] += 1

    def watch(self, camera: str) -> None:
        from vision_msgs.msg import Detection2DArray

        from perception.ros.qos import qos_profile

        box = self.answers.setdefault(camera, set())
        self.node.create_subscription(
            Detection2DArray, f"/{camera}/detections",
            lambda m: box.add(int(m.header.stamp.sec) * 1_000_000_000 + int(m.header.stamp.nanosec)),
            qos_profile("reliable", 50))

    def publisher(self, msg_type: Any, topic: str, qos: Any = None) -> Any:
        """A publisher for ``topic`` (made once; default QoS reliable, depth 100: nothing lost on the way)."""
        from perception.ros.qos import qos_profile

        key = (msg_type.__name__, topic)
        if key not in self.pubs:
            self.pubs[key] = self.node.create_publisher(msg_type, topic, qos or qos_profile("reliable", 100))
        return self.pubs[key]

    def spin_until(self, predicate: Any, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.001)
        return bool(predicate())

    def values(self, node: str, camera: str) -> dict[str, str]:
        return self.diag.get(f"{node}: {camera}", {})

    def alive(self, node: str) -> bool:
        return self.runs[node].alive()

    def wait_active(self, cameras: dict[str, list[str]], timeout: float = 120.0) -> None:
        """Until every node's /diagnostics say ``active`` for each of its ``cameras``; NodeStartError (with the
        node's log) when one exits or refuses first, or after ``timeout``."""
        end = time.monotonic() + timeout
        for n, cams in cameras.items():
            def active(n: str = n, cams: list[str] = cams) -> bool:
                return all(self.values(n, c).get("state") == "active" for c in cams)

            self.runs[n].wait_ready(active, max(0.0, end - time.monotonic()), self.spin_until)

    def wait_subscribed(self, timeout: float = 30.0) -> None:
        if not self.spin_until(lambda: all(p.get_subscription_count() > 0 for p in self.pubs.values()), timeout):
            raise RuntimeError("the perception nodes did not subscribe to every input topic")

    def close(self) -> None:
        import rclpy

        try:
            self.executor.remove_node(self.node)
            self.node.destroy_node()
            rclpy.try_shutdown(context=self.context)
        finally:
            stop_processes(list(self.runs.values()))
