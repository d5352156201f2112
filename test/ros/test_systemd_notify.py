"""The perception node talks to systemd honestly: a REAL node process against a NOTIFY_SOCKET this test binds.

READY=1 only once the model is loaded and a warm-up inference answered (no WATCHDOG=1 before it);
WATCHDOG=1 every WatchdogSec/4 while the inference worker answers; a worker stalled inside an inference
(the real torch backend frozen from outside: test/ros/stalling_node.py) stops the pings within
WatchdogSec/2 and they come back when it answers again; STATUS= carries the camera's rates; SIGTERM gives
STOPPING=1 and a clean exit. Under systemd, a node that cannot start exits 1 at once (Restart=on-failure).
"""

from __future__ import annotations

import itertools
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")

from ros_testing import TINY_MODEL, Client, image_msg, needs_model, rgb_image, start_node
from sensor_msgs.msg import Image

from perception.ros.tools.node_process import NodeProcess, poll_until

needs_model()

WATCHDOG_S = 2.0  # WATCHDOG_USEC given to the node: pings every 0.5 s, a worker silent 1 s is stalled


class NotifySocket:
    """A bound unix datagram socket, as systemd's; every message kept with its arrival (wall) time."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._recv, daemon=True)
        self._thread.start()

    def _recv(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.time(), fields))

    def times(self, key: str, value: str | None = None) -> list[float]:
        return [t for t, f in list(self.messages) if key in f and (value is None or f[key] == value)]

    def values(self, key: str) -> list[str]:
        return [f[key] for _, f in list(self.messages) if key in f]

    def wait(self, predicate: Callable[[], object], timeout: float) -> bool:
        return poll_until(predicate, timeout)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def _start(tmp_path: Path, name: str, params: dict[str, object], extra: dict[str, str]) -> NodeProcess:
    return start_node("stalling_node", name, {**TINY_MODEL, "cameras": ["cam"], "autostart": True,
                                              "diagnostics_period": 0.5, **params}, tmp_path,
                      extra_env={"PYTHONPATH": str(Path(__file__).parent), **extra})


def test_ready_watchdog_status_stall_and_stop(client: Client, tmp_path: Path) -> None:
    notify = NotifySocket(str(tmp_path / "notify.sock"))
    stall = tmp_path / "stall"
    node = _start(tmp_path, "sd_node", {"runtime.pipelining": "enabled"},
                  {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6)),
                   "STALL_FILE": str(stall)})
    pub = client.node.create_publisher(Image, "cam/image_raw", 10)
    frame = rgb_image(64, 128)
    sent = [0]

    def send(seconds: float) -> None:  # 10 Hz frames while spinning the client
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sent[0] += 1
            pub.publish(image_msg(frame, 1000.0 + 0.1 * sent[0]))
            client.spin_for(0.1)

    try:
        assert notify.wait(lambda: notify.times("READY", "1") or not node.alive(), 90.0), node.output()
        assert node.alive(), node.output()
        ready = notify.times("READY", "1")[0]
        assert "warm-up inference answered" in node.output()  # READY came after the warm-up inference
        assert not [t for t in notify.times("WATCHDOG") if t < ready]  # no ping before READY

        send(3.0)  # a healthy worker: pings every WATCHDOG_S / 4, STATUS with the camera's rates
        pings = [t for t in notify.times("WATCHDOG", "1") if t > ready]
        assert len(pings) >= 3, notify.messages
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert max(gaps) < WATCHDOG_S / 2, gaps
        rates = [s for s in notify.values("STATUS") if "cam " in s and "Hz" in s]
        assert rates and any(not s.endswith(" 0.0/0.0 Hz") for s in rates), notify.values("STATUS")

        stall.touch()  # the next inference freezes inside the real backend
        assert notify.wait(lambda: (tmp_path / "stall.started").exists() or (send(0.2) and False), 10.0)
        stalled_at = float((tmp_path / "stall.started").read_text())
        time.sleep(WATCHDOG_S * 1.5)
        late = [t for t in notify.times("WATCHDOG", "1") if t > stalled_at + WATCHDOG_S / 2 + 0.1]
        assert not late, f"pinged {[round(t - stalled_at, 2) for t in late]} s into a stall"
        assert any("watchdog withheld" in s and "silent" in s for s in notify.values("STATUS")), notify.values(
            "STATUS")
        assert node.alive()  # not our business to kill it: systemd does, WatchdogSec after the last ping

        stall.unlink()  # the worker answers again: the pings come back
        resumed = time.time()
        assert notify.wait(lambda: [t for t in notify.times("WATCHDOG", "1") if t > resumed], 5.0)

        node.proc.send_signal(signal.SIGTERM)
        rc = node.proc.wait(timeout=15.0)
        assert rc == 0, node.output()
        assert notify.wait(lambda: notify.times("STOPPING", "1"), 2.0)
        assert notify.times("STOPPING", "1")[0] >= notify.times("WATCHDOG", "1")[-1] - 0.05
    finally:
        stall.unlink(missing_ok=True)
        node.stop()
        notify.close()


def test_a_node_that_cannot_start_exits_1_at_once_under_systemd(tmp_path: Path) -> None:
    notify = NotifySocket("\0perception-test-" + tmp_path.name)  # abstract namespace: NOTIFY_SOCKET=@name
    node = _start(tmp_path, "sd_bad", {"model.checkpoint": str(tmp_path / "no_such_checkpoint")},
                  {"NOTIFY_SOCKET": "@perception-test-" + tmp_path.name, "WATCHDOG_USEC": "2000000"})
    try:
        rc = node.proc.wait(timeout=60.0)
        assert rc == 1, node.output()
        assert not notify.times("READY") and not notify.times("WATCHDOG")
        assert any("failed to start" in s and "model.checkpoint" in s for s in notify.values("STATUS")), \
            notify.messages
    finally:
        node.stop()
        notify.close()
