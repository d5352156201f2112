"""sd_notify over a real unix datagram socket (path and abstract names), $WATCHDOG_USEC, the watchdog verdict."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from perception.vehicle.sdnotify import Notifier, socket_address, watchdog_usec
from perception.vehicle.watchdog import ServiceWatchdog, status_line, worker_verdict


@pytest.fixture(params=["path", "abstract"])
def bound(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        name = str(tmp_path / "notify")
        s.bind(name)
    else:
        name = f"@perception-sdnotify-test-{os.getpid()}"
        s.bind("\0" + name[1:])
    s.settimeout(2.0)
    yield name, s
    s.close()


def test_messages_reach_the_socket(bound: tuple[str, socket.socket]) -> None:
    name, s = bound
    n = Notifier(name)
    assert n.enabled
    assert n.ready("loaded\nmodel")
    assert s.recv(4096) == b"READY=1\nSTATUS=loaded model"  # one datagram; a newline in a value never splits it
    assert n.watchdog() and s.recv(4096) == b"WATCHDOG=1"
    assert n.status("front 30.0/29.9 Hz") and s.recv(4096) == b"STATUS=front 30.0/29.9 Hz"
    assert n.stopping() and s.recv(4096) == b"STOPPING=1"
    n.close()


def test_a_receiver_that_stops_reading_never_blocks_the_sender(bound: tuple[str, socket.socket]) -> None:
    import time

    name, s = bound
    n = Notifier(name)
    t0 = time.monotonic()
    sent = [n.watchdog() for _ in range(200)]  # the receive queue holds a few: the rest are dropped, not waited on
    assert time.monotonic() - t0 < 1.0 and sent[0] and not sent[-1]
    assert s.recv(4096) == b"WATCHDOG=1"
    n.close()


def test_without_systemd_everything_is_a_no_op(tmp_path: Path) -> None:
    assert not Notifier("").enabled and not Notifier("").ready()
    gone = Notifier(str(tmp_path / "nobody-listens"))
    assert gone.enabled and not gone.watchdog()  # logged once, never raised
    assert socket_address("relative/path") is None and socket_address("@x") == "\0x"


def test_watchdog_usec_follows_sd_watchdog_enabled() -> None:
    assert watchdog_usec({}) == 0
    assert watchdog_usec({"WATCHDOG_USEC": "4000000"}) == 4_000_000
    assert watchdog_usec({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}, pid=2) == 0  # for another process
    assert watchdog_usec({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "2"}, pid=2) == 4_000_000
    assert watchdog_usec({"WATCHDOG_USEC": "junk"}) == 0


def test_the_verdict_needs_every_thread_beating() -> None:
    beats = {"perception-convert": 9.9, "perception-inference": 9.0, "perception-publish": 9.95}
    assert worker_verdict(beats, 10.0, 1.5, alive=True) == (True, "")
    ok, why = worker_verdict(beats, 10.0, 0.5, alive=True)
    assert not ok and "perception-inference silent for 1.0 s" in why
    assert worker_verdict(beats, 10.0, 1.5, alive=False)[0] is False
    assert "gave up" in worker_verdict(beats, 10.0, 1.5, alive=True, failure="died 4 times")[1]
    assert worker_verdict({}, 10.0, 1.5, alive=True)[0] is False


def test_service_watchdog_pings_only_on_a_good_verdict(bound: tuple[str, socket.socket]) -> None:
    name, s = bound
    wd = ServiceWatchdog(Notifier(name), period_s=4.0)
    assert wd.ping_interval_s == 1.0 and wd.max_silence_s == 2.0
    assert wd.tick({"t": 99.0}, alive=True, now=100.0) == "" and s.recv(4096) == b"WATCHDOG=1"
    assert "silent" in wd.tick({"t": 97.0}, alive=True, now=100.0)
    s.settimeout(0.2)
    with pytest.raises(TimeoutError):
        s.recv(4096)
    assert status_line("active", {"front": (30.0, 29.5)}, "onnxruntime") == \
        "active onnxruntime | in/out: front 30.0/29.5 Hz"
