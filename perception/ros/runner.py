"""Frames in, messages out, off the subscription callbacks. No rclpy here.

- :class:`LatestFrameSlots`: one slot per camera. A subscription callback only drops the message
  into its camera's slot; a newer message replaces one not yet taken (latest frame wins, the
  replaced one is counted as a stale drop). There is never a backlog of old frames.
- :class:`InferenceWorker`: a thread that takes every filled slot at once (one frame per camera)
  and hands them to the runner as one batch.
- :class:`PerceptionRunner`: converts the messages (bad input -> dropped, counted, throttled log),
  runs ``Perceptor.process_batch`` and publishes the outputs with the input's header,
  detections first (the latency-critical output).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from perception.core.classes import semantic_palette
from perception.ros import convert
from perception.ros.errors import RosError
from perception.ros.params import PerceptionNodeConfig
from perception.ros.stats import NodeStats

if TYPE_CHECKING:
    from perception.pipeline.perceptor import PerceptionResult, Perceptor

# output keys (topic names relative to the camera namespace)
DETECTIONS = "detections"
OBJECT_ATTENTION = "detections/attention"
SEGMENTATION = "segmentation"
SEGMENTATION_COLOR = "segmentation/color"
ATTENTION = "attention"
LABEL_INFO = "label_info"

Publish = Callable[[str, str, Any], None]  # (camera, output key, message)


@dataclass
class Pending:
    camera: str
    msg: Any  # sensor_msgs/Image or sensor_msgs/CompressedImage
    received: float  # time.monotonic() when the callback ran


class LatestFrameSlots:
    """One slot per camera; ``put`` replaces an untaken frame (returns True when it did)."""

    def __init__(self, cameras: tuple[str, ...]) -> None:
        self._slots: dict[str, Pending | None] = dict.fromkeys(cameras)
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: Pending) -> bool:
        with self._cond:
            replaced = self._slots[item.camera] is not None
            self._slots[item.camera] = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float, limit: int = 64) -> list[Pending]:
        """Every filled slot (at most ``limit``, oldest first), emptied; [] after ``timeout`` or on close."""
        with self._cond:
            if not self._closed and not any(self._slots.values()):
                self._cond.wait(timeout)
            items = sorted((p for p in self._slots.values() if p is not None), key=lambda p: p.received)[:limit]
            for p in items:
                self._slots[p.camera] = None
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


class ThrottledLog:
    """At most one line per ``period`` seconds per key; says how many were suppressed meanwhile."""

    def __init__(self, log: Callable[[str], None], period: float = 5.0) -> None:
        self._log, self._period = log, period
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, key: str, text: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -1e9) < self._period:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            n = self._suppressed.pop(key, 0)
            self._last[key] = now
        self._log(text + (f" ({n} similar messages suppressed)" if n else ""))


class PerceptionRunner:
    """Owns the Perceptor while the node is active. ``process`` runs on the worker thread only."""

    def __init__(
        self,
        perceptor: Perceptor,
        config: PerceptionNodeConfig,
        publish: Publish,
        stats: NodeStats,
        warn: Callable[[str], None],
        info: Callable[[str], None] | None = None,
    ) -> None:
        self.perceptor = perceptor
        self.config = config
        self._publish = publish
        self._stats = stats
        self._warn = ThrottledLog(warn)
        self._info = ThrottledLog(info or warn)
        self._lock = threading.Lock()  # perceptor state: worker vs reset service
        self._class_ids = config.detection.class_ids
        self._palette = semantic_palette()
        self.camera_sizes: dict[str, tuple[int, int]] = {}  # from camera_info: (H, W)

    def reset(self, camera: str | None = None) -> None:
        with self._lock:
            self.perceptor.reset(camera)

    # -- worker side ---------------------------------------------------------------------------
    def _to_frame(self, item: Pending) -> Any | None:
        from perception.pipeline.perceptor import FrameInput

        try:
            rgb = convert.message_to_rgb(item.msg, self.config.input.max_pixels)
            if min(rgb.shape[:2]) < 8:
                raise RosError(f"image {rgb.shape[1]}x{rgb.shape[0]} is smaller than 8x8 pixels")
        except RosError as e:
            self._stats.dropped(item.camera, "bad", str(e))
            self._warn(f"bad:{item.camera}", f"camera {item.camera!r}: dropped a frame: {e}")
            return None
        expected = self.camera_sizes.get(item.camera)
        if expected is not None and expected != rgb.shape[:2]:
            self._warn(f"info:{item.camera}", f"camera {item.camera!r}: image {rgb.shape[1]}x{rgb.shape[0]} does not "
                       f"match camera_info {expected[1]}x{expected[0]}")
        stamp = convert.stamp_to_seconds(item.msg.header.stamp)
        return FrameInput(item.camera, rgb, stamp)

    def _infer(self, frames: list[Any]) -> list[tuple[Any, PerceptionResult | None]]:
        from perception.pipeline.perceptor import PipelineError

        with self._lock:
            if not self.config.temporal.enabled:
                for f in frames:
                    self.perceptor.reset(f.camera_id)
            try:
                return list(zip(frames, self.perceptor.process_batch(frames)))
            except PipelineError:
                if len(frames) == 1:
                    raise
            out: list[tuple[Any, PerceptionResult | None]] = []
            for f in frames:  # one bad frame must not sink the others: retry one by one
                try:
                    out.append((f, self.perceptor.process(f)))
                except PipelineError as e:
                    self._stats.dropped(f.camera_id, "bad", str(e))
                    self._warn(f"bad:{f.camera_id}", f"camera {f.camera_id!r}: dropped a frame: {e}")
                    out.append((f, None))
            return out

    def process(self, items: list[Pending]) -> None:
        frames, pending = [], []
        for item in items:
            f = self._to_frame(item)
            if f is not None:
                frames.append(f)
                pending.append(item)
        if not frames:
            return
        try:
            results = self._infer(frames)
        except Exception as e:  # a failing frame must not kill the worker thread
            for f in frames:
                self._stats.dropped(f.camera_id, "bad", f"{type(e).__name__}: {e}")
            cams = [f.camera_id for f in frames]
            self._warn("infer", f"inference failed for cameras {cams}: {type(e).__name__}: {e}")
            return
        for item, (_, result) in zip(pending, results):
            if result is not None:
                self._publish_result(item, result)

    def _publish_result(self, item: Pending, r: PerceptionResult) -> None:
        out = self.config.output
        cam, header = item.camera, item.msg.header
        det = convert.filter_classes(r.detections, self._class_ids)
        if out.detections:
            self._publish(cam, DETECTIONS, convert.detections_to_msg(det, header))
        if out.object_attention:
            self._publish(cam, OBJECT_ATTENTION, convert.object_attention_msg(det, header))
        if r.segmentation is not None:
            if out.segmentation:
                self._publish(cam, SEGMENTATION, convert.array_to_image(r.segmentation, header, "mono8"))
            if out.segmentation_color:
                color = np.asarray(self._palette[r.segmentation])
                self._publish(cam, SEGMENTATION_COLOR, convert.array_to_image(color, header, "rgb8"))
        if out.attention and r.attention is not None:
            self._publish(cam, ATTENTION, convert.array_to_image(r.attention, header, "32FC1"))
        reason = r.reset.value
        if reason and reason != "first_frame":
            self._info(f"reset:{cam}:{reason}", f"camera {cam!r}: temporal memory reset ({reason}) at {r.stamp:.3f} s")
        now = time.monotonic()
        age_ms = 1e3 * (time.time() - r.stamp)
        size = (r.segmentation.shape if r.segmentation is not None else
                r.attention.shape if r.attention is not None else (0, 0))
        self._stats.processed(cam, 1e3 * (now - item.received), age_ms, r.timings_ms.get("infer", float("nan")),
                              reason, (int(size[0]), int(size[1])))


class InferenceWorker:
    """The thread that feeds slots to the runner; ``stop`` joins it (finishing the current batch)."""

    def __init__(self, slots: LatestFrameSlots, runner: PerceptionRunner, max_batch: int) -> None:
        self._slots, self._runner, self._max_batch = slots, runner, max_batch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="perception-inference", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            items = self._slots.take(timeout=0.1, limit=self._max_batch)
            if items and not self._stop.is_set():
                self._runner.process(items)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._slots.close()
        if self._thread.is_alive():
            self._thread.join(timeout)
