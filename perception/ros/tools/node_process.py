"""One way to start, wait for and stop a node process (:class:`NodeProcess`). No rclpy import here.

- **start** (:meth:`NodeProcess.start`, :meth:`NodeProcess.node`): ``python -m <module> --ros-args -r
  __node:=<name> --params-file <yaml>`` (or any command line) in an environment that keeps DDS on loopback with a
  private ``ROS_DOMAIN_ID`` (:func:`perception.ros.env.localhost_env`) unless the caller passes one; output
  (stdout and stderr) into a log file; on Linux the child gets SIGTERM when this process dies however it dies
  (prctl death signal), so none is orphaned.
- **ready** (:meth:`NodeProcess.wait_ready`): spin the caller's graph until its predicate holds (e.g. the
  node's /diagnostics say ``state: active``); the process exiting, or logging that configure / activate was
  refused, ends the wait at once with :class:`NodeStartError` carrying the log's tail.
- **stop** (:meth:`NodeProcess.stop`, :func:`stop_processes`): by pid, SIGINT, then SIGTERM, then SIGKILL, each
  bounded by ``timeout``; returns the exit code (negative: the signal that ended it).

Users: ``perception run`` / ``demo --ros`` (:mod:`perception.ros.tools.run`), replay and ``bench throughput``
(:mod:`perception.ros.tools.replay`), ``bench ros``, the fuzz and soak benchmarks
(:class:`perception.ros.tools.graph.Graph`) and the ROS tests (``test/ros/ros_testing.py``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from perception.ros.env import localhost_env
from perception.ros.errors import RosError

FAILED_MARKERS = ("configure rejected", "activate failed")  # a perception_node log line that means: never ready
SpinUntil = Callable[[Callable[[], bool], float], bool]  # (predicate, timeout) -> it held


class NodeStartError(RosError):
    """The node process exited, or refused to configure / activate, before it was ready."""


def _die_with_parent_fn() -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child receive SIGTERM when this process dies (Linux prctl
    PR_SET_PDEATHSIG; even on SIGKILL of the parent). None where there is no prctl."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def spawn(argv: Sequence[str], env: Mapping[str, str] | None, stdout: IO[Any] | int | None = None,
          stderr: IO[Any] | int | None = None) -> subprocess.Popen[bytes]:
    """Start a process that dies with this one (see :func:`_die_with_parent_fn`)."""
    return subprocess.Popen(list(argv), env=None if env is None else dict(env), stdout=stdout, stderr=stderr,
                            preexec_fn=_die_with_parent_fn())


def poll_until(predicate: Callable[[], object], timeout: float) -> bool:
    """Until ``predicate()`` holds, checked every 50 ms (no executor to spin); whether it did within ``timeout``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def params_file(path: Path, params: Mapping[str, Any]) -> Path:
    """``params`` as a ROS parameter file for every node (``/**``)."""
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": dict(params)}}), encoding="utf-8")
    return path


@dataclass
class NodeProcess:
    """A node running as its own process; ``log`` holds its output (None: it went to ``stdout`` given at start)."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes]
    log: Path | None = None

    @classmethod
    def start(cls, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None, log: Path | None = None,
              stdout: IO[Any] | int | None = None) -> NodeProcess:
        """Run ``argv`` in ``env`` (default: loopback DDS, a private domain) with its output into ``log`` (or
        ``stdout``)."""
        run_env = dict(env) if env is not None else localhost_env()
        if log is not None:
            with log.open("wb") as out:
                proc = spawn(argv, run_env, out, subprocess.STDOUT)
        else:
            proc = spawn(argv, run_env, stdout, subprocess.STDOUT if stdout is not None else None)
        return cls(name, list(argv), proc, log)

    @classmethod
    def node(cls, module: str, name: str, params: Mapping[str, Any], log: Path, env: Mapping[str, str] | None = None,
             remaps: Sequence[str] = ()) -> NodeProcess:
        """``python -m <module>`` as node ``name`` with ``params`` (written next to ``log``)."""
        pfile = params_file(log.with_suffix(".params.yaml"), params)
        argv = [sys.executable, "-m", module, "--ros-args", "-r", f"__node:={name}", "--params-file", str(pfile)]
        for r in remaps:
            argv += ["-r", r]
        return cls.start(name, argv, env, log)

    @classmethod
    def perception_node(cls, name: str, params: Mapping[str, Any], log: Path,
                        env: Mapping[str, str] | None = None) -> NodeProcess:
        return cls.node("perception.ros.nodes.perception_node", name, params, log, env)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def why_not_ready(self) -> str:
        """Why this process will never be ready ("": it may still be): it exited, or logged a refusal."""
        if not self.alive():
            return f"exited with code {self.proc.returncode}"
        out = self.output()
        return next((f"logged {m!r}" for m in FAILED_MARKERS if m in out), "")

    def wait_ready(self, ready: Callable[[], bool], timeout: float = 120.0,
                   spin_until: SpinUntil = poll_until) -> None:
        """Until ``ready()`` holds (``spin_until`` runs the caller's executor meanwhile); raises
        :class:`NodeStartError` with the log's tail when the process fails first or ``timeout`` passes."""
        ok = spin_until(lambda: bool(ready()) or bool(self.why_not_ready()), timeout)
        why = self.why_not_ready()
        if ok and not why:
            return
        raise NodeStartError(f"node {self.name} (pid {self.pid}) " + (why or f"was not ready within {timeout:.0f} s")
                             + (f"; its log ({self.log}):\n{self.output()[-3000:]}" if self.log else ""))

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT, then SIGTERM, then SIGKILL (``timeout`` s each); its exit code."""
        return stop_processes([self], timeout)[self.name]


def stop_processes(procs: Sequence[NodeProcess], timeout: float = 10.0) -> dict[str, int]:
    """SIGINT each process (by pid), then SIGTERM, then SIGKILL; returns exit codes by name."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in procs if p.proc.poll() is None]
        if not alive:
            break
        for p in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.proc.pid, sig)
        deadline = time.monotonic() + timeout
        for p in alive:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.proc.wait(max(0.1, deadline - time.monotonic()))
    return {p.name: int(p.proc.returncode) if p.proc.returncode is not None else -9 for p in procs}
