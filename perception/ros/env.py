"""Environment for every ROS 2 process this project starts: DDS on loopback, a private domain.

Fast DDS reads its profile when a participant is created, so these variables must be in place
before ``rclpy.init`` (set them in the parent before spawning, or in ``os.environ`` first thing).
No rclpy import here: the launcher, tests and benchmarks use this before any ROS code runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

PROFILE_NAME = "fastdds_localhost.xml"


def package_root() -> Path:
    """The source tree (editable install) holding ``config/``, ``launch/`` and ``interfaces/``."""
    return Path(__file__).resolve().parents[2]


def share_dir() -> Path:
    """``config/`` and ``launch/`` live here: the source tree, or ``share/perception`` once installed."""
    root = package_root()
    if (root / "config" / PROFILE_NAME).exists():
        return root
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("perception"))
    except (ImportError, LookupError):
        return root


def profile_path() -> Path:
    """The localhost Fast DDS profile (config/fastdds_localhost.xml)."""
    path = share_dir() / "config" / PROFILE_NAME
    if not path.exists():
        raise FileNotFoundError(f"Fast DDS localhost profile not found at {path}: reinstall the package")
    return path


def private_domain_id(seed: int | None = None) -> int:
    """A ROS_DOMAIN_ID in 1..100 derived from ``seed`` (default: this process id)."""
    return 1 + (os.getpid() if seed is None else seed) % 100


def localhost_env(domain_id: int | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) with the localhost DDS profile and a private domain id.

    - ``FASTDDS_DEFAULT_PROFILES_FILE``: SHM (32 MB segment) + UDPv4 on ``lo`` only, unicast
      discovery to 127.0.0.1: nothing leaves the machine, large images are not dropped;
    - ``ROS_AUTOMATIC_DISCOVERY_RANGE=SYSTEM_DEFAULT``: the LOCALHOST range would make rmw add
      its own 512 KB SHM transport on top of the profile;
    - ``RMW_IMPLEMENTATION=rmw_fastrtps_cpp`` (the profile is Fast DDS's);
    - ``ROS_DOMAIN_ID``: ``domain_id`` or one derived from this process id.
    """
    env = dict(os.environ if base is None else base)
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile_path())
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SYSTEM_DEFAULT"
    env["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
    env.pop("ROS_STATIC_PEERS", None)
    env["ROS_DOMAIN_ID"] = str(private_domain_id() if domain_id is None else domain_id)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def apply_localhost_env(domain_id: int | None = None) -> int:
    """Put :func:`localhost_env` into ``os.environ`` (call before ``rclpy.init``); returns the domain id."""
    env = localhost_env(domain_id)
    os.environ.update(env)
    return int(env["ROS_DOMAIN_ID"])
