"""Frames in, results out, off the subscription callbacks: the runner of one active node. No rclpy here.

:class:`PerceptionRunner` converts the messages (:meth:`~PerceptionRunner.convert`), runs
``Perceptor.process_batch`` (:meth:`~PerceptionRunner.infer`) and hands the results to
:class:`~perception.ros.nodes.outputs.OutputPublisher` (:meth:`~PerceptionRunner.publish`). The Perceptor is
asked for segmentation / attention only while some output needs them. The frames come from
:mod:`perception.ros.nodes.queues` through the thread(s) of :mod:`perception.ros.nodes.worker`.

Faults never end the worker. Every step of a frame (conversion, decode, pipeline, backend,
publishing) runs under ``except Exception``: the frame is dropped and counted by kind and reason in
:class:`~perception.ros.nodes.stats.NodeStats` (``bad``: malformed input; ``failed``: the pipeline, backend
or publishing raised; ``invalid``: the backend returned NaN / inf), with a throttled log line. After
a backend fault the runner reloads the backend when it is left with none (the fallback chain
exhausted), at most once a second; after ``INVALID_FAILOVER_AFTER`` batches in a row with non-finite
outputs it moves to the next backend of the fallback chain (:meth:`FallbackBackend.fail_over`).

libjpeg / libpng warnings printed while decoding compressed frames never reach stderr
(:func:`perception.core.codec.decode_rgb` captures them): those that refuse a frame are its drop reason, the
others are logged throttled, once per 5 s.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from perception.core.letterbox import MIN_SIDE
from perception.ros import convert
from perception.ros.errors import RosError
from perception.ros.nodes.outputs import (
    ATTENTION,
    OBJECT_ATTENTION,
    SEGMENTATION,
    SEGMENTATION_COLOR,
    OutputPublisher,
    Publish,
    Wants,
)
from perception.ros.nodes.params import PerceptionNodeConfig
from perception.ros.nodes.queues import Converted, Inferred, Pending
from perception.ros.nodes.stats import NodeStats
from perception.ros.nodes.throttle import ThrottledLog, why

if TYPE_CHECKING:
    from perception.pipeline.perceptor import PerceptionResult, Perceptor
    from perception.ros.nodes.objects_stage import ObjectsStage

INVALID_FAILOVER_AFTER = 2  # batches in a row with non-finite outputs before moving down the fallback chain
RELOAD_INTERVAL_S = 1.0  # at most one backend reload attempt per this many seconds
GATHER_MAX_S = 0.005  # at most this long waiting for more cameras' frames to fill a batch


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
        objects: ObjectsStage | None = None,
        wants: Wants | None = None,
    ) -> None:
        """``wants(camera, key)``: whether an output has a subscriber now (default: always); image outputs
        nobody wants are not built, and the Perceptor is spared the maps no wanted output needs."""
        self.perceptor = perceptor
        self.objects = objects
        self.config = config
        self._stats = stats
        self._warn = ThrottledLog(warn)
        self._info = ThrottledLog(info or warn)
        self._lock = threading.Lock()  # perceptor state: worker vs reset service
        self._closed = False
        self._busy_since: float | None = None
        self._invalid_streak = 0
        self._last_reload = -1e9
        self._last_infer_s = 0.0  # the last batch's Perceptor time (sizes the batch gathering window)
        self.camera_sizes: dict[str, tuple[int, int]] = {}  # from camera_info: (H, W)
        self.camera_infos: dict[str, Any] = {}  # the last good sensor_msgs/CameraInfo per camera
        self._wants: Wants = wants or (lambda cam, key: True)
        base = getattr(perceptor, "config", None)
        # the Perceptor's configured outputs (build_perceptor: from the output.* flags); demand narrows them
        self._base_maps = (bool(getattr(base, "segmentation", False)), bool(getattr(base, "attention", False)))
        self.outputs = OutputPublisher(config, publish, stats, self._wants, self._warn, self._info, objects,
                                       self.camera_sizes, self.camera_infos)

    def reset(self, camera: str | None = None) -> None:
        with self._lock:
            self.perceptor.reset(camera)
            if self.objects is not None:
                self.objects.reset(camera)

    def close(self) -> None:
        """Publish nothing more (a batch in flight is finished but not published): the node is going away."""
        self._closed = True

    def warm_up(self, size: tuple[int, int] | None = None) -> float:
        """One inference on a black frame for every camera (nothing published), then the temporal memory is
        forgotten: the runtime's first-run costs (allocations, kernel selection) are paid before the first real
        frame. Returns its seconds; raises what the pipeline raises (the model cannot answer)."""
        from perception.pipeline.perceptor import FrameInput

        if size is None:
            shape = self.perceptor.backend.input_specs[0].shape  # ("batch", 3, H, W)
            size = (int(shape[2]), int(shape[3]))
        h, w = size
        frames = [FrameInput(cam, np.zeros((int(h), int(w), 3), np.uint8), 0.0) for cam in self.config.input.cameras]
        t0 = time.monotonic()
        with self._lock:
            self.perceptor.process_batch(frames[: max(1, self.config.max_batch)])
            self.perceptor.reset()
        return time.monotonic() - t0

    def busy_for(self) -> float:
        """Seconds the current inference has been running (0 when idle): a stuck backend shows here."""
        since = self._busy_since
        return time.monotonic() - since if since is not None else 0.0

    # -- worker side ---------------------------------------------------------------------------
    def _drop(self, cam: str, kind: str, e: BaseException | str, what: str) -> None:
        text = e if isinstance(e, str) else why(e)
        self._stats.dropped(cam, kind, text, "" if isinstance(e, str) else type(e).__name__)
        self._warn(f"{kind}:{cam}", f"camera {cam!r}: dropped a frame ({what}): {text}")

    def _decode(self, msg: Any) -> np.ndarray:
        lines: list[str] = []
        rgb = convert.message_to_rgb(msg, self.config.input.max_pixels, decoder_warnings=lines)
        if lines:
            self._warn("decoder", f"image decoder: {lines[-1]}" + (f" (+{len(lines) - 1} more)" if len(lines) > 1
                                                                   else ""))
        return rgb

    def _to_frame(self, item: Pending) -> Any | None:
        from perception.pipeline.perceptor import FrameInput

        try:
            rgb = self._decode(item.msg)
            if min(rgb.shape[:2]) < MIN_SIDE:
                raise RosError(f"image {rgb.shape[1]}x{rgb.shape[0]} is smaller than {MIN_SIDE}x{MIN_SIDE} pixels")
            stamp = convert.stamp_to_seconds(item.msg.header.stamp)
        except Exception as e:  # RosError, cv2.error, anything a converter raises: bad input, never fatal
            self._drop(item.camera, "bad", e, "bad input")
            return None
        expected = self.camera_sizes.get(item.camera)
        if expected is not None and expected != rgb.shape[:2]:
            self._warn(f"info:{item.camera}", f"camera {item.camera!r}: image {rgb.shape[1]}x{rgb.shape[0]} does not "
                       f"match camera_info {expected[1]}x{expected[0]}")
        return FrameInput(item.camera, rgb, stamp, received=item.steps)

    # -- the three stages ----------------------------------------------------------------------
    def convert(self, items: list[Pending]) -> Converted:
        """Messages -> frames (stage 1); malformed ones are dropped and counted ``bad``."""
        out: Converted = []
        for item in items:
            t0 = time.perf_counter()
            f = self._to_frame(item)
            item.convert_ms, item.converted = 1e3 * (time.perf_counter() - t0), time.monotonic()
            if f is not None:
                item.size = (int(f.rgb.shape[0]), int(f.rgb.shape[1]))
                out.append((item, f))
        return out

    def _demand(self, cameras: list[str]) -> None:
        """Ask the Perceptor only for the maps some wanted output of these cameras needs."""
        from perception.pipeline.perceptor import PerceptorConfig

        config = getattr(self.perceptor, "config", None)
        if not isinstance(config, PerceptorConfig):
            return
        want = self._wants
        seg = self._base_maps[0] and (self.objects is not None or any(
            want(c, SEGMENTATION) or want(c, SEGMENTATION_COLOR) for c in cameras))
        att = self._base_maps[1] and any(want(c, ATTENTION) or want(c, OBJECT_ATTENTION) for c in cameras)
        if (config.segmentation, config.attention) != (seg, att):
            self.perceptor.config = dataclasses.replace(config, segmentation=seg, attention=att)

    def infer(self, batch: Converted) -> Inferred:
        """Frames -> results (stage 2). Raises nothing: failed frames are dropped and counted."""
        if not batch:
            return []
        pending = {id(f): item for item, f in batch}
        frames = [f for _, f in batch]
        try:
            results = self._infer(frames)
        except Exception as e:  # a failing pipeline / backend must not kill the worker thread
            for f in frames:
                self._stats.dropped(f.camera_id, "failed", why(e), type(e).__name__)
            cams = [f.camera_id for f in frames]
            self._warn("infer", f"inference failed for cameras {cams}: {why(e)}")
            try:
                with self._lock:
                    self._recover(cams)
            except Exception as err:
                self._warn("recover", f"recovering from the fault failed: {why(err)}")
            return []
        return [(pending[id(f)], r) for f, r in results if r is not None]

    def publish(self, inferred: Inferred) -> None:
        """Results -> messages (stage 3). Raises nothing: a frame that cannot be published is counted."""
        for item, result in inferred:
            if self._closed:
                return
            try:
                self.outputs.result(item, result)
            except Exception as e:  # a message that cannot be built or sent: that frame is lost, not the node
                self._drop(item.camera, "failed", e, "publishing")

    def _infer(self, frames: list[Any]) -> list[tuple[Any, PerceptionResult | None]]:
        from perception.pipeline.perceptor import PipelineError

        with self._lock:
            self._demand([f.camera_id for f in frames])
            if not self.config.temporal.enabled:
                for f in frames:
                    self.perceptor.reset(f.camera_id)
            try:
                results = self._run(frames)
            except PipelineError:
                if len(frames) == 1:
                    raise
            else:
                return list(zip(frames, results))
            out: list[tuple[Any, PerceptionResult | None]] = []
            for f in frames:  # one bad frame must not sink the others: retry one by one
                try:
                    out.append((f, self._run([f])[0]))
                except PipelineError as e:
                    self._drop(f.camera_id, "bad", e, "refused by the pipeline")
                    out.append((f, None))
            return out

    def _run(self, frames: list[Any]) -> list[PerceptionResult | None]:
        """``process_batch``, with non-finite outputs dropped and counted (None in their place)."""
        from perception.pipeline.perceptor import InvalidOutputError

        self._busy_since = t0 = time.monotonic()
        try:
            results: list[PerceptionResult | None] = list(self.perceptor.process_batch(frames))
            self._last_infer_s = time.monotonic() - t0
            self._invalid_streak = 0
            return results
        except InvalidOutputError as e:
            for cam in e.invalid:
                self._drop(cam, "invalid", e, "non-finite outputs")
            self._on_invalid(e)
            return e.results
        finally:
            self._busy_since = None

    def _on_invalid(self, e: BaseException) -> None:
        from perception.runtime.select import FallbackBackend

        self._invalid_streak += 1
        backend = self.perceptor.backend
        if self._invalid_streak < INVALID_FAILOVER_AFTER or not isinstance(backend, FallbackBackend):
            return
        self._invalid_streak = 0
        before = backend.active_name
        try:
            moved = backend.fail_over(e)
        except Exception as err:  # the rest of the chain failed to load: the next fault reloads it
            self._warn("failover", f"backend {before} gave non-finite outputs and no other backend loaded: {why(err)}")
            return
        if moved:
            self.perceptor.reset()  # the memory came from the faulty backend
            self._warn("failover", f"backend {before} gave non-finite outputs {INVALID_FAILOVER_AFTER} times in a "
                       f"row: switched to {backend.active_name}")
        else:
            self._warn("failover", f"backend {before} gives non-finite outputs and there is no fallback backend "
                       "left: its frames are dropped")

    def _recover(self, cameras: list[str]) -> None:
        """After a backend fault: forget those cameras' memory; reload the backend if none is left running."""
        for cam in cameras:
            self.perceptor.reset(cam)
        backend = self.perceptor.backend
        if backend.status().get("backend.active") != "none":
            return
        now = time.monotonic()
        if now - self._last_reload < RELOAD_INTERVAL_S:
            return
        self._last_reload = now
        try:
            backend.load()
            self._warn("reload", f"backend reloaded after a fault: running on {backend.status().get('backend.active')}")
        except Exception as e:
            self._warn("reload", f"backend reload after a fault failed (retrying every {RELOAD_INTERVAL_S:g} s): "
                       f"{why(e)}")

    def process(self, items: list[Pending]) -> None:
        """Convert, infer and publish one batch in turn (pipelining off). Raises nothing (every failure drops
        and counts frames)."""
        self.publish(self.infer(self.convert(items)))

    def gather_s(self, max_batch: int) -> float:
        """How long to wait for the other cameras' frames once one arrived: a tenth of the last inference,
        at most ``GATHER_MAX_S``; 0 with one camera or ``max_batch`` 1 (nothing to batch)."""
        if max_batch < 2 or len(self.config.input.cameras) < 2:
            return 0.0
        return min(GATHER_MAX_S, 0.1 * self._last_infer_s)

    def shed(self, camera: str, reason: str) -> None:
        """Count a converted frame replaced by a newer one before inference took it (``reason``: why it was shed)."""
        self._stats.shed(camera, reason)

    def fail(self, items: list[Pending], e: BaseException) -> None:
        """Count a batch lost to an error that escaped :meth:`process` (never expected)."""
        for item in items:
            self._stats.dropped(item.camera, "failed", why(e), type(e).__name__)
        self._warn("worker", f"inference worker: batch lost: {why(e)}")
