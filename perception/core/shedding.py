"""Predictable load shedding: which camera's frame the next inference takes, and why the others were dropped.

Pure logic (no clock: every call is given ``now``; thread-safe: the input slots and, when pipelined, the converted
frames call it from different threads). A node serving several cameras drops frames when inference is slower than
the cameras; this decides *whose*, by the rules a deployment declares (:class:`SheddingPolicy`):

- **rate cap** (``max_rate_hz[camera]``): frames arriving above the cap are shed on arrival (``rate_cap``);
  a token bucket (one token per 1/cap s, at most 1.5 banked), so a 30 Hz camera capped at 10 Hz is answered at
  10 Hz however its frames jitter.
- **priority** (``priority[camera]``, higher first, default 0): for ``max_wait_s`` after a camera of priority p
  lost a frame (a newer one replaced it before inference took it), an inference takes the waiting frames of
  priority >= p only, or -- when none of those waits -- a single frame of lower priority (so a lower-priority
  frame delays the next higher-priority one by one single-frame inference at most, and the worker never idles
  while frames wait). A held-back camera's replaced frames are shed ``priority``.
- **no starvation** (``max_wait_s``): a camera with a frame waiting that was not taken for ``max_wait_s`` is taken
  next, ahead of every priority, so under any overload every sending camera is answered at least about once per
  ``max_wait_s`` (plus the inferences of the starving cameras ahead of it).
- **fair turns**: when more cameras wait than a batch takes (``max_batch``), the batch takes higher priority first,
  then the camera taken longest ago; the others wait (``batch_full`` if they lose their frame meanwhile).

A frame replaced in its slot for none of these reasons is ``stale`` (the node is slower than the camera). A camera
that stops sending has nothing waiting and takes no part: the others are served (one at a time, if it was of a
higher priority and losing frames, for ``max_wait_s`` after its last loss; then as usual).

With the defaults (no caps, equal priorities) nothing is held back and a batch takes every waiting camera, as
before shedding existed; only the order of turns when cameras outnumber ``max_batch`` is least-recently-taken
first instead of oldest-received first (which left one of two same-rate cameras unanswered for seconds).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

SHED_REASONS = ("stale", "rate_cap", "priority", "batch_full")
BUCKET_CAPACITY = 1.5  # rate-cap tokens banked at most: absorbs arrival jitter without letting bursts through


@dataclass(frozen=True)
class SheddingPolicy:
    priority: Mapping[str, int] = field(default_factory=dict)  # camera -> priority (absent: 0)
    max_rate_hz: Mapping[str, float] = field(default_factory=dict)  # camera -> cap in Hz (absent: none)
    max_wait_s: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_wait_s) and self.max_wait_s > 0):
            raise ValueError(f"max_wait_s must be a positive number of seconds, not {self.max_wait_s}")
        bad = {c: hz for c, hz in self.max_rate_hz.items() if not (math.isfinite(hz) and hz > 0)}
        if bad:
            raise ValueError(f"max_rate_hz must be positive and finite: {bad}")

    def priority_of(self, camera: str) -> int:
        return int(self.priority.get(camera, 0))


class FrameScheduler:
    """Admission (rate caps), turn order (priority, fairness, starvation) and the reason of each shed frame."""

    def __init__(self, cameras: Iterable[str], policy: SheddingPolicy | None = None) -> None:
        self.policy = policy or SheddingPolicy()
        self.cameras = tuple(cameras)
        self._tokens: dict[str, float] = {}  # rate cap: camera -> tokens
        self._token_time: dict[str, float] = {}
        self._taken: dict[str, float] = {}  # camera -> when its last frame was taken
        self._waiting_since: dict[str, float] = {}  # camera never taken -> when a frame first waited
        self._lost: dict[int, float] = {}  # priority -> when a camera of it last lost a frame
        self._passed: dict[str, str] = {}  # camera -> why its waiting frame was left out of the last batch
        self._lock = threading.RLock()

    # -- arrival -----------------------------------------------------------------------------------
    def admit(self, camera: str, now: float) -> bool:
        """Whether a frame arriving now is within the camera's rate cap (False: shed it, ``rate_cap``)."""
        hz = self.policy.max_rate_hz.get(camera)
        if hz is None:
            return True
        with self._lock:
            last = self._token_time.get(camera)
            tokens = BUCKET_CAPACITY if last is None else min(BUCKET_CAPACITY,
                                                              self._tokens[camera] + (now - last) * hz)
            self._token_time[camera] = now
            admitted = tokens >= 1.0 - 1e-6
            self._tokens[camera] = tokens - 1.0 if admitted else tokens
            return admitted

    def lost(self, camera: str, now: float) -> None:
        """A frame of ``camera`` was replaced by a newer one before inference: its priority is losing frames."""
        with self._lock:
            self._lost[self.policy.priority_of(camera)] = now

    def replaced(self, camera: str, now: float) -> str:
        """A frame of ``camera`` waiting for :meth:`choose` was replaced by a newer one: :meth:`lost`, and why it was
        shed (a reason of :data:`SHED_REASONS`: what the last choice left it out for, else ``stale``)."""
        with self._lock:
            self.lost(camera, now)
            return self._passed.pop(camera, "stale")

    # -- the next batch ----------------------------------------------------------------------------
    def starving(self, camera: str, now: float) -> bool:
        since = self._taken.get(camera, self._waiting_since.get(camera, now))
        return now - since >= self.policy.max_wait_s

    def held_below(self, now: float) -> int | None:
        """Cameras of a priority below this yield now (None: nobody does): the highest priority that lost a frame
        within ``max_wait_s``."""
        with self._lock:
            recent = [p for p, t in self._lost.items() if now - t < self.policy.max_wait_s]
        return max(recent) if recent else None

    def choose(self, waiting: Mapping[str, float], limit: int, now: float) -> list[str]:
        """The cameras whose waiting frame the next inference takes (at most ``limit``, in order of arrival).

        ``waiting``: camera -> when its waiting frame was received."""
        with self._lock:
            return self._choose(waiting, limit, now)

    def _choose(self, waiting: Mapping[str, float], limit: int, now: float) -> list[str]:
        for cam in waiting:
            if cam not in self._taken:
                self._waiting_since.setdefault(cam, now)
        prio = self.policy.priority_of
        starving = {c for c in waiting if self.starving(c, now)}
        level = self.held_below(now)

        def key(c: str) -> tuple[bool, int, float, float]:
            return c not in starving, -prio(c), self._taken.get(c, -math.inf), waiting[c]

        if level is None:
            order = sorted(waiting, key=key)
            take, rest = order[:limit], order[limit:]
        else:  # a camera of priority `level` is losing frames: it (and anyone starving) first
            first = sorted((c for c in waiting if prio(c) >= level or c in starving), key=key)
            lower = sorted((c for c in waiting if c not in first), key=key)
            take = first[:limit] if first else lower[:min(limit, 1)]  # idle otherwise: one lower frame at a time
            rest = [c for c in first + lower if c not in take]
        self._passed = {c: "priority" if any(prio(t) > prio(c) for t in take) or (level is not None and prio(c) < level)
                        else "batch_full" for c in rest}
        for c in take:
            self._taken[c] = now
            self._waiting_since.pop(c, None)
        return sorted(take, key=lambda c: waiting[c])
