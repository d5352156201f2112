"""``perception run <launch file> [arg:=value ...]``: a launch file's nodes without ``ros2 launch``.

The launch file is read statically (:mod:`perception.ros.tools.launch_spec`); each node runs as its own
process (``python -m <module of the console script>``) with the same parameter files, parameter
values and remappings ``ros2 launch`` would give it, in an environment that keeps DDS on loopback
with a private ``ROS_DOMAIN_ID`` (:mod:`perception.ros.env`), each a
:class:`~perception.ros.tools.node_process.NodeProcess`: stopped by its pid, SIGINT, then SIGTERM, then SIGKILL;
SIGTERM to ``perception run`` stops them like Ctrl-C, and on Linux every node gets SIGTERM when its parent dies
however it dies (prctl death signal), so none is orphaned.
No rclpy import here.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import yaml

from perception.ros.env import localhost_env, share_dir
from perception.ros.errors import RosError
from perception.ros.tools.launch_spec import (
    LaunchSpec,
    NodeSpec,
    find_launch_file,
    launch_arguments,
    parse_launch_file,
    resolve,
)
from perception.ros.tools.node_process import NodeProcess, stop_processes


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt so ``finally`` blocks run."""

    exit_code = 128 + int(signal.SIGTERM)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (once: a repeat during the clean-up is
    ignored; SIGKILL still ends a stuck process). Only in the main thread; elsewhere it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def executable_module(package: str, executable: str) -> str:
    """The module whose ``main`` a console script runs (``perception_node`` ->
    ``perception.ros.nodes.perception_node``); an installed entry point that no longer imports (an install
    older than the source tree) falls through to the nodes package."""
    if package != "perception":
        raise RosError(f"cannot run {package}/{executable} without ros2 launch: only this package's nodes")
    for ep in importlib.metadata.entry_points(group="console_scripts"):
        if ep.name == executable and ep.value.startswith("perception."):
            module = ep.value.split(":", 1)[0]
            if importlib.util.find_spec(module) is not None:
                return module
    candidate = f"perception.ros.nodes.{executable}"
    if importlib.util.find_spec(candidate) is not None:
        return candidate
    raise RosError(f"no console script {executable!r} in package perception (see setup.py entry points)")


def node_command(node: NodeSpec, args: Mapping[str, str], config_dir: Path, tmpdir: Path) -> list[str]:
    """The command line ``ros2 launch`` would amount to for ``node``."""
    argv = [sys.executable, "-m", executable_module(node.package, node.executable)]
    argv += [str(a) for a in resolve(node.arguments, args)]
    argv.append("--ros-args")
    if node.name:
        argv += ["-r", f"__node:={node.name}"]
    if node.namespace:
        argv += ["-r", f"__ns:={node.namespace}"]
    for name in node.param_files:
        path = config_dir / name
        if not path.exists():
            raise RosError(f"parameter file {path} (named by the launch file) does not exist")
        argv += ["--params-file", str(path)]
    values = resolve(node.param_values, args)
    if values:
        f = tmpdir / f"{node.name or node.executable}_launch_params.yaml"
        f.write_text(yaml.safe_dump({"/**": {"ros__parameters": values}}), encoding="utf-8")
        argv += ["--params-file", str(f)]
    for src, dst in resolve(node.remappings, args):
        argv += ["-r", f"{src}:={dst}"]
    return argv


def start_nodes(
    spec: LaunchSpec,
    overrides: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    tmpdir: Path | None = None,
    stdout: IO[Any] | int | None = None,
    extra_params: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[NodeProcess]:
    """Start every node of ``spec`` (in order). ``extra_params[node name]`` adds parameter values."""
    args = launch_arguments(spec, overrides or {})
    run_env = dict(env) if env is not None else localhost_env()
    tmp = tmpdir or Path(tempfile.mkdtemp(prefix="perception_run_"))
    config_dir = share_dir() / "config"
    procs: list[NodeProcess] = []
    try:
        for node in spec.nodes:
            argv = node_command(node, args, config_dir, tmp)
            extra = (extra_params or {}).get(node.name or node.executable)
            if extra:
                f = tmp / f"{node.name or node.executable}_extra_params.yaml"
                f.write_text(yaml.safe_dump({"/**": {"ros__parameters": dict(extra)}}), encoding="utf-8")
                argv += ["--params-file", str(f)]
            procs.append(NodeProcess.start(node.name or node.executable, argv, run_env, stdout=stdout))
    except BaseException:
        stop_processes(procs)
        raise
    return procs


# -- CLI -------------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("launch", help="launch file name in launch/ (perception, multi_camera, demo) or a path")
    p.add_argument("launch_args", nargs="*", metavar="ARG:=VALUE", help="launch arguments, as for ros2 launch")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)")
    p.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: private, from the pid)")
    p.add_argument("--print", action="store_true", help="print the commands and exit")


def parse_launch_args(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition(":=")
        if not sep or not key:
            raise RosError(f"launch argument {item!r} must look like name:=value")
        out[key] = value
    return out


def main(args: argparse.Namespace) -> int:
    try:
        spec = parse_launch_file(find_launch_file(args.launch, share_dir() / "launch"))
        overrides = parse_launch_args(args.launch_args)
        if args.print:
            with tempfile.TemporaryDirectory(prefix="perception_run_") as tmp:
                for node in spec.nodes:
                    argv = node_command(node, launch_arguments(spec, overrides), share_dir() / "config", Path(tmp))
                    print(" ".join(argv))
            return 0
        env = localhost_env(args.domain_id)
        print(f"[run] {spec.path.name}: {len(spec.nodes)} node(s), ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}, "
              f"DDS on loopback ({env['FASTDDS_DEFAULT_PROFILES_FILE']})", flush=True)
        procs = start_nodes(spec, overrides, env)
    except RosError as e:
        print(f"perception run: error: {e}", file=sys.stderr)
        return 2
    for p in procs:
        print(f"[run] started {p.name} (pid {p.proc.pid})", flush=True)
    t0 = time.monotonic()
    rc = 0
    with sigterm_as_interrupt():  # SIGTERM stops the nodes like Ctrl-C does
        try:
            while not args.duration or time.monotonic() - t0 < args.duration:
                dead = [p for p in procs if p.proc.poll() is not None]
                if dead:
                    print(f"[run] {dead[0].name} exited with code {dead[0].proc.returncode}; stopping the others",
                          flush=True)
                    rc = 1
                    break
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        codes = stop_processes(procs)
    print(f"[run] stopped: {codes}", flush=True)
    return rc
