"""When the player sends each message: pure functions of the bag's log times and the options.

- original timing (``rate`` 1), faster or slower (``rate`` r: every gap divided by r);
- ``deterministic``: no clock at all, messages in order; the player waits for the graph's output
  for each frame before it sends the next (back-pressure instead of drops);
- ``start_offset_s`` / ``duration_s``: a window of the bag (seconds from its first message);
- ``loops``: the window again and again; each pass after the first starts one typical message
  gap after the previous pass ended and begins with a :data:`LOOP` marker event, at which the
  player makes sure the graph's temporal state is reset (its stamps go back in time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from perception.bag import BagError

MESSAGE = "message"
LOOP = "loop"


@dataclass(frozen=True)
class ReplayOptions:
    rate: float = 1.0
    deterministic: bool = False
    start_offset_s: float = 0.0
    duration_s: float = 0.0  # 0: to the end
    loops: int = 1

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise BagError(f"replay rate must be > 0, got {self.rate}")
        if self.start_offset_s < 0 or self.duration_s < 0:
            raise BagError(f"start offset ({self.start_offset_s}) and duration ({self.duration_s}) must be >= 0")
        if self.loops < 1:
            raise BagError(f"loops must be >= 1, got {self.loops}")


@dataclass(frozen=True)
class Event:
    kind: str  # MESSAGE or LOOP
    index: int  # position of the message in the bag's log-time order (-1 for LOOP)
    at_s: float  # send time after the replay start (0 in deterministic mode)
    loop: int  # pass number, 0-based


def select(log_ns: Sequence[int], opts: ReplayOptions) -> list[int]:
    """Indices of the messages inside the [start offset, start offset + duration) window."""
    if not log_ns:
        return []
    t0 = min(log_ns) + round(opts.start_offset_s * 1e9)
    t1 = t0 + round(opts.duration_s * 1e9) if opts.duration_s > 0 else None
    return [i for i, t in enumerate(log_ns) if t >= t0 and (t1 is None or t < t1)]


def schedule(log_ns: Sequence[int], opts: ReplayOptions) -> list[Event]:
    """Every send event of a replay, in order (log times must be non-decreasing)."""
    if any(b < a for a, b in pairwise(log_ns)):
        raise BagError("log times must be non-decreasing to schedule a replay (read the bag in log-time order)")
    idx = select(log_ns, opts)
    if not idx:
        raise BagError(f"no messages in the replay window (start offset {opts.start_offset_s} s, duration "
                       f"{opts.duration_s or 'all'} s)")
    first = log_ns[idx[0]]
    span = (log_ns[idx[-1]] - first) * 1e-9
    gaps = sorted(log_ns[b] - log_ns[a] for a, b in pairwise(idx) if log_ns[b] > log_ns[a])
    period = (gaps[len(gaps) // 2] * 1e-9) if gaps else 0.1
    events: list[Event] = []
    for loop in range(opts.loops):
        base = loop * (span + period)
        if loop:
            events.append(Event(LOOP, -1, 0.0 if opts.deterministic else base / opts.rate, loop))
        for i in idx:
            at = 0.0 if opts.deterministic else (base + (log_ns[i] - first) * 1e-9) / opts.rate
            events.append(Event(MESSAGE, i, at, loop))
    return events
