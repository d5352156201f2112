"""The ``perception vehicle`` verb: ``install`` and ``validate`` (:mod:`perception.vehicle.cli`, no ROS needed)
and ``check``, the pre-flight on the live graph (needs rclpy, so the verb lives in the ROS layer).

    perception vehicle check --config vehicle.yaml [--prefix DIR] [--duration 3] [--domain-id N]

Joins the rig's DDS (dds.profile and domain, as the service does; ``--domain-id`` overrides the domain),
listens ``--duration`` seconds and prints one table; the exit code is 1 when any row fails (each failing
row names the item, the check and the fix), 2 for an invalid rig file.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from perception.vehicle import cli as vehicle_cli


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = vehicle_cli.add_arguments(p)
    chk = sub.add_parser("check", help="pre-flight: cameras, CameraInfo, /tf_static, stamps, engines, disk, DDS")
    chk.add_argument("--config", required=True, help="the rig YAML")
    chk.add_argument("--prefix", type=Path, default=None, help="the install prefix (engine check); none: skipped")
    chk.add_argument("--duration", type=float, default=3.0, help="seconds of listening after the first message")
    chk.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: the rig's dds.domain_id)")
    chk.add_argument("--rate-tolerance", type=float, default=0.2, help="accepted relative rate error")
    chk.add_argument("--max-age", type=float, default=0.5, help="max |receive time - stamp| in seconds")
    chk.add_argument("--max-skew", type=float, default=0.1, help="max spread of the sensors' stamp ages, seconds")


def main(args: argparse.Namespace) -> int:
    if args.action != "check":
        return vehicle_cli.main(args)
    from perception.vehicle.check import Limits, table
    from perception.vehicle.config import load_rig
    from perception.vehicle.errors import RigConfigError
    from perception.vehicle.install import localhost_profile_source
    from perception.vehicle.units import InstallLayout, dds_environment

    try:
        rig = load_rig(args.config)
    except RigConfigError as e:
        print(f"perception vehicle check: {e}", file=sys.stderr)
        return 2
    profile = InstallLayout(args.prefix).etc / "fastdds_localhost.xml" if args.prefix else localhost_profile_source()
    os.environ.update(dds_environment(rig, profile))
    if args.domain_id is not None:
        os.environ["ROS_DOMAIN_ID"] = str(args.domain_id)
    import rclpy
    from rclpy.node import Node

    from perception.ros.tools.vehicle_check import run_check

    rclpy.init()
    node = Node(f"perception_vehicle_check_{os.getpid()}")
    try:
        rows = run_check(node, rig, args.prefix, args.duration,
                         Limits(args.rate_tolerance, args.max_age, args.max_skew))
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(table(rows))
    return 0 if all(r.ok for r in rows) else 1
