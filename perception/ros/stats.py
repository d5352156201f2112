"""Per-camera counters, rates and latency percentiles for ``/diagnostics`` (thread-safe, no rclpy)."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _pct(values: deque[float], q: float) -> float:
    return float(np.percentile(np.fromiter(values, float), q)) if values else float("nan")


@dataclass
class CameraStats:
    received: int = 0
    processed: int = 0
    dropped_stale: int = 0  # replaced by a newer frame before inference took it
    dropped_bad: int = 0  # malformed input (encoding, size, data)
    dropped_paused: int = 0  # arrived while disabled (enable service) or inactive
    resets: Counter[str] = field(default_factory=Counter)
    last_error: str = ""
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=300))  # receive -> published
    age_ms: deque[float] = field(default_factory=lambda: deque(maxlen=300))  # header stamp -> published
    infer_ms: deque[float] = field(default_factory=lambda: deque(maxlen=300))
    size: tuple[int, int] = (0, 0)
    _window_received: int = 0
    _window_processed: int = 0


class NodeStats:
    """Counters the callbacks and the worker update; :meth:`snapshot` turns them into rates."""

    def __init__(self, cameras: tuple[str, ...]) -> None:
        self._lock = threading.Lock()
        self.cameras = {c: CameraStats() for c in cameras}
        self._window_start = time.monotonic()

    def received(self, cam: str) -> None:
        with self._lock:
            s = self.cameras[cam]
            s.received += 1
            s._window_received += 1

    def dropped(self, cam: str, kind: str, error: str = "") -> None:
        with self._lock:
            s = self.cameras[cam]
            setattr(s, f"dropped_{kind}", getattr(s, f"dropped_{kind}") + 1)
            if error:
                s.last_error = error

    def processed(self, cam: str, latency_ms: float, age_ms: float, infer_ms: float, reset: str,
                  size: tuple[int, int]) -> None:
        with self._lock:
            s = self.cameras[cam]
            s.processed += 1
            s._window_processed += 1
            s.latency_ms.append(latency_ms)
            s.age_ms.append(age_ms)
            s.infer_ms.append(infer_ms)
            s.size = size
            if reset:
                s.resets[reset] += 1

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per camera: totals, input/output rates since the last snapshot, latency p50/p95 (ms)."""
        now = time.monotonic()
        with self._lock:
            dt = max(now - self._window_start, 1e-6)
            self._window_start = now
            out: dict[str, dict[str, Any]] = {}
            for cam, s in self.cameras.items():
                out[cam] = {
                    "input_hz": s._window_received / dt,
                    "output_hz": s._window_processed / dt,
                    "received": s.received,
                    "processed": s.processed,
                    "dropped_stale": s.dropped_stale,
                    "dropped_bad_input": s.dropped_bad,
                    "dropped_paused": s.dropped_paused,
                    "latency_p50_ms": _pct(s.latency_ms, 50),
                    "latency_p95_ms": _pct(s.latency_ms, 95),
                    "age_p50_ms": _pct(s.age_ms, 50),
                    "infer_p50_ms": _pct(s.infer_ms, 50),
                    "resets": ", ".join(f"{k}={v}" for k, v in sorted(s.resets.items())) or "none",
                    "image_size": f"{s.size[1]}x{s.size[0]}",
                    "last_error": s.last_error or "none",
                }
                s._window_received = s._window_processed = 0
            return out
