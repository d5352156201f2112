"""The hand-offs between the subscription callbacks and the worker's stages. No rclpy here.

- :class:`LatestFrameSlots`: one slot per camera. A subscription callback only drops the message into its
  camera's slot; a newer message replaces one not yet taken (latest frame wins, the replaced one is counted as
  a stale drop). There is never a backlog of old frames. The slots also keep the steps between the RECEIVED
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
    """One slot per camera; ``put`` replaces an untaken frame (returns True when it did)."""

    def __init__(self, cameras: tuple[str, ...]) -> None:
        self._slots: dict[str, Pending | None] = dict.fromkeys(cameras)
        self._stamps = ReceivedStamps()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: Pending) -> bool:
        with self._cond:
            if item.stamp is not None:
                self._stamps.add(item.camera, item.stamp)
            replaced = self._slots[item.camera] is not None
            self._slots[item.camera] = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float, limit: int = 64, gather_s: float = 0.0) -> list[Pending]:
        """Every filled slot (at most ``limit``, oldest first), emptied; [] after ``timeout`` or on close.

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
            items = sorted((p for p in self._slots.values() if p is not None), key=lambda p: p.received)[:limit]
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
    hand-off). ``put`` returns the frames it replaced (to be counted stale); their stamp steps are merged into
    the newer frame's, so a time jump among dropped frames still resets the temporal memory."""

    def __init__(self) -> None:
        self._frames: dict[str, tuple[Pending, FrameInput]] = {}
        self._cond = threading.Condition()
        self._closed = False

    def put(self, batch: Converted) -> list[Pending]:
        replaced = []
        with self._cond:
            for item, frame in batch:
                old = self._frames.get(item.camera)
                if old is not None:
                    replaced.append(old[0])
                    frame = dataclasses.replace(frame, received=merge_steps(old[1].received, frame.received))
                self._frames[item.camera] = (item, frame)
            self._cond.notify_all()
        return replaced

    def take(self, timeout: float, limit: int = 64) -> Converted:
        """Every waiting frame (at most ``limit``, oldest first), removed; [] after ``timeout`` or on close."""
        with self._cond:
            if not self._closed and not self._frames:
                self._cond.wait(timeout)
            batch = sorted(self._frames.values(), key=lambda pf: pf[0].received)[:limit]
            for item, _ in batch:
                del self._frames[item.camera]
            return batch

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
