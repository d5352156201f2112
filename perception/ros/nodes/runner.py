"""Frames in, messages out, off the subscription callbacks. No rclpy here.

- :class:`LatestFrameSlots`: one slot per camera. A subscription callback only drops the message
  into its camera's slot; a newer message replaces one not yet taken (latest frame wins, the
  replaced one is counted as a stale drop). There is never a backlog of old frames. The slots also
  keep the steps between the RECEIVED stamps, so the temporal memory is not reset for a "time jump"
  that is only the node's own stale drops (:mod:`perception.core.temporal`).
- :class:`InferenceWorker`: a thread that takes every filled slot at once (one frame per camera)
  and hands them to the runner as one batch.
- :class:`PerceptionRunner`: converts the messages, runs ``Perceptor.process_batch`` and publishes
  the outputs with the input's header, detections first (the latency-critical output).

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
from perception.core.temporal import ReceivedStamps, StreamSteps
from perception.ros import convert
from perception.ros.errors import RosError
from perception.ros.nodes.params import PerceptionNodeConfig
from perception.ros.nodes.stats import NodeStats

if TYPE_CHECKING:
    from perception.pipeline.perceptor import PerceptionResult, Perceptor
    from perception.ros.nodes.objects_stage import ObjectsResult, ObjectsStage

# output keys (topic names relative to the camera namespace)
DETECTIONS = "detections"
OBJECT_ATTENTION = "detections/attention"
SEGMENTATION = "segmentation"
SEGMENTATION_COLOR = "segmentation/color"
ATTENTION = "attention"
LABEL_INFO = "label_info"
ANNOTATIONS = "detections/annotations"
OBJECTS3D = "objects3d"
OBJECTS_DETECTED = "objects/detected"
OBJECTS_TRACKED = "objects/tracked"
OBJECTS_MARKERS = "objects/markers"

INVALID_FAILOVER_AFTER = 2  # batches in a row with non-finite outputs before moving down the fallback chain
RELOAD_INTERVAL_S = 1.0  # at most one backend reload attempt per this many seconds
DEATH_REPORT_S = 10.0  # a worker death is reported ERROR for this long after its restart

Publish = Callable[[str, str, Any], None]  # (camera, output key, message)


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


@dataclass
class Pending:
    camera: str
    msg: Any  # sensor_msgs/Image or sensor_msgs/CompressedImage
    received: float  # time.monotonic() when the callback ran
    stamp: float | None = None  # the header stamp (s), when the callback read it
    steps: StreamSteps | None = None  # steps between received stamps since the last take (set by take)


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

    def take(self, timeout: float, limit: int = 64) -> list[Pending]:
        """Every filled slot (at most ``limit``, oldest first), emptied; [] after ``timeout`` or on close."""
        with self._cond:
            if not self._closed and not any(self._slots.values()):
                self._cond.wait(timeout)
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
    ) -> None:
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
        self.camera_sizes: dict[str, tuple[int, int]] = {}  # from camera_info: (H, W)
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

    def _infer(self, frames: list[Any]) -> list[tuple[Any, PerceptionResult | None]]:
        from perception.pipeline.perceptor import PipelineError

        with self._lock:
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

        self._busy_since = time.monotonic()
        try:
            results: list[PerceptionResult | None] = list(self.perceptor.process_batch(frames))
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
        """Convert, infer and publish one batch. Raises nothing (every failure drops and counts frames)."""
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
            return
        for item, (_, result) in zip(pending, results):
            if result is None or self._closed:
                continue
            try:
                self._publish_result(item, result)
            except Exception as e:  # a message that cannot be built or sent: that frame is lost, not the node
                self._drop(item.camera, "failed", e, "publishing")

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

    def fail(self, items: list[Pending], e: BaseException) -> None:
        """Count a batch lost to an error that escaped :meth:`process` (never expected)."""
        for item in items:
            self._stats.dropped(item.camera, "failed", _why(e), type(e).__name__)
        self._warn("worker", f"inference worker: batch lost: {_why(e)}")

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
        # latency / age of the 2D outputs (the 3D objects stage reports its own objects.* timings)
        now, age_ms = time.monotonic(), 1e3 * (time.time() - r.stamp)
        track_ids = None
        if self.objects is not None:
            objects = self._objects(item, header, dataclasses.replace(r, detections=det))
            if objects is not None:
                track_ids = self._msgs.track_ids_2d(objects.frame.tracks, len(det))
        if out.annotations:
            self._publish(cam, ANNOTATIONS, self._msgs.detections_to_annotations(det, header, track_ids))
        reason = r.reset.value
        if reason and reason != "first_frame":
            self._info(f"reset:{cam}:{reason}", f"camera {cam!r}: temporal memory reset ({reason}) at {r.stamp:.3f} s")
        size = (r.segmentation.shape if r.segmentation is not None else
                r.attention.shape if r.attention is not None else (0, 0))
        self._stats.processed(cam, 1e3 * (now - item.received), age_ms, r.timings_ms.get("infer", float("nan")),
                              reason, (int(size[0]), int(size[1])))


class InferenceWorker:
    """The thread that feeds slots to the runner; ``stop`` joins it (finishing the current batch).

    Nothing a batch raises ends the thread (:meth:`PerceptionRunner.process` catches every
    ``Exception``, and the loop catches what might escape). If it dies anyway (a ``BaseException``),
    the death is recorded; :meth:`check` restarts it and reports why -- unless it died more than
    ``max_restarts`` times within ``restart_window_s``: then :attr:`failure` says why and it stays down.
    """

    def __init__(self, slots: LatestFrameSlots, runner: PerceptionRunner, max_batch: int,
                 max_restarts: int = 3, restart_window_s: float = 60.0) -> None:
        self._slots, self._runner, self._max_batch = slots, runner, max_batch
        self._stop = threading.Event()
        self._max_restarts, self._restart_window_s = max_restarts, restart_window_s
        self.deaths: list[tuple[float, str]] = []  # (monotonic time, why) of every death
        self.failure = ""  # set when it died too often to be restarted again
        self._thread = self._new_thread()

    def _new_thread(self) -> threading.Thread:
        return threading.Thread(target=self._loop, name="perception-inference", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        items: list[Pending] = []
        try:
            while not self._stop.is_set():
                items = self._slots.take(timeout=0.1, limit=self._max_batch)
                if items and not self._stop.is_set():
                    try:
                        self._runner.process(items)
                    except Exception as e:  # process() raises nothing; a bug there still must not end us
                        self._runner.fail(items, e)
                items = []
        except BaseException as e:  # recorded and reported: check() restarts the thread
            self.deaths.append((time.monotonic(), _why(e)))
            self._runner.fail(items, e)

    def check(self) -> str | None:
        """Restart a dead thread; returns why it died (None: it is running, or stopped on purpose).
        When it died more than ``max_restarts`` times within ``restart_window_s``, it is not restarted and
        :attr:`failure` is set."""
        if self._stop.is_set() or self._thread.is_alive() or not self._thread.ident or self.failure:
            return None
        now = time.monotonic()
        why = self.deaths[-1][1] if self.deaths else "ended without an error"
        recent = [t for t, _ in self.deaths if now - t < self._restart_window_s]
        if len(recent) > self._max_restarts:
            self.failure = (f"the inference worker died {len(recent)} times in {self._restart_window_s:g} s "
                            f"(last: {why})")
            return why
        self._thread = self._new_thread()
        self._thread.start()
        return why

    def health(self) -> tuple[str, str]:
        """("error", why) for ``DEATH_REPORT_S`` after a death or once it failed for good, else ("ok", "")."""
        if self.failure:
            return "error", self.failure
        if self.deaths and time.monotonic() - self.deaths[-1][0] < DEATH_REPORT_S:
            state = "restarted" if self._thread.is_alive() else "not running"
            return "error", (f"inference worker died ({self.deaths[-1][1]}), {state}; "
                             f"{len(self.deaths)} death(s) so far")
        if not self._stop.is_set() and self._thread.ident and not self._thread.is_alive():
            return "error", "inference worker is not running"
        return "ok", ""

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._runner.close()
        self._slots.close()
        if self._thread.is_alive():
            self._thread.join(timeout)


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
