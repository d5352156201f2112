"""``ros2 launch`` without the ros2 CLI (no registry ships it): run a launch file under launch / launch_ros.

    python scripts/launch_file.py perception demo.launch.py fps:=5.0       # a package's share/<pkg>/launch
    python scripts/launch_file.py path/to/file.launch.py name:=value       # a file

Like ``ros2 launch`` it includes the file with the ``name:=value`` arguments and runs a LaunchService
until every process exits or a SIGINT / SIGTERM arrives -- noninteractive, so a signal sent to this
process alone is forwarded to the nodes (interactive, launch assumes the terminal already signalled the
whole process group, and escalates to SIGTERM 5 s later). The exit code is the LaunchService's.

launch_ros runs a ROS node in this process, so the localhost DDS profile and a private domain are put in
place first (perception.ros.env; ROS_DOMAIN_ID is kept when set): the nodes inherit them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def find_launch_file(package_or_file: str, name: str | None) -> Path:
    """``file`` as given, or ``name`` in the package's share directory (``launch/`` first, as ros2 launch)."""
    if name is None:
        path = Path(package_or_file)
        if not path.is_file():
            raise SystemExit(f"launch_file: no launch file {path}")
        return path
    from ament_index_python.packages import get_package_share_directory

    share = Path(get_package_share_directory(package_or_file))
    for path in (share / "launch" / name, share / name):
        if path.is_file():
            return path
    raise SystemExit(f"launch_file: {name} is not in {share}/launch (is the workspace's install/setup.bash sourced?)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("target", nargs="+", help="PACKAGE FILE.launch.py or PATH.launch.py, then name:=value arguments")
    a = p.parse_args(argv)
    positional = [t for t in a.target if ":=" not in t]
    arguments = [tuple(t.split(":=", 1)) for t in a.target if ":=" in t]
    if not 1 <= len(positional) <= 2:
        p.error("give PACKAGE FILE or PATH, then name:=value arguments")
    path = find_launch_file(positional[0], positional[1] if len(positional) == 2 else None)

    from perception.ros.env import apply_localhost_env

    domain = os.environ.get("ROS_DOMAIN_ID")
    apply_localhost_env(int(domain) if domain else None)

    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    from launch import LaunchDescription, LaunchService

    service = LaunchService(argv=[f"{k}:={v}" for k, v in arguments], noninteractive=True)
    service.include_launch_description(LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(str(path)), launch_arguments=arguments),
    ]))
    return service.run()


if __name__ == "__main__":
    sys.exit(main())
