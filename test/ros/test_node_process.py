"""NodeProcess, the one way tools and tests start and stop node processes: real child processes, no ROS graph
(the perception_node users of it are covered by every node test, which start their nodes through it)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from perception.ros.tools.node_process import NodeProcess, NodeStartError, stop_processes

# a stand-in "node": prints, then waits; on SIGINT exits 0 (like a node's clean shutdown) unless told to ignore it
CHILD = """
import os, signal, sys, time
if sys.argv[1] == "ignore-int":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
print("dds", os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE", ""), os.environ.get("ROS_DOMAIN_ID", ""), flush=True)
if sys.argv[1] == "refuse":
    print("[perception] configure rejected: parameter 'x' is wrong", flush=True)
if sys.argv[1] == "exit3":
    sys.exit(3)
try:
    time.sleep(60)
except KeyboardInterrupt:
    print("stopped cleanly", flush=True)
"""


def _start(tmp: Path, mode: str) -> NodeProcess:
    return NodeProcess.start(f"child_{mode}", [sys.executable, "-c", CHILD, mode], log=tmp / f"{mode}.log")


def _until_printed(p: NodeProcess, text: str) -> None:
    p.wait_ready(lambda: text in p.output(), 30.0)


def test_default_environment_keeps_dds_on_loopback_with_a_private_domain(tmp_path: Path) -> None:
    p = _start(tmp_path, "wait")
    try:
        _until_printed(p, "dds ")
        line = next(ln for ln in p.output().splitlines() if ln.startswith("dds "))
        _, profile, domain = line.split(" ")
        assert profile.endswith("fastdds_localhost.xml") and Path(profile).is_file()
        assert domain.isdigit() and int(domain) != 0
    finally:
        assert p.stop() == 0
    assert "stopped cleanly" in p.output()


def test_sigint_that_is_ignored_escalates_to_sigterm(tmp_path: Path) -> None:
    p = _start(tmp_path, "ignore-int")
    _until_printed(p, "dds ")
    code = p.stop(timeout=1.0)  # SIGINT ignored -> SIGTERM after 1 s
    assert code == -signal.SIGTERM and not p.alive()


def test_wait_ready_fails_at_once_when_the_process_exits_or_refuses(tmp_path: Path) -> None:
    exiting = _start(tmp_path, "exit3")
    with pytest.raises(NodeStartError, match="exited with code 3") as e:
        exiting.wait_ready(lambda: False, 60.0)
    assert "dds " in str(e.value)  # the log's tail is in the error
    refusing = _start(tmp_path, "refuse")
    try:
        with pytest.raises(NodeStartError, match="configure rejected"):
            refusing.wait_ready(lambda: False, 60.0)
    finally:
        refusing.stop()


def test_stop_processes_stops_each_and_reports_exit_codes(tmp_path: Path) -> None:
    procs = [_start(tmp_path, "wait"), _start(tmp_path, "exit3")]
    _until_printed(procs[0], "dds ")
    procs[1].proc.wait(30.0)  # ended by itself: its own exit code is reported
    assert stop_processes(procs, timeout=5.0) == {"child_wait": 0, "child_exit3": 3}
