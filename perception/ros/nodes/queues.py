"""The hand-offs between the subscription callbacks and the worker's stages. No rclpy here.

- :class:`LatestFrameSlots`: one slot per camera. A subscription callback only drops the message into its
  camera's slot; a newer message replaces one not yet taken (latest frame wins, the replaced one is shed:
  ``stale``, or by a declared rule of :mod:`perception.core.shedding`, which also chooses what inference takes
  next). There is never a backlog of old frames. The slots also keep the steps between the RECEIVED
  stamps, so the temporal memory is not reset for a "time jump" that is only the node's own stale drops
  (:mod:`perception.core.temporal`).
- :class:`ConvertedFrames` (pipelined convert -> infer): depth 1 per camera, newest wins.
- :class:`Handoff` (pipelined infer -> publish): depth 1 with backpressure, nothing thrown away.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from perception.core.shedding import FrameScheduler
from perception.core.temporal import ReceivedStamps, StreamSteps

if TYPE_CHECKING:
    from perception.pipeline.perceptor import FrameInput, PerceptionResult

Converted = list[tuple["Pending", "FrameInput"]]  # a batch ready for inference
Inferred = list[tuple["Pending", "PerceptionResult"]]  # a batch ready for publishing


def merge_steps(a: StreamSteps | None, b: StreamSteps | None) -> StreamSteps | None:
    """The steps of two consecutive intervals as one (a frame dropped between them keeps its steps)."""
    if a is None or b is None:
        return a if b is None else b
    return StreamSteps(min(a.min_step, b.min_step), max(a.max_step, b.max_step))



def _choose(waiting: dict[str, Pending], limit: int, scheduler: FrameScheduler | None) -> list[Pending]:
    """The scheduler's choice of the waiting frames (without one: the ``limit`` oldest), oldest first."""
    if scheduler is None or not waiting:
        return sorted(waiting.values(), key=lambda p: p.received)[:limit]
    cams = scheduler.choose({c: p.received for c, p in waiting.items()}, limit, time.monotonic())
    return [waiting[c] for c in cams]


@dataclass
class Pending:
    camera: str
    msg: Any  # sensor_msgs/Image or sensor_msgs/CompressedImage
    received: float  # time.monotonic() when the callback ran
    stamp: float | None = None  # the header stamp (s), when the callback read it
    steps: StreamSteps | None = None  # steps between received stamps since the last take (set by take)
    convert_ms: float = 0.0  # message -> image (set by PerceptionRunner.convert)
    size: tuple[int, int] = (0, 0)  # (H, W) of the converted image
    converted: float = 0.0  # time.monotonic() when it was converted


