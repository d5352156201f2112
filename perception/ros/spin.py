"""Spin a node until SIGINT / SIGTERM, then release it before rclpy shuts down (shared by every node's main)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions


def init_without_signal_handlers(args: list[str] | None = None) -> None:
    """``rclpy.init`` that leaves SIGINT / SIGTERM to :func:`spin_until_signal` (rclpy's own handler shuts
    the context down at once, while the node's threads may still be publishing)."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)


def spin_until_signal(node: Node, stop: threading.Event | None = None,
                      on_stop: Callable[[], None] | None = None, executor: Executor | None = None) -> None:
    """Spin ``node`` until SIGINT or SIGTERM (or ``stop`` is set), then destroy it -- which must stop its
    threads -- and only then shut rclpy down: nothing publishes on an invalid context.

    Call after :func:`init_without_signal_handlers`, in the main thread, as a node's main loop: a second
    signal during the shutdown (a launcher's SIGINT-then-SIGTERM) only sets ``stop`` again, and once
    rclpy is down SIGINT / SIGTERM are ignored -- Python's finalisation would otherwise restore their
    default action and a late SIGTERM would kill the process half-way through its clean exit.

    ``on_stop`` runs first thing once spinning ends (before the node is destroyed): e.g. telling systemd
    STOPPING=1. ``executor``: the one to spin (default: a SingleThreadedExecutor)."""
    stop = stop or threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    executor = executor or SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if on_stop is not None:
            on_stop()
        executor.remove_node(node)
        node.destroy_node()
        rclpy.try_shutdown()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
