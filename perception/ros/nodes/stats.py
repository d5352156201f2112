"""Per-camera counters, rates, latency percentiles and health levels for ``/diagnostics`` (thread-safe, no rclpy).

Health (:func:`assess`) follows what happens to the frames over a sliding window (:class:`HealthThresholds`,
defaults below), so the level says whether perception is actually being delivered:

- ERROR: frames arrive and none was answered for ``stall_s`` (2 s) -- every frame stale, malformed or
  failing, or inference stuck;
- WARN: the camera sent frames before but none in the last ``window_s`` (its stream stopped);
- (level unchanged) frames shed by a declared rule -- ``rate_cap``, ``priority``, ``batch_full``
  (:mod:`perception.core.shedding`) -- are counted apart from ``stale`` ones and said in ``shedding``;
- WARN: over the last ``window_s`` (5 s, judged once ``min_frames`` (10) frames arrived in it)
  more than ``stale_warn`` (50 %) of the frames were dropped stale (inference slower than the camera),
  more than ``bad_warn`` (10 %) were dropped as malformed input, or any frame failed in the pipeline /
  backend or gave non-finite outputs;
- OK otherwise.
Node-wide conditions (model not loaded, worker died, backend fallback, model file replaced) are the
node's to add on top.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

LEVELS = ("ok", "warn", "error")
DROP_KINDS = ("stale", "shed", "bad", "paused", "failed", "invalid")  # shed: by a declared rule, reason says which


def _pct(values: deque[float], q: float) -> float:
    return float(np.percentile(np.fromiter(values, float), q)) if values else float("nan")


def worse(a: str, b: str) -> str:
    """The more severe of two levels ("ok" < "warn" < "error")."""
    return a if LEVELS.index(a) >= LEVELS.index(b) else b


@dataclass(frozen=True)
class HealthThresholds:
    window_s: float = 5.0  # shares are judged over this sliding window
    min_frames: int = 10  # fewer frames received in the window: shares are not judged yet
    stale_warn: float = 0.5  # WARN above this share of frames dropped stale
    bad_warn: float = 0.1  # WARN above this share of frames dropped as malformed input
    stall_s: float = 2.0  # ERROR when frames arrived and nothing was answered for this long


@dataclass
class CameraStats:
    received: int = 0
    processed: int = 0
    dropped_stale: int = 0  # replaced by a newer frame before inference took it
    dropped_shed: int = 0  # shed by a declared rule (rate cap, priority, full batch): ``shed`` has the reasons
    shed: Counter[str] = field(default_factory=Counter)  # reason (stale, rate_cap, priority, batch_full) -> count
    dropped_bad: int = 0  # malformed input (encoding, size, data, decode)
    dropped_paused: int = 0  # arrived while disabled (enable service) or inactive
    dropped_failed: int = 0  # the pipeline / backend / publishing raised for this frame
    dropped_invalid: int = 0  # the backend returned NaN / inf for this frame
    dropped_bad_camera_info: int = 0  # CameraInfo messages refused (zero/oversized, non-finite K/D/R/P)
    drop_reasons: Counter[str] = field(default_factory=Counter)  # "<kind>:<exception type or reason>" -> count
    resets: Counter[str] = field(default_factory=Counter)
    last_error: str = ""
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=300))  # receive -> published
    age_ms: deque[float] = field(default_factory=lambda: deque(maxlen=300))  # header stamp -> published
    infer_ms: deque[float] = field(default_factory=lambda: deque(maxlen=300))
    stage_ms: dict[str, deque[float]] = field(default_factory=dict)  # convert / perceptor / publish per frame
    size: tuple[int, int] = (0, 0)
    events: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=20000))  # (monotonic, kind)
    awaiting_since: float | None = None  # first frame received after the last answer (None: nothing waits)
    last_received: float | None = None
    _window_received: int = 0
    _window_processed: int = 0


class NodeStats:
    """Counters the callbacks and the worker update; :meth:`snapshot` turns them into rates."""

    def __init__(self, cameras: tuple[str, ...], thresholds: HealthThresholds | None = None) -> None:
        self._lock = threading.Lock()
        self.thresholds = thresholds or HealthThresholds()
        self.cameras = {c: CameraStats() for c in cameras}
        self._window_start = time.monotonic()

    def _event(self, s: CameraStats, kind: str, now: float) -> None:
        s.events.append((now, kind))
        horizon = now - self.thresholds.window_s
        while s.events and s.events[0][0] < horizon:
            s.events.popleft()

    def received(self, cam: str) -> None:
        now = time.monotonic()
        with self._lock:
            s = self.cameras[cam]
            s.received += 1
            s._window_received += 1
            self._event(s, "received", now)
            s.last_received = now
            if s.awaiting_since is None:
                s.awaiting_since = now

    def dropped(self, cam: str, kind: str, error: str = "", reason: str = "") -> None:
        """Count a dropped frame: ``kind`` one of :data:`DROP_KINDS`, ``reason`` a short tag (exception type)."""
        if kind not in DROP_KINDS:
            raise ValueError(f"drop kind must be one of {DROP_KINDS}, not {kind!r}")
        now = time.monotonic()
        with self._lock:
            s = self.cameras[cam]
            setattr(s, f"dropped_{kind}", getattr(s, f"dropped_{kind}") + 1)
            if kind in ("stale", "shed"):
                s.shed[reason or kind] += 1
            else:
                s.drop_reasons[f"{kind}:{reason}" if reason else kind] += 1
            self._event(s, f"shed:{reason}" if kind == "shed" else kind, now)
            if kind == "paused":
                s.awaiting_since = None  # paused on purpose: no answer is owed
            if error:
                s.last_error = error

    def shed(self, cam: str, reason: str) -> None:
        """Count a frame shed under load: ``stale`` (replaced by a newer one), or a declared rule's reason."""
        if reason == "stale":
            self.dropped(cam, "stale")
        else:
            self.dropped(cam, "shed", reason=reason)

    def bad_camera_info(self, cam: str, error: str) -> None:
        """Count a refused CameraInfo (not a frame: the frame counters and levels are not touched)."""
        with self._lock:
            s = self.cameras[cam]
            s.dropped_bad_camera_info += 1
            s.last_error = error

    def processed(self, cam: str, latency_ms: float, age_ms: float, infer_ms: float, reset: str,
                  size: tuple[int, int], stages: dict[str, float] | None = None) -> None:
        """Count an answered frame; ``stages``: ms spent per stage of the frame path (``<stage>_p50_ms``)."""
        now = time.monotonic()
        with self._lock:
            s = self.cameras[cam]
            s.processed += 1
            s._window_processed += 1
            self._event(s, "processed", now)
            s.awaiting_since = None
            s.latency_ms.append(latency_ms)
            s.age_ms.append(age_ms)
            s.infer_ms.append(infer_ms)
            for name, ms in (stages or {}).items():
                s.stage_ms.setdefault(name, deque(maxlen=300)).append(ms)
            s.size = size
            if reset:
                s.resets[reset] += 1

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per camera: totals, input/output rates since the last snapshot, counts over the health window,
        latency p50/p95 (ms), and ``level`` / ``message`` from :func:`assess`."""
        now = time.monotonic()
        with self._lock:
            dt = max(now - self._window_start, 1e-6)
            self._window_start = now
            out: dict[str, dict[str, Any]] = {}
            for cam, s in self.cameras.items():
                self._event(s, "snapshot", now)  # prunes the window
                counts = Counter(kind for _, kind in s.events)
                out[cam] = {
                    "input_hz": s._window_received / dt,
                    "output_hz": s._window_processed / dt,
                    "received": s.received,
                    "processed": s.processed,
                    "dropped_stale": s.dropped_stale,
                    "shed": s.dropped_stale + s.dropped_shed,
                    "shed_reasons": ", ".join(f"{k}={v}" for k, v in sorted(s.shed.items())) or "none",
                    "dropped_bad_input": s.dropped_bad,
                    "dropped_paused": s.dropped_paused,
                    "dropped_failed": s.dropped_failed,
                    "dropped_invalid_output": s.dropped_invalid,
                    "dropped_bad_camera_info": s.dropped_bad_camera_info,
                    "drop_reasons": ", ".join(f"{k}={v}" for k, v in sorted(s.drop_reasons.items())) or "none",
                    "window_s": self.thresholds.window_s,
                    "window_received": counts["received"],
                    "window_answered": counts["processed"],
                    "window_dropped_stale": counts["stale"],
                    "window_shed": counts["stale"] + sum(n for k, n in counts.items() if k.startswith("shed:")),
                    "shedding": _shedding(counts),
                    "window_dropped_bad": counts["bad"],
                    "window_dropped_failed": counts["failed"] + counts["invalid"],
                    "unanswered_s": now - s.awaiting_since if s.awaiting_since is not None else 0.0,
                    "since_input_s": now - s.last_received if s.last_received is not None else float("nan"),
                    "latency_p50_ms": _pct(s.latency_ms, 50),
                    "latency_p95_ms": _pct(s.latency_ms, 95),
                    "age_p50_ms": _pct(s.age_ms, 50),
                    "infer_p50_ms": _pct(s.infer_ms, 50),
                    **{f"{name}_p50_ms": _pct(values, 50) for name, values in s.stage_ms.items()},
                    "resets": ", ".join(f"{k}={v}" for k, v in sorted(s.resets.items())) or "none",
                    "image_size": f"{s.size[1]}x{s.size[0]}",
                    "last_error": s.last_error or "none",
                }
                out[cam]["level"], out[cam]["message"] = assess(out[cam], self.thresholds)
                s._window_received = s._window_processed = 0
            return out


def _shedding(counts: Counter[str]) -> str:
    """The window's frames shed by declared rules, by reason ("" when none)."""
    n = counts["received"]
    shed = sorted((k.removeprefix("shed:"), v) for k, v in counts.items() if k.startswith("shed:") and v)
    if not shed:
        return ""
    return "shed by rule: " + ", ".join(f"{k} {v} of {n} frames" for k, v in shed)


