"""Frames in, messages out, off the subscription callbacks. No rclpy here.

- :class:`LatestFrameSlots`: one slot per camera. A subscription callback only drops the message
  into its camera's slot; a newer message replaces one not yet taken (latest frame wins, the
  replaced one is counted as a stale drop). There is never a backlog of old frames. The slots also
  keep the steps between the RECEIVED stamps, so the temporal memory is not reset for a "time jump"
  that is only the node's own stale drops (:mod:`perception.core.temporal`).
- :class:`InferenceWorker`: a thread that takes every filled slot at once (one frame per camera)
  and hands them to the runner as one batch. With several cameras and ``max_batch`` > 1 it waits, once a
  frame is there, up to a tenth of the last inference time (at most 5 ms) for the other cameras' frames, so
  frames sent together are inferred together (:meth:`PerceptionRunner.gather_s`).
- :class:`PerceptionRunner`: converts the messages (:meth:`~PerceptionRunner.convert`), runs
  ``Perceptor.process_batch`` (:meth:`~PerceptionRunner.infer`) and publishes the outputs with the input's
  header, detections first (the latency-critical output; :meth:`~PerceptionRunner.publish`). Outputs are
  demand-driven: an image output nobody subscribes to (``wants``) is neither built nor published, and the
  Perceptor is asked for segmentation / attention only while some output needs them. With
  ``output.mask_resolution: network`` masks and attention go out at the network's output size with a
  matching ``<cam>/mask/camera_info`` (:func:`network_masks`, :func:`perception.ros.convert.scaled_camera_info`).
- Pipelining (``runtime.pipelining``, :func:`pipelining_enabled`): disabled, one worker thread runs convert ->
  infer -> publish for each batch in turn. Enabled, three threads overlap them: convert (input slots ->
  :class:`ConvertedFrames`, depth 1 per camera, newest wins: a converted frame replaced before inference took
  it is counted ``stale`` like an input-slot drop), infer (-> :class:`Handoff`, depth 1 with backpressure:
  an inferred result is never thrown away) and publish. The Python stages hold the GIL only briefly, so
  they add at most about one core of work next to the runtime's intra-op threads.

Faults never end the worker. Every step of a frame (conversion, decode, pipeline, backend,
publishing) runs under ``except Exception``: the frame is dropped and counted by kind and reason in
:class:`~perception.ros.nodes.stats.NodeStats` (``bad``: malformed input; ``failed``: the pipeline, backend
or publishing raised; ``invalid``: the backend returned NaN / inf), with a throttled log line. After
a backend fault the runner reloads the backend when it is left with none (the fallback chain
exhausted), at most once a second; after ``INVALID_FAILOVER_AFTER`` batches in a row with non-finite
outputs it moves to the next backend of the fallback chain (:meth:`FallbackBackend.fail_over`).
If the worker thread dies anyway (a ``BaseException`` such as ``SystemExit`` escaping a backend),
:meth:`InferenceWorker.check` -- which the node calls with every diagnostics period -- reports it
(ERROR in /diagnostics for ``DEATH_REPORT_S``) and restarts the thread; a worker that dies
``max_restarts`` times within ``restart_window_s`` is not restarted again (:attr:`InferenceWorker.failure`
says why), and the node then shuts down and exits non-zero so that a supervisor restarts the process.

libjpeg / libpng warnings printed while decoding compressed frames never reach stderr
(:func:`perception.core.codec.decode_rgb` captures them): those that refuse a frame are its drop reason, the
others are logged throttled, once per 5 s.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perception.core.classes import semantic_palette
from perception.core.hardware import available_cpus
from perception.core.temporal import ReceivedStamps, StreamSteps
from perception.ros import convert
from perception.ros.errors import RosError
from perception.ros.nodes.params import PerceptionNodeConfig
from perception.ros.nodes.stats import NodeStats

if TYPE_CHECKING:
    from perception.pipeline.perceptor import FrameInput, PerceptionResult, Perceptor
    from perception.ros.nodes.objects_stage import ObjectsResult, ObjectsStage

# output keys (topic names relative to the camera namespace)
DETECTIONS = "detections"
OBJECT_ATTENTION = "detections/attention"
SEGMENTATION = "segmentation"
SEGMENTATION_COLOR = "segmentation/color"
ATTENTION = "attention"
MASK_CAMERA_INFO = "mask/camera_info"  # with output.mask_resolution: network
LABEL_INFO = "label_info"
ANNOTATIONS = "detections/annotations"
OBJECTS3D = "objects3d"
OBJECTS_DETECTED = "objects/detected"
OBJECTS_TRACKED = "objects/tracked"
OBJECTS_MARKERS = "objects/markers"

INVALID_FAILOVER_AFTER = 2  # batches in a row with non-finite outputs before moving down the fallback chain
RELOAD_INTERVAL_S = 1.0  # at most one backend reload attempt per this many seconds
GATHER_MAX_S = 0.005  # at most this long waiting for more cameras' frames to fill a batch
DEATH_REPORT_S = 10.0  # a worker death is reported ERROR for this long after its restart

Publish = Callable[[str, str, Any], None]  # (camera, output key, message)
Wants = Callable[[str, str], bool]  # (camera, output key) -> someone subscribes to it
Converted = list[tuple["Pending", "FrameInput"]]  # a batch ready for inference
Inferred = list[tuple["Pending", "PerceptionResult"]]  # a batch ready for publishing
IMAGE_OUTPUTS = (SEGMENTATION, SEGMENTATION_COLOR, ATTENTION)  # built only when someone subscribes


def pipelining_enabled(mode: str, cpus: int | None = None) -> bool:
    """``runtime.pipelining``: enabled / disabled, or auto = enabled when this process may use >= 2 CPUs
    (affinity, cgroup quota)."""
    if mode not in ("auto", "enabled", "disabled"):
        raise RosError(f"runtime.pipelining must be auto, enabled or disabled, not {mode!r}")
    if mode != "auto":
        return mode == "enabled"
    return (available_cpus() if cpus is None else cpus) >= 2


def merge_steps(a: StreamSteps | None, b: StreamSteps | None) -> StreamSteps | None:
    """The steps of two consecutive intervals as one (a frame dropped between them keeps its steps)."""
    if a is None or b is None:
        return a if b is None else b
    return StreamSteps(min(a.min_step, b.min_step), max(a.max_step, b.max_step))


def network_masks(r: PerceptionResult) -> tuple[np.ndarray | None, np.ndarray | None, tuple[float, float]]:
    """(segmentation, attention, (sx, sy)) at the network's resolution, letterbox padding cropped, covering
    the whole input image; (sx, sy) = input pixels per mask pixel (the Perceptor's low-resolution maps,
    computed without the input-resolution ones)."""
    sx, sy = r.lowres_scale
    return r.segmentation_lowres, r.attention_lowres, (float(sx), float(sy))


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


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
        objects: ObjectsStage | None = None,
        wants: Wants | None = None,
    ) -> None:
        """``wants(camera, key)``: whether an output has a subscriber now (default: always); image outputs
        nobody wants are not built, and the Perceptor is spared the maps no wanted output needs."""
        self.perceptor = perceptor
        self.objects = objects
        self.config = config
        self._publish = publish
        self._stats = stats
        self._warn = ThrottledLog(warn)
        self._info = ThrottledLog(info or warn)
        self._lock = threading.Lock()  # perceptor state: worker vs reset service
        self._class_ids = config.detection.class_ids
        self._palette = semantic_palette()
        self._closed = False
        self._busy_since: float | None = None
        self._invalid_streak = 0
        self._last_reload = -1e9
        self._last_infer_s = 0.0  # the last batch's Perceptor time (sizes the batch gathering window)
        self.camera_sizes: dict[str, tuple[int, int]] = {}  # from camera_info: (H, W)
        self.camera_infos: dict[str, Any] = {}  # the last good sensor_msgs/CameraInfo per camera
        self._wants: Wants = wants or (lambda cam, key: True)
        self._network_masks = config.output.mask_resolution == "network"
        base = getattr(perceptor, "config", None)
        # the Perceptor's configured outputs (build_perceptor: from the output.* flags); demand narrows them
        self._base_maps = (bool(getattr(base, "segmentation", False)), bool(getattr(base, "attention", False)))
        self._msgs: Any = None  # perception.ros.objects_msgs, imported now (0.5 s: scipy), not on the first frame
        if config.output.annotations or objects is not None:
            from perception.ros import objects_msgs

            self._msgs = objects_msgs

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
        text = e if isinstance(e, str) else _why(e)
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
            if min(rgb.shape[:2]) < 8:
                raise RosError(f"image {rgb.shape[1]}x{rgb.shape[0]} is smaller than 8x8 pixels")
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
                self._stats.dropped(f.camera_id, "failed", _why(e), type(e).__name__)
            cams = [f.camera_id for f in frames]
            self._warn("infer", f"inference failed for cameras {cams}: {_why(e)}")
            try:
                with self._lock:
                    self._recover(cams)
            except Exception as err:
                self._warn("recover", f"recovering from the fault failed: {_why(err)}")
            return []
        return [(pending[id(f)], r) for f, r in results if r is not None]

    def publish(self, inferred: Inferred) -> None:
        """Results -> messages (stage 3). Raises nothing: a frame that cannot be published is counted."""
        for item, result in inferred:
            if self._closed:
                return
            try:
                self._publish_result(item, result)
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
            self._warn("failover", f"backend {before} gave non-finite outputs and no other backend loaded: {_why(err)}")
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
                       f"{_why(e)}")

    def process(self, items: list[Pending]) -> None:
        """Convert, infer and publish one batch in turn (pipelining off). Raises nothing (every failure drops
        and counts frames)."""
        self.publish(self.infer(self.convert(items)))

    def _objects(self, item: Pending, header: Any, r: PerceptionResult) -> ObjectsResult | None:
        """The 3D objects stage for one frame and its messages (the detections ``r`` holds are the published
        ones); a failure there costs the frame its 3D objects only (counted, logged), not its 2D outputs."""
        from std_msgs.msg import Header

        om, stage, cam = self._msgs, self.objects, item.camera
        assert stage is not None
        try:
            res = stage.process(cam, r.stamp, header.frame_id, r, item.received)
        except Exception as e:  # counted by the stage as objects_failed
            self._warn(f"objects:{cam}", f"camera {cam!r}: 3D objects failed for a frame: {_why(e)}")
            return None
        if res is None:
            return None
        try:
            frame, base = res.frame, stage.config.base_frame
            base_header = Header(stamp=header.stamp, frame_id=base)  # the image's exact stamp
            ids_2d = om.track_ids_2d(frame.tracks, len(r.detections))
            ids = [ids_2d[int(i)] if 0 <= int(i) < len(ids_2d) else None for i in frame.objects.detection_index]
            self._publish(cam, OBJECTS3D, om.objects_to_detection3d_array(frame.objects, base_header, ids))
            self._publish(cam, OBJECTS_DETECTED, om.objects_to_detected_objects(frame.objects, base_header))
            odom_header = Header(stamp=header.stamp, frame_id=stage.pipelines[cam].tracker.config.fixed_frame)
            self._publish(cam, OBJECTS_TRACKED, om.tracks_to_tracked_objects(frame.tracks, odom_header, res.session))
            self._publish(cam, OBJECTS_MARKERS, om.tracks_to_markers(frame.tracks, odom_header))
        except Exception as e:
            self._warn(f"objects:{cam}", f"camera {cam!r}: 3D object messages failed: {_why(e)}")
            return None
        return res

    def gather_s(self, max_batch: int) -> float:
        """How long to wait for the other cameras' frames once one arrived: a tenth of the last inference,
        at most ``GATHER_MAX_S``; 0 with one camera or ``max_batch`` 1 (nothing to batch)."""
        if max_batch < 2 or len(self.config.input.cameras) < 2:
            return 0.0
        return min(GATHER_MAX_S, 0.1 * self._last_infer_s)

    def stale(self, camera: str) -> None:
        """Count a converted frame replaced by a newer one before inference took it."""
        self._stats.dropped(camera, "stale")

    def fail(self, items: list[Pending], e: BaseException) -> None:
        """Count a batch lost to an error that escaped :meth:`process` (never expected)."""
        for item in items:
            self._stats.dropped(item.camera, "failed", _why(e), type(e).__name__)
        self._warn("worker", f"inference worker: batch lost: {_why(e)}")

    def _publish_result(self, item: Pending, r: PerceptionResult) -> None:
        out, want = self.config.output, self._wants
        t0 = time.perf_counter()
        cam, header = item.camera, item.msg.header
        det = convert.filter_classes(r.detections, self._class_ids)
        if out.detections:
            self._publish(cam, DETECTIONS, convert.detections_to_msg(det, header))
        if out.object_attention and want(cam, OBJECT_ATTENTION):
            self._publish(cam, OBJECT_ATTENTION, convert.object_attention_msg(det, header))
        self._publish_maps(cam, header, r, item.size)
        # latency / age of the 2D outputs (the 3D objects stage reports its own objects.* timings)
        now, age_ms = time.monotonic(), 1e3 * (time.time() - r.stamp)
        track_ids = None
        if self.objects is not None:
            objects = self._objects(item, header, dataclasses.replace(r, detections=det))
            if objects is not None:
                track_ids = self._msgs.track_ids_2d(objects.frame.tracks, len(det))
        if out.annotations and want(cam, ANNOTATIONS):
            self._publish(cam, ANNOTATIONS, self._msgs.detections_to_annotations(det, header, track_ids))
        reason = r.reset.value
        if reason and reason != "first_frame":
            self._info(f"reset:{cam}:{reason}", f"camera {cam!r}: temporal memory reset ({reason}) at {r.stamp:.3f} s")
        stages = {"convert": item.convert_ms, "perceptor": r.total_ms,
                  "publish": 1e3 * (time.perf_counter() - t0)}
        self._stats.processed(cam, 1e3 * (now - item.received), age_ms, r.timings_ms.get("infer", float("nan")),
                              reason, item.size, stages=stages)

    def _publish_maps(self, cam: str, header: Any, r: PerceptionResult, size: tuple[int, int]) -> None:
        """segmentation, segmentation/color, attention (+ mask/camera_info at network resolution), each only
        when enabled and subscribed. The result's maps are read only when one is published (a Perceptor
        that computes them lazily never makes the full-resolution ones for network-resolution outputs)."""
        out, want = self.config.output, self._wants
        seg_on = out.segmentation and want(cam, SEGMENTATION)
        color_on = out.segmentation_color and want(cam, SEGMENTATION_COLOR)
        att_on = out.attention and want(cam, ATTENTION)
        if not (seg_on or color_on or att_on):
            return
        if self._network_masks:
            seg, att, scale = network_masks(r)
        else:
            seg = r.segmentation if (seg_on or color_on) else None
            att = r.attention if att_on else None
            scale = (1.0, 1.0)
        if seg is not None:
            if seg_on:
                self._publish(cam, SEGMENTATION, convert.array_to_image(seg, header, "mono8"))
            if color_on:
                self._publish(cam, SEGMENTATION_COLOR, convert.array_to_image(convert.colorize(seg, self._palette),
                                                                             header, "rgb8"))
        if att_on and att is not None:
            self._publish(cam, ATTENTION, convert.array_to_image(att, header, "32FC1"))
        mask = seg if seg is not None else att
        if self._network_masks and mask is not None and want(cam, MASK_CAMERA_INFO):
            src = self.camera_sizes.get(cam, size)
            self._publish(cam, MASK_CAMERA_INFO, convert.scaled_camera_info(
                self.camera_infos.get(cam), header, mask.shape[1], mask.shape[0], scale, src))


class InferenceWorker:
    """The thread(s) that feed slots to the runner; ``stop`` joins them (finishing the current batch).

    ``pipelined`` False: one thread runs convert -> infer -> publish per batch. True: three stage threads
    (``perception-convert``, ``perception-inference``, ``perception-publish``) joined by
    :class:`ConvertedFrames` (newest wins per camera, replaced frames counted ``stale``) and :class:`Handoff`
    (backpressure), so the next batch is converted and inferred while the last one is published.

    Nothing a batch raises ends a thread (the runner's stages catch every ``Exception``, and the loops
    catch what might escape). If one dies anyway (a ``BaseException``), the death is recorded; :meth:`check`
    restarts it and reports why -- unless deaths happened more than ``max_restarts`` times within
    ``restart_window_s``: then :attr:`failure` says why and it stays down.
    """

    def __init__(self, slots: LatestFrameSlots, runner: PerceptionRunner, max_batch: int,
                 max_restarts: int = 3, restart_window_s: float = 60.0, pipelined: bool = False) -> None:
        self._slots, self._runner, self._max_batch = slots, runner, max_batch
        self._stop = threading.Event()
        self._max_restarts, self._restart_window_s = max_restarts, restart_window_s
        self.pipelined = pipelined
        self.deaths: list[tuple[float, str]] = []  # (monotonic time, why) of every death
        self.failure = ""  # set when it died too often to be restarted again
        self.converted = ConvertedFrames()
        self.inferred = Handoff()
        # thread name -> time.monotonic() of its last loop iteration (at least every 0.1 s when idle, after every
        # batch when busy): a thread stuck in a batch stops beating (the systemd watchdog reads these)
        self.beats: dict[str, float] = {}
        loops: dict[str, Callable[[], None]] = (
            {"perception-convert": self._convert_loop, "perception-inference": self._infer_loop,
             "perception-publish": self._publish_loop} if pipelined else {"perception-inference": self._loop})
        self._loops = loops
        self._threads = {name: self._new_thread(name) for name in loops}

    def _new_thread(self, name: str) -> threading.Thread:
        return threading.Thread(target=self._guard, args=(name,), name=name, daemon=True)

    def start(self) -> None:
        for t in self._threads.values():
            t.start()

    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads.values())

    def _guard(self, name: str) -> None:
        self.beats[name] = time.monotonic()
        try:
            self._loops[name]()
        except BaseException as e:  # recorded and reported: check() restarts the thread
            self.deaths.append((time.monotonic(), f"{name}: {_why(e)}" if self.pipelined else _why(e)))

    def _loop(self) -> None:
        items: list[Pending] = []
        try:
            while not self._stop.is_set():
                self.beats["perception-inference"] = time.monotonic()
                items = self._slots.take(0.1, self._max_batch, self._runner.gather_s(self._max_batch))
                if items and not self._stop.is_set():
                    try:
                        self._runner.process(items)
                    except Exception as e:  # process() raises nothing; a bug there still must not end us
                        self._runner.fail(items, e)
                items = []
        except BaseException as e:
            self._runner.fail(items, e)
            raise

    def _convert_loop(self) -> None:
        while not self._stop.is_set():
            self.beats["perception-convert"] = time.monotonic()
            items = self._slots.take(0.1, self._max_batch, self._runner.gather_s(self._max_batch))
            if not items or self._stop.is_set():
                continue
            try:
                batch = self._runner.convert(items)
            except Exception as e:  # convert() raises nothing; a bug there still must not end us
                self._runner.fail(items, e)
                continue
            for old in self.converted.put(batch):  # newest wins: the replaced frame is a stale drop
                self._runner.stale(old.camera)

    def _infer_loop(self) -> None:
        while not self._stop.is_set():
            self.beats["perception-inference"] = time.monotonic()
            batch = self.converted.take(timeout=0.1, limit=self._max_batch)
            if not batch or self._stop.is_set():
                continue
            try:
                inferred = self._runner.infer(batch)
            except Exception as e:
                self._runner.fail([item for item, _ in batch], e)
                continue
            if inferred and not self.inferred.put(inferred):
                return  # closed while waiting: the node is going away, nothing more is published

    def _publish_loop(self) -> None:
        while not self._stop.is_set():
            self.beats["perception-publish"] = time.monotonic()
            inferred = self.inferred.take(timeout=0.1)
            if not inferred:
                continue
            try:
                self._runner.publish(inferred)
            except Exception as e:
                self._runner.fail([item for item, _ in inferred], e)

    def check(self) -> str | None:
        """Restart dead threads; returns why the last one died (None: all are running, or stopped on purpose).
        When deaths happened more than ``max_restarts`` times within ``restart_window_s``, nothing is
        restarted and :attr:`failure` is set."""
        dead = [n for n, t in self._threads.items() if not t.is_alive() and t.ident]
        if self._stop.is_set() or not dead or self.failure:
            return None
        now = time.monotonic()
        why = self.deaths[-1][1] if self.deaths else "ended without an error"
        recent = [t for t, _ in self.deaths if now - t < self._restart_window_s]
        if len(recent) > self._max_restarts:
            self.failure = (f"the inference worker died {len(recent)} times in {self._restart_window_s:g} s "
                            f"(last: {why})")
            return why
        for name in dead:
            self._threads[name] = self._new_thread(name)
            self._threads[name].start()
        return why

    def health(self) -> tuple[str, str]:
        """("error", why) for ``DEATH_REPORT_S`` after a death or once it failed for good, else ("ok", "")."""
        if self.failure:
            return "error", self.failure
        started = all(t.ident for t in self._threads.values())
        if self.deaths and time.monotonic() - self.deaths[-1][0] < DEATH_REPORT_S:
            state = "restarted" if self.alive() else "not running"
            return "error", (f"inference worker died ({self.deaths[-1][1]}), {state}; "
                             f"{len(self.deaths)} death(s) so far")
        if not self._stop.is_set() and started and not self.alive():
            return "error", "inference worker is not running"
        return "ok", ""

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._runner.close()
        self._slots.close()
        self.converted.close()
        self.inferred.close()
        end = time.monotonic() + timeout
        for t in self._threads.values():
            if t.is_alive():
                t.join(max(0.0, end - time.monotonic()))


class ModelFileWatch:
    """Notices a model file replaced on disk while the node runs on the copy it loaded.

    Policy: keep running the loaded model (the runtimes hold it in memory, so inference is not
    affected) and warn, naming the file, until the node is re-activated (deactivate + activate, or a
    restart), which loads the new file. A reload behind the operator's back could swap in a
    half-copied or incompatible file mid-drive.
    """

    def __init__(self, paths: list[Path]) -> None:
        self._seen = {p: self._signature(p) for p in paths}

    @staticmethod
    def _signature(path: Path) -> tuple[int, int, int] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def changed(self) -> list[str]:
        """The watched files that changed (or vanished / appeared) since loading."""
        return [str(p) for p, sig in self._seen.items() if self._signature(p) != sig]


def model_files(checkpoint: Path | None, onnx: str) -> list[Path]:
    """The files a node's model was loaded from: the checkpoint's weights + metadata, the ONNX model."""
    paths = []
    if checkpoint is not None:
        stem = checkpoint.with_suffix("") if checkpoint.suffix in (".safetensors", ".json") else checkpoint
        paths += [p for p in (stem, stem.with_suffix(".safetensors"), stem.with_suffix(".json")) if p.is_file()]
    if onnx:
        paths.append(Path(onnx))
    return paths