class LatestFrameSlots:
    """One slot per camera; ``put`` replaces an untaken frame and says why a frame was dropped.

    With a :class:`~perception.core.shedding.FrameScheduler`, ``put`` sheds frames above a camera's rate cap and
    -- while :attr:`choosing` (the worker's inference takes from here: pipelining off) -- ``take`` takes the
    cameras the scheduler chooses; without one, every filled slot, oldest first."""

    def __init__(self, cameras: tuple[str, ...], scheduler: FrameScheduler | None = None) -> None:
        self._slots: dict[str, Pending | None] = dict.fromkeys(cameras)
        self._stamps = ReceivedStamps()
        self._cond = threading.Condition()
        self._closed = False
        self.scheduler = scheduler
        self.choosing = scheduler is not None

    def put(self, item: Pending) -> str | None:
        """Queue ``item``; the shed reason of a frame dropped on the way (None: nothing was): ``rate_cap`` (``item``
        itself, over its camera's cap), or why the untaken frame it replaced was shed (``stale``, ...)."""
        with self._cond:
            if item.stamp is not None:  # the stream's steps count every received frame, shed or not
                self._stamps.add(item.camera, item.stamp)
            sched = self.scheduler
            if sched is not None and not sched.admit(item.camera, item.received):
                return "rate_cap"
            reason = None
            if self._slots[item.camera] is not None:
                if sched is None:
                    reason = "stale"
                elif self.choosing:
                    reason = sched.replaced(item.camera, item.received)
                else:
                    sched.lost(item.camera, item.received)
                    reason = "stale"
            self._slots[item.camera] = item
            self._cond.notify()
            return reason

    def take(self, timeout: float, limit: int = 64, gather_s: float = 0.0) -> list[Pending]:
        """The filled slots to infer next (at most ``limit``, oldest first), emptied; [] after ``timeout`` or on
        close. Which: the scheduler's choice while :attr:`choosing`, else the oldest.

        ``gather_s`` > 0: once a frame is there, wait up to that long for the other cameras' frames (until
        ``limit`` or every camera has one), so frames sent together are batched together."""
        with self._cond:
            if not self._closed and not any(self._slots.values()):
                self._cond.wait(timeout)
            want = min(limit, len(self._slots))
            end = time.monotonic() + gather_s
            while (gather_s > 0 and not self._closed and any(self._slots.values())
                   and sum(p is not None for p in self._slots.values()) < want and time.monotonic() < end):
                self._cond.wait(max(0.0, end - time.monotonic()))
            items = _choose({c: p for c, p in self._slots.items() if p is not None}, limit,
                            self.scheduler if self.choosing else None)
            for p in items:
                self._slots[p.camera] = None
                p.steps = self._stamps.take(p.camera)
            return items

    def clear(self) -> int:
        with self._cond:
            n = sum(p is not None for p in self._slots.values())
            self._slots = dict.fromkeys(self._slots)
            return n

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class ConvertedFrames:
    """Converted frames waiting for inference: depth 1 per camera, newest wins (the pipelined convert -> infer
    hand-off). ``put`` returns the frames it replaced with why each was shed (``stale``, or with a scheduler what
    its last choice left the frame out for); their stamp steps are merged into the newer frame's, so a time jump
    among dropped frames still resets the temporal memory. ``take`` takes the scheduler's choice."""

    def __init__(self, scheduler: FrameScheduler | None = None) -> None:
        self._frames: dict[str, tuple[Pending, FrameInput]] = {}
        self._cond = threading.Condition()
        self._closed = False
        self.scheduler = scheduler

    def put(self, batch: Converted) -> list[tuple[Pending, str]]:
        replaced = []
        with self._cond:
            for item, frame in batch:
                old = self._frames.get(item.camera)
                if old is not None:
                    sched = self.scheduler
                    replaced.append((old[0], sched.replaced(item.camera, time.monotonic()) if sched else "stale"))
                    frame = dataclasses.replace(frame, received=merge_steps(old[1].received, frame.received))
                self._frames[item.camera] = (item, frame)
            self._cond.notify_all()
        return replaced

    def take(self, timeout: float, limit: int = 64) -> Converted:
        """The frames to infer next (at most ``limit``, oldest first), removed; [] after ``timeout`` or on close."""
        with self._cond:
            if not self._closed and not self._frames:
                self._cond.wait(timeout)
            items = _choose({c: item for c, (item, _) in self._frames.items()}, limit, self.scheduler)
            return [self._frames.pop(item.camera) for item in items]

    def clear(self) -> list[Pending]:
        with self._cond:
            items = [item for item, _ in self._frames.values()]
            self._frames.clear()
            return items

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Handoff:
    """A depth-1 queue with backpressure (the pipelined infer -> publish hand-off): ``put`` waits until the
    previous item was taken, so inferred results are never dropped and at most one batch waits."""

    def __init__(self) -> None:
        self._item: Any = None
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: Any) -> bool:
        """Hand ``item`` over once the slot is free; False (not handed over) when closed meanwhile."""
        with self._cond:
            while self._item is not None and not self._closed:
                self._cond.wait(0.1)
            if self._closed:
                return False
            self._item = item
            self._cond.notify_all()
            return True

    def take(self, timeout: float) -> Any:
        """The waiting item (None after ``timeout`` or when closed)."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
