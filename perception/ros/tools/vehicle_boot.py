"""Service start to first published detections, for a unit written by ``perception vehicle install``.

systemd is not PID 1 on the development machines, so this runs the unit's ``ExecStart=`` command line
directly, with the unit's ``Environment=`` and a ``NOTIFY_SOCKET`` this process binds (as systemd would),
publishes synthetic frames to every camera of the installed node and times, from the process start:
READY=1, the first ``<cam>/detections`` message, and after SIGTERM the clean exit (STOPPING=1).

    python -m perception.ros.tools.vehicle_boot --unit DIR/lib/systemd/system/perception.service

``--domain-id`` replaces the unit's ROS_DOMAIN_ID (default: a private one, so a shared machine's other
graphs are not disturbed); the unit's DDS profile is used as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from perception.vehicle.units import unit_command, unit_environment


@dataclass
class BootTiming:
    ready_s: float = float("nan")  # process start -> READY=1
    first_detections_s: float = float("nan")  # process start -> first <cam>/detections received
    stop_s: float = float("nan")  # SIGTERM -> exit
    exit_code: int | None = None
    stopping: bool = False  # STOPPING=1 seen
    watchdog_pings: int = 0
    status: list[str] = field(default_factory=list)
    log: str = ""


def _inputs(argv: list[str]) -> tuple[list[str], str, str]:
    """(cameras, image topic inside each namespace, transport) from the unit's --params-file."""
    params = Path(argv[argv.index("--params-file") + 1])
    tree = yaml.safe_load(params.read_text(encoding="utf-8"))
    node = next(iter(tree.values()))["ros__parameters"]
    inp = node.get("input", {})
    return ([str(c) for c in node.get("cameras", ["camera"])], str(inp.get("topic", "image_raw")),
            str(inp.get("transport", "raw")))


def _watchdog_usec(unit_text: str) -> int:
    for line in unit_text.splitlines():
        if line.startswith("WatchdogSec="):
            return int(float(line.removeprefix("WatchdogSec=").rstrip("s")) * 1e6)
    return 0


def measure_boot(unit: Path, domain_id: int | None = None, timeout: float = 60.0, frame_hz: float = 10.0,
                 size: tuple[int, int] = (384, 640), extra_env: dict[str, str] | None = None) -> BootTiming:
    """Run the unit's command as systemd would and time it (see the module doc). Call after ``rclpy.init``
    with the same DDS environment (profile and domain) as the unit's."""
    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import CompressedImage, Image
    from vision_msgs.msg import Detection2DArray

    from perception.ros import convert
    from perception.ros.qos import qos_profile

    text = unit.read_text(encoding="utf-8")
    argv = unit_command(text)
    cams, topic, transport = _inputs(argv)
    compressed = transport == "compressed"
    env = {**os.environ, **unit_environment(text), **(extra_env or {})}
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    timing = BootTiming()
    with tempfile.TemporaryDirectory(prefix="perception-boot-") as tmp:
        address = str(Path(tmp) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(address)
        sock.settimeout(0.05)
        env["NOTIFY_SOCKET"] = address
        env["WATCHDOG_USEC"] = str(_watchdog_usec(text))
        log = Path(tmp) / "node.log"
        node = Node(f"vehicle_boot_{os.getpid()}")
        pubs = {c: node.create_publisher(CompressedImage if compressed else Image,
                                         f"/{c}/{topic}" + ("/compressed" if compressed else ""),
                                         qos_profile("best_effort", 1)) for c in cams}
        first: list[float] = []
        for c in cams:
            node.create_subscription(Detection2DArray, f"/{c}/detections",
                                     lambda m: first.append(time.monotonic()), qos_profile("reliable", 2))
        rgb = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)
        stop_listening = threading.Event()

        def listen() -> None:
            while not stop_listening.is_set():
                try:
                    data = sock.recv(65536).decode("utf-8", "replace")
                except TimeoutError:
                    continue
                now = time.monotonic()
                fields = dict(ln.split("=", 1) for ln in data.splitlines() if "=" in ln)
                if fields.get("READY") == "1" and timing.ready_s != timing.ready_s:  # nan: first READY
                    timing.ready_s = now - t0
                timing.watchdog_pings += fields.get("WATCHDOG") == "1"
                timing.stopping |= fields.get("STOPPING") == "1"
                if "STATUS" in fields:
                    timing.status.append(fields["STATUS"])

        executor = rclpy.executors.SingleThreadedExecutor()
        executor.add_node(node)
        with log.open("wb") as out:
            t0 = time.monotonic()
            proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        try:
            next_frame = t0
            while time.monotonic() - t0 < timeout and proc.poll() is None and not first:
                if time.monotonic() >= next_frame:
                    header = convert.make_header(time.time(), "camera")
                    msg = (convert.rgb_to_compressed(rgb, header, "jpeg") if compressed
                           else convert.array_to_image(rgb, header, "rgb8"))
                    for p in pubs.values():
                        p.publish(msg)
                    next_frame += 1.0 / frame_hz
                executor.spin_once(timeout_sec=0.005)
            if first:
                timing.first_detections_s = first[0] - t0
                t1 = time.monotonic()
                while time.monotonic() - t1 < 1.5:  # let a few pings and a STATUS line arrive
                    executor.spin_once(timeout_sec=0.05)
        finally:
            if proc.poll() is None:
                ts = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                try:
                    timing.exit_code = proc.wait(timeout=30.0)
                    timing.stop_s = time.monotonic() - ts
                except subprocess.TimeoutExpired:
                    proc.kill()
                    timing.exit_code = proc.wait()
            else:
                timing.exit_code = proc.returncode
            time.sleep(0.2)
            stop_listening.set()
            listener.join()
            sock.close()
            executor.remove_node(node)
            node.destroy_node()
            timing.log = log.read_text(encoding="utf-8", errors="replace")[-4000:]
    return timing


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--unit", type=Path, required=True)
    p.add_argument("--domain-id", type=int, default=None, help="default: a private one (1..100 from the pid)")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--runs", type=int, default=1)
    args = p.parse_args(argv)
    from perception.ros.env import private_domain_id

    text = args.unit.read_text(encoding="utf-8")
    domain = private_domain_id() if args.domain_id is None else args.domain_id
    os.environ.update(unit_environment(text))  # this process joins the unit's DDS (profile) ...
    os.environ["ROS_DOMAIN_ID"] = str(domain)  # ... on the measured domain
    import rclpy

    rclpy.init()
    runs: list[dict[str, Any]] = []
    try:
        for _ in range(args.runs):
            t = measure_boot(args.unit, domain, args.timeout)
            row = {k: v for k, v in asdict(t).items() if k not in ("log", "status")}
            row["last_status"] = t.status[-1] if t.status else ""
            runs.append(row)
            print(json.dumps(row), flush=True)
            if t.first_detections_s != t.first_detections_s:
                print(t.log, file=sys.stderr)
                return 1
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
