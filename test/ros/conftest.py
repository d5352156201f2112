"""Fixtures for ROS 2 tests (yolo_ros conftest style): a session rclpy context on a private domain
with the localhost DDS profile, client nodes and node processes. Helpers live in ros_testing.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ros_testing import Client, init_rclpy, start_node

from perception.ros.tools.node_process import NodeProcess


@pytest.fixture(scope="session")
def rclpy_context() -> Iterator[None]:
    init_rclpy()
    yield
    import rclpy

    rclpy.try_shutdown()


@pytest.fixture
def client(rclpy_context: None, request: pytest.FixtureRequest) -> Iterator[Client]:
    c = Client("test_client_" + "".join(ch if ch.isalnum() else "_" for ch in request.node.name)[:40])
    yield c
    c.close()


@pytest.fixture(scope="module")
def module_client(rclpy_context: None, request: pytest.FixtureRequest) -> Iterator[Client]:
    c = Client("test_client_" + Path(str(request.fspath)).stem)
    yield c
    c.close()


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    """Start node processes (``python -m module``); each is stopped by pid at the end of the test."""
    procs: list[NodeProcess] = []

    def make(module: str, name: str, params: dict[str, object], remaps: tuple[str, ...] = ()) -> NodeProcess:
        p = start_node(module, name, params, tmp_path, remaps)
        procs.append(p)
        return p

    yield make
    for p in procs:
        p.stop()
