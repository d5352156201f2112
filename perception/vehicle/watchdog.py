"""When a perception service may tell systemd it is alive, and what it says in ``STATUS=`` (pure, no rclpy).

The watchdog must mean something: ``WATCHDOG=1`` is sent only while every inference-worker thread has
come round its loop recently (each stamps a heartbeat per iteration: at least every 0.1 s when idle, after
each batch when busy). A thread stuck in an inference, a publish or a conversion for ``WatchdogSec / 2``
stops the pings, and systemd restarts the service ``WatchdogSec`` after the last one. No timer pings on its
own: :meth:`ServiceWatchdog.tick` decides from the heartbeats every time.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from perception.vehicle.sdnotify import Notifier, watchdog_usec


def worker_verdict(beats: Mapping[str, float], now: float, max_silence_s: float, alive: bool,
                   failure: str = "") -> tuple[bool, str]:
    """(ping?, why not): every thread alive, not given up, each heartbeat younger than ``max_silence_s``."""
    if failure:
        return False, f"inference worker gave up: {failure}"
    if not alive:
        return False, "inference worker is not running"
    if not beats:
        return False, "inference worker has not started"
    stale = {name: now - t for name, t in beats.items() if now - t >= max_silence_s}
    if stale:
        worst = max(stale, key=lambda n: stale[n])
        return False, f"{worst} silent for {stale[worst]:.1f} s (stalled?)"
    return True, ""


def status_line(state: str, rates: Mapping[str, tuple[float, float]], backend: str = "") -> str:
    """``active onnxruntime | front 30.0/29.8 Hz, rear 30.0/0.0 Hz`` (in/out per camera)."""
    cams = ", ".join(f"{cam} {i:.1f}/{o:.1f} Hz" for cam, (i, o) in rates.items())
    head = f"{state} {backend}".strip()
    return f"{head} | in/out: {cams}" if cams else head


@dataclass
class ServiceWatchdog:
    """The node's side of systemd: READY once, a WATCHDOG verdict per tick, STATUS, STOPPING."""

    notifier: Notifier
    period_s: float  # WatchdogSec (0: the watchdog is off)

    @classmethod
    def from_env(cls) -> ServiceWatchdog:
        return cls(Notifier(), watchdog_usec() / 1e6)

    @property
    def enabled(self) -> bool:
        return self.notifier.enabled

    @property
    def ping_interval_s(self) -> float:
        """How often to judge (and maybe ping): a quarter of WatchdogSec (0: never)."""
        return self.period_s / 4 if self.period_s > 0 else 0.0

    @property
    def max_silence_s(self) -> float:
        """A worker thread silent this long is stalled: half of WatchdogSec."""
        return self.period_s / 2

    def tick(self, beats: Mapping[str, float], alive: bool, failure: str = "", now: float | None = None) -> str:
        """Ping if the worker is answering; returns "" when it pinged, else why not."""
        ok, why = worker_verdict(beats, time.monotonic() if now is None else now, self.max_silence_s, alive,
                                 failure)
        if ok:
            self.notifier.watchdog()
        return why
