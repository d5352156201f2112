"""A colcon workspace of this package, and commands run with its ``install/setup.bash`` sourced.

Shared by test_colcon.py, test_ctrl_c.py and scripts/ctrl_c_cycles.py. colcon runs as
``python -c 'colcon_core.command.main()'`` with this interpreter (colcon-common-extensions,
requirements-dev.txt), so the install space's entry points run this interpreter too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_SCRIPT = ROOT / "scripts" / "launch_file.py"
# not part of the package: the venv, real data, VCS and build trees, caches
IGNORE = shutil.ignore_patterns(".venv", "data", ".git", "build", "install", "log", "__pycache__", ".mypy_cache",
                                ".ruff_cache", ".pytest_cache", "demo_out", "out", "runs", "cache", "*.egg-info")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # the parent package is missing
        return False


def missing_tools() -> str:
    """Why colcon workspaces with launch cannot run here ('' when they can)."""
    # launch.launch_service, not launch: this tree's launch/ folder is a namespace package from the current directory
    modules = {"colcon_core": "colcon_core", "launch": "launch.launch_service", "launch_ros": "launch_ros.actions"}
    missing = [name for name, module in modules.items() if not _importable(module)]
    if missing:
        return (f"{', '.join(missing)} not importable: colcon-common-extensions is in requirements-dev.txt; "
                "launch / launch_ros come with a ROS 2 install (no registry ships them)")
    return ""


def build_workspace(ws: Path) -> Path:
    """Copy the package to ``ws/src/perception``, ``colcon build`` it; returns ``ws/install``."""
    shutil.copytree(ROOT, ws / "src" / "perception", ignore=IGNORE)
    argv = [sys.executable, "-c", "import sys; from colcon_core.command import main; sys.exit(main())",
            "build", "--packages-select", "perception"]
    r = subprocess.run(argv, cwd=ws, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"colcon build failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return ws / "install"


def sourced(install: Path, argv: list[str]) -> list[str]:
    """``argv`` run by bash after ``source install/setup.bash`` (as a ROS user runs it)."""
    return ["bash", "-c", f'source "{install}/setup.bash" && exec "$@"', "bash", *argv]


def workspace_env(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` without this source tree on PYTHONPATH: the package must come from the install space."""
    env = dict(base)
    keep = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != ROOT]
    env["PYTHONPATH"] = os.pathsep.join(keep)
    return env


def start_launch(install: Path, args: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``launch_file.py`` ``args`` with the workspace sourced, output to ``log``, in its own session, run from the
    workspace (not from this source tree, which would be importable from the current directory)."""
    with log.open("wb") as out:
        return subprocess.Popen(sourced(install, [sys.executable, str(LAUNCH_SCRIPT), *args]), env=workspace_env(env),
                                cwd=install.parent, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (direct children)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Last resort after a failed check: SIGKILL the launch's session (it and the nodes it started)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)


def clean_stop_problems(returncode: int | None, output: str, nodes: int) -> list[str]:
    """What makes a stop unclean: the launch's exit code, a traceback, a node that did not exit with 0."""
    problems = []
    if returncode != 0:
        problems.append(f"launch exited {returncode}")
    for bad in ("Traceback", "RCLError", "process has died"):
        if bad in output:
            problems.append(f"{bad!r} in the output")
    finished = output.count("process has finished cleanly")
    if finished != nodes:
        problems.append(f"{finished} of {nodes} node(s) finished cleanly")
    return problems
