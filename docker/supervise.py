"""Runs the unit ``perception vehicle install`` wrote, inside a container, the way systemd runs it on a vehicle.

A container has no systemd as PID 1, so this process stands in for the part of it the node relies on:

- starts the unit's ``ExecStart=`` command line with its ``Environment=`` (the rig's DDS choice, domain, cache);
- binds a ``NOTIFY_SOCKET`` and sets ``WATCHDOG_USEC`` from ``WatchdogSec=``, so the node's own sd_notify messages
  (READY=1 after the model is loaded and a warm-up inference answered, WATCHDOG=1 only while its inference
  worker answers, STATUS=, STOPPING=1) arrive here;
- enforces ``TimeoutStartSec`` (no READY=1 in time) and ``WatchdogSec`` (no WATCHDOG=1 for that long after READY):
  SIGTERM, then SIGKILL after ``TimeoutStopSec``, and exits 1 naming why, so ``docker run --restart on-failure``
  restarts the container as ``Restart=on-failure`` would restart the service;
- forwards SIGTERM/SIGINT (``docker stop``) to the node and exits with its exit code;
- writes ``state.json`` into the state directory on every message: what ``health`` (the image's HEALTHCHECK)
  reads. Healthy = READY=1 seen and the node's last WATCHDOG=1 younger than WatchdogSec: the node's own verdict on
  its inference worker, not a timer that answers regardless.

    python docker/supervise.py run --unit PREFIX/lib/systemd/system/perception.service --state-dir /tmp/perception
    python docker/supervise.py health --state-dir /tmp/perception      # exit 0 healthy, 1 not (the reason printed)

Standard library plus ``perception.vehicle.units`` (the unit parser the project's own tools use).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from perception.vehicle.units import unit_command, unit_environment

STATE_FILE = "state.json"


def unit_seconds(unit_text: str, key: str, default: float) -> float:
    """``Key=10s`` (as ``perception.vehicle.units`` writes it) in seconds; ``default`` when absent."""
    for line in unit_text.splitlines():
        if line.startswith(f"{key}="):
            value = line.split("=", 1)[1].strip()
            return float(value[:-1] if value.endswith("s") else value)
    return default


def write_state(state_dir: Path, state: dict[str, Any]) -> None:
    tmp = state_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state), encoding="utf-8")
    os.replace(tmp, state_dir / STATE_FILE)


def health(state_dir: Path, now: float | None = None) -> tuple[bool, str]:
    """(healthy, why) from the supervisor's state file."""
    now = time.monotonic() if now is None else now  # the state's times: CLOCK_MONOTONIC (immune to clock steps)
    try:
        state = json.loads((state_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False, f"no supervisor state in {state_dir}: the node was not started by `docker/supervise.py run`"
    if state.get("exited"):
        return False, f"node exited ({state.get('exit_code')}): {state.get('reason') or 'no reason given'}"
    if not state.get("ready_at"):
        return False, "starting: no READY=1 yet (model load + warm-up inference)"
    watchdog = float(state.get("watchdog_sec") or 0)
    last = float(state.get("last_ping") or state["ready_at"])
    if watchdog > 0 and now - last > watchdog:
        return False, f"no WATCHDOG=1 for {now - last:.1f} s (WatchdogSec={watchdog:g}): the inference worker is stuck"
    return True, f"healthy: {state.get('status') or 'ready'}"


def _messages(sock: socket.socket, wait: float = 0.2) -> list[dict[str, str]]:
    """The datagrams waiting on the socket (after up to ``wait`` s for the first), each as its KEY=VALUE fields."""
    out: list[dict[str, str]] = []
    if not select.select([sock], [], [], wait)[0]:
        return out
    while True:
        try:
            data = sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return out
        fields = {}
        for line in data.decode("utf-8", "replace").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                fields[key] = value
        out.append(fields)


def run(unit: Path, state_dir: Path, log=print) -> int:
    """Run the unit until the node exits; returns the exit code (1 when this process had to stop the node)."""
    text = unit.read_text(encoding="utf-8")
    argv, unit_env = unit_command(text), unit_environment(text)
    watchdog = unit_seconds(text, "WatchdogSec", 0.0)
    start_timeout = unit_seconds(text, "TimeoutStartSec", 90.0)
    stop_timeout = unit_seconds(text, "TimeoutStopSec", 15.0)
    state_dir.mkdir(parents=True, exist_ok=True)
    sock_path = state_dir / "notify.sock"
    sock_path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    env = {**os.environ, **unit_env, "NOTIFY_SOCKET": str(sock_path)}
    env.pop("WATCHDOG_PID", None)
    if watchdog > 0:
        env["WATCHDOG_USEC"] = str(int(watchdog * 1e6))
    dds = {k: v for k, v in unit_env.items() if k.startswith(("FASTDDS", "ROS_", "RMW_"))}
    log(f"[supervise] {unit.name}: WatchdogSec={watchdog:g} TimeoutStartSec={start_timeout:g} "
        f"TimeoutStopSec={stop_timeout:g}; DDS {dds or 'Fast DDS defaults (dds.profile: default)'}")
    state: dict[str, Any] = {"unit": str(unit), "watchdog_sec": watchdog, "started_at": time.monotonic(),
                             "started_wall": time.time(), "ready_at": None, "last_ping": None, "status": "",
                             "stopping": False, "exited": False}
    write_state(state_dir, state)
    requested: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        requested.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    child = subprocess.Popen(argv, env=env)
    reason, kill_at = "", None
    try:
        while child.poll() is None:
            for msg in _messages(sock):
                now = time.monotonic()
                if msg.get("READY") == "1" and not state["ready_at"]:
                    state["ready_at"] = now
                    log(f"[supervise] READY=1 after {now - state['started_at']:.2f} s")
                if msg.get("WATCHDOG") == "1":
                    state["last_ping"] = now
                if "STATUS" in msg:
                    state["status"] = msg["STATUS"]
                if msg.get("STOPPING") == "1":
                    state["stopping"] = True
                write_state(state_dir, state)
            now = time.monotonic()
            if kill_at is None:
                if requested:
                    reason = f"signal {signal.Signals(requested[0]).name} forwarded"
                elif not state["ready_at"] and now - state["started_at"] > start_timeout:
                    reason = f"no READY=1 within TimeoutStartSec={start_timeout:g}"
                elif (state["ready_at"] and watchdog > 0
                      and now - (state["last_ping"] or state["ready_at"]) > watchdog):
                    reason = f"watchdog: no WATCHDOG=1 for {watchdog:g} s (WatchdogSec)"
                if reason:
                    log(f"[supervise] stopping the node: {reason}")
                    child.send_signal(signal.SIGTERM)
                    kill_at = now + stop_timeout
            elif now > kill_at and child.poll() is None:
                log(f"[supervise] no exit within TimeoutStopSec={stop_timeout:g}: SIGKILL")
                child.kill()
                kill_at = float("inf")
        code = child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for s, handler in previous.items():
            signal.signal(s, handler)
        sock.close()
        sock_path.unlink(missing_ok=True)
    if code < 0:
        code = 128 - code
    if reason and not requested and code == 0:
        code = 1  # stopped for a timeout: a failure, whatever the node's own exit said
    state.update(exited=True, exit_code=code, reason=reason or "the node exited by itself")
    write_state(state_dir, state)
    log(f"[supervise] node exited with {code} ({state['reason']})")
    return code


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the unit's ExecStart under a NOTIFY_SOCKET, enforcing its timeouts")
    r.add_argument("--unit", type=Path, required=True)
    r.add_argument("--state-dir", type=Path, required=True)
    h = sub.add_parser("health", help="exit 0 when READY=1 was seen and the last WATCHDOG=1 is fresh")
    h.add_argument("--state-dir", type=Path, required=True)
    args = p.parse_args(argv)
    if args.cmd == "run":
        return run(args.unit, args.state_dir, log=lambda s: print(s, file=sys.stderr, flush=True))
    ok, why = health(args.state_dir)
    print(why)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
