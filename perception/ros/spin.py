"""Spin a node until Ctrl-C or an external shutdown, then release it (shared by every node's main)."""

from __future__ import annotations

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node


def spin_until_shutdown(node: Node) -> None:
    """Spin ``node`` on its own executor; destroy it and shut rclpy down however spinning ends."""
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