def assess(v: dict[str, Any], th: HealthThresholds) -> tuple[str, str]:
    """(level, message) of one camera's :meth:`NodeStats.snapshot` values (see the module docstring)."""
    if v["unanswered_s"] > th.stall_s and v["since_input_s"] <= th.window_s:
        return "error", (f"receiving images but nothing answered for {v['unanswered_s']:.1f} s "
                         f"(drops: {v['drop_reasons']}; last error: {v['last_error']})")
    n = v["window_received"]
    problems = []
    if v["since_input_s"] > th.window_s:  # NaN (never received) compares False
        problems.append(f"no input for {v['since_input_s']:.1f} s")
    if v["window_dropped_failed"]:
        problems.append(f"{v['window_dropped_failed']} frame(s) failed in the pipeline/backend in the last "
                        f"{th.window_s:g} s (last error: {v['last_error']})")
    if n >= th.min_frames:
        stale, bad = v["window_dropped_stale"] / n, v["window_dropped_bad"] / n
        if stale > th.stale_warn:
            problems.append(f"{100 * stale:.0f} % of frames dropped stale in the last {th.window_s:g} s "
                            f"(inference p50 {v['infer_p50_ms']:.0f} ms is slower than the input)")
        if bad > th.bad_warn:
            problems.append(f"{100 * bad:.0f} % of frames dropped as bad input (last error: {v['last_error']})")
    if problems:
        return "warn", "; ".join(problems)
    return "ok", ""
