"""Ctrl-C ``demo.launch.py`` under real launch_ros N times; every stop must be clean.

    PYTHONPATH=$PWD .venv/bin/python scripts/ctrl_c_cycles.py 30 [--launch demo.launch.py] [name:=value ...]

Builds the package into a temporary colcon workspace, then each cycle: ``launch_file.py perception
demo.launch.py`` with install/setup.bash sourced (scripts/launch_file.py: a noninteractive LaunchService,
as ``ros2 launch``), waits until the graph is up -- the perception node's detections arrive here, so the
camera's publisher thread and the inference worker are both busy -- sends SIGINT to the launch process
only, and checks: exit 0, no 'Traceback' / 'RCLError' in the output, every node "finished cleanly".
Loopback DDS and a private ROS_DOMAIN_ID (test/ros/ros_testing.py). Exit 0 when every cycle was clean.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test" / "ros"))
import ros_testing
from colcon_ws import build_workspace, clean_stop_problems, missing_tools, start_launch, stop_group
from ros_testing import Client

from perception.ros.env import localhost_env

NODES = {"demo.launch.py": 2, "perception.launch.py": 1, "multi_camera.launch.py": 2}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cycles", type=int)
    p.add_argument("--launch", default="demo.launch.py", choices=sorted(NODES))
    p.add_argument("--topic", default="/camera/detections", help="the graph is up once this has messages")
    p.add_argument("--up-timeout", type=float, default=180.0, help="seconds for the graph to come up (first "
                   "use exports the network to ONNX)")
    p.add_argument("--stop-timeout", type=float, default=30.0, help="seconds for the launch to exit after SIGINT")
    p.add_argument("--keep", action="store_true", help="keep the workspace and the logs")
    p.add_argument("arguments", nargs="*", help="launch arguments name:=value")
    a = p.parse_args(argv)
    why = missing_tools()
    if why:
        print(f"ctrl_c_cycles: {why}", file=sys.stderr)
        return 2
    from vision_msgs.msg import Detection2DArray

    tmp = Path(tempfile.mkdtemp(prefix="ctrl_c_cycles_"))
    t0 = time.monotonic()
    install = build_workspace(tmp / "ws")
    print(f"[ctrl_c] colcon workspace built in {time.monotonic() - t0:.1f} s: {install}; ROS_DOMAIN_ID "
          f"{ros_testing.DOMAIN_ID}, DDS on loopback", flush=True)
    client = Client("ctrl_c_cycles")
    detections = client.collect(Detection2DArray, a.topic)
    env = localhost_env(ros_testing.DOMAIN_ID)
    clean, results = 0, []
    for i in range(a.cycles):
        log = tmp / f"cycle_{i:03d}.log"
        detections.clear()
        t_start = time.monotonic()
        proc = start_launch(install, ["perception", a.launch, *a.arguments], env, log)
        up = client.spin_until(lambda p=proc: len(detections) >= 3 or p.poll() is not None, a.up_timeout)
        up = up and proc.poll() is None
        t_up = time.monotonic() - t_start
        if up:
            os.kill(proc.pid, signal.SIGINT)
            deadline = time.monotonic() + a.stop_timeout
            while proc.poll() is None and time.monotonic() < deadline:
                client.spin_for(0.05)
        t_stop = time.monotonic() - t_start - t_up
        timed_out = proc.poll() is None
        stop_group(proc)  # only does something when the launch did not exit (or never came up)
        output = log.read_text(encoding="utf-8", errors="replace")
        problems = [] if up else [f"graph not up in {a.up_timeout:.0f} s ({len(detections)} detections)"]
        if timed_out:
            problems.append(f"still running {a.stop_timeout:.0f} s after SIGINT (killed)")
        problems += clean_stop_problems(proc.returncode, output, NODES[a.launch])
        clean += not problems
        results.append(problems)
        print(f"[ctrl_c] cycle {i + 1}/{a.cycles}: up in {t_up:.1f} s, stopped in {t_stop:.1f} s, exit "
              f"{proc.returncode}: {'clean' if not problems else '; '.join(problems)}", flush=True)
        if problems:
            print(output[-4000:], flush=True)
    client.close()
    tracebacks = sum(any("Traceback" in x for x in r) for r in results)
    print(f"[ctrl_c] clean stops: {clean}/{a.cycles}; with a traceback: {tracebacks}; logs in {tmp}", flush=True)
    if not a.keep and clean == a.cycles:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if clean == a.cycles else 1


if __name__ == "__main__":
    sys.exit(main())
