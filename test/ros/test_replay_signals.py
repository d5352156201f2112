"""A ``perception replay`` process killed mid-recording: SIGTERM and SIGINT leave a closed, readable bag;
SIGKILL leaves one that ``perception bag repair`` makes readable with the messages written before the
kill; whatever the signal, the perception_node the player started does not outlive it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")

from ros_testing import DOMAIN_ID, ROOT, needs_model

from perception.bag import BagError
from perception.bag.io import open_bag, read_messages
from perception.bag.mcap_storage import scan_mcap
from perception.bag.repair import repair_bag
from perception.ros.env import localhost_env


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from perception.sim.config import SimConfig
    from perception.sim.drive import render_drive_bag

    out = tmp_path_factory.mktemp("signals") / "drive"
    render_drive_bag(out, 11, 6, SimConfig(width=160, height=96))
    return out


def _events(mcap: Path) -> int:
    """/replay/events messages already on disk in a recording in progress."""
    got: list[int] = []
    scan_mcap(mcap, lambda ch, _s, log_ns, _p, _d: got.append(log_ns) if ch.topic == "/replay/events" else None)
    return len(got)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _orphans(children: list[int], wait_s: float = 20.0) -> list[int]:
    """The ``children`` still alive ``wait_s`` after their parent died; they are killed (the test's own
    grandchildren, by pid) so a failing test leaves nothing behind."""
    gone = time.monotonic() + wait_s
    while time.monotonic() < gone and any(_alive(c) for c in children):
        time.sleep(0.1)
    orphans = [c for c in children if _alive(c)]
    for c in orphans:
        os.kill(c, signal.SIGKILL)
    return orphans


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])  # SIGINT: the same path as SIGTERM
def test_killed_replay_leaves_a_readable_recording_and_no_orphan(
        tmp_path: Path, small_bag: Path, model_checkpoint: Callable[[str], Path], sig: signal.Signals) -> None:
    needs_model()
    out = tmp_path / "rec"
    env = localhost_env(DOMAIN_ID)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p)
    argv = [sys.executable, "-m", "perception.cli", "replay", str(small_bag), "--out", str(out), "--loop", "100",
            "--checkpoint", str(model_checkpoint("stan_tiny_temporal")), "--input-size", "64x128", "--threads", "1",
            "--outputs", "detections"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    children: list[int] = []
    try:
        deadline = time.monotonic() + 120
        mcap = out / "rec.mcap"
        while time.monotonic() < deadline and proc.poll() is None and not (mcap.exists() and _events(mcap) >= 60):
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[0]
        children = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        assert children, "replay started no perception_node"
        os.kill(proc.pid, sig)
        kill_ns = time.time_ns()
        log, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    orphans = _orphans(children)
    assert not orphans, f"perception_node {orphans} outlived the replay killed by {sig.name}"
    if sig == signal.SIGKILL:
        assert proc.returncode == -9
        with pytest.raises(BagError, match="perception bag repair"):
            open_bag(out)
        report = repair_bag(out)
        print(report.summary())
    else:
        assert proc.returncode == 128 + sig, log
        assert "recording" in log and "closed and readable" in log, log
    info = open_bag(out)
    logged = [log_ns for _, _, log_ns, _ in read_messages(out, check_order=False)]
    assert len(logged) == sum(info.counts.values()) and info.counts["/replay/events"] >= 60
    assert info.counts["/camera/detections"] >= 50
    # what reached the disk runs up to the kill: a SIGKILL loses at most the last flush period, i.e. at the
    # recording's own message rate at most rate x (kill - last message on disk) messages
    gap_s = (kill_ns - max(logged)) * 1e-9
    rate = (len(logged) - 1) / max(1e-9, (max(logged) - min(logged)) * 1e-9)
    kept = len(logged) / (len(logged) + rate * gap_s)
    print(f"{sig.name}: {len(logged)} messages readable, the last {gap_s * 1e3:.0f} ms before the kill; at "
          f"{rate:.0f} messages/s at most {rate * gap_s:.1f} lost: >= {100 * kept:.1f} % kept")
    assert gap_s < 1.0 and kept >= 0.95


LAUNCH = """from launch import LaunchDescription
from launch_ros.actions import Node


def generate_launch_description():
    return LaunchDescription([
        Node(package="perception", executable="synthetic_camera", name="cam",
             parameters=[{"fps": 1.0, "width": 64, "height": 48}]),
    ])
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_run_stops_its_nodes(tmp_path: Path, sig: signal.Signals) -> None:
    """``perception run``: SIGTERM stops the nodes like Ctrl-C; after SIGKILL they die with it (death signal)."""
    launch = tmp_path / "one.launch.py"
    launch.write_text(LAUNCH, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p))
    proc = subprocess.Popen([sys.executable, "-m", "perception.cli", "run", str(launch), "--domain-id", str(DOMAIN_ID)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    children: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not children:
            time.sleep(0.2)
            children = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        assert children, "perception run started no node"
        time.sleep(1.0)
        os.kill(proc.pid, sig)
        log, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    orphans = _orphans(children)
    assert not orphans, f"node {orphans} outlived perception run killed by {sig.name}"
    if sig == signal.SIGTERM:
        assert proc.returncode == 0 and "[run] stopped" in log, log
