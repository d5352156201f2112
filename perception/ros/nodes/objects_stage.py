"""The perception node's 3D objects stage: sensor synchronisation + :class:`ObjectPipeline` per camera.

No rclpy here (message classes only). The node's callbacks feed it (executor thread, cheap):
``on_scan`` (PointCloud2, kept unparsed in a short per-LiDAR :class:`StampBuffer`), ``on_odometry``
(nav_msgs/Odometry -> ``odom_T_base`` by stamp), ``on_tf_static`` (:class:`StaticTransforms`) and
``on_camera_info`` (intrinsics). After the 2D inference of a camera's frame the inference worker
calls :meth:`ObjectsStage.process`, which

1. takes the ego pose at the image stamp from the odometry: interpolated between the messages either
   side of it, else the nearest (within ``max_odom_gap_s``; none: no 3D objects for that frame,
   counted ``no_odom``),
2. finds ``base_T_cam`` (and ``base_T_lidar``) on /tf_static, else from the parameters (none: counted
   ``no_tf``, no 3D objects),
3. matches the scan whose stamp is nearest the image's within ``max_sync_s``, waiting at most until
   ``max_wait_s`` after the image arrived for one that may still come (a bounded wait: it never waits
   once a scan newer than the window is there); none: the frame is ranged from the camera alone and
   counted ``no_scan``,
4. runs the camera's :class:`ObjectPipeline` (fusion in base_link, tracking in odom).

Resets: the tracks go with the 2D stage's temporal memory. A frame whose ``PerceptionResult.reset``
says the stream was cut (scene cut, time jump or going backwards, a requested reset) resets the
camera's tracker even when that frame itself gets no 3D objects (no odometry, transform or
camera_info yet): the reason is kept and handed to the next frame that reaches the pipeline, so
tracks never bridge a cut and a bag loop never turns into a huge velocity.

The runner turns the :class:`ObjectsResult` into messages (:mod:`perception.ros.objects_msgs`).
:meth:`ObjectsStage.snapshot` gives the counters and ``objects.*`` timings for /diagnostics.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from perception.core import transforms
from perception.core.temporal import ResetReason
from perception.core.types import CameraIntrinsics
from perception.fusion import Extrinsics
from perception.pipeline.objects import ObjectFrame, ObjectPipeline, ObjectPipelineConfig
from perception.pipeline.perceptor import PerceptionResult
from perception.ros import convert, frames
from perception.ros.nodes.params import ObjectsConfig, matrix_from_list

T = TypeVar("T")
SKIP_KINDS = ("no_camera_info", "no_odom", "no_tf", "failed")  # the frame got no 3D objects
CUTS = (ResetReason.TIME_BACKWARDS, ResetReason.TIME_JUMP, ResetReason.SCENE_CUT, ResetReason.REQUESTED)
TIMING_KEYS = ("sync_wait", "fusion", "tracking", "total")


class StampBuffer(Generic[T]):
    """The last ``maxlen`` stamped items of one stream (thread-safe), matched by nearest stamp.

    Items are expected in stamp order (a sensor's stream); one older than the newest is still kept
    (sorted in), so a reordered message is not lost."""

    def __init__(self, maxlen: int = 8) -> None:
        self._items: deque[tuple[float, T]] = deque(maxlen=maxlen)
        self._cond = threading.Condition()

    def add(self, stamp: float, item: T) -> None:
        with self._cond:
            if self._items and stamp < self._items[-1][0]:
                items = sorted([*self._items, (stamp, item)], key=lambda x: x[0])
                self._items.clear()
                self._items.extend(items[-(self._items.maxlen or len(items)):])
            else:
                self._items.append((stamp, item))
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._items)

    def newest(self) -> float | None:
        with self._cond:
            return self._items[-1][0] if self._items else None

    def _nearest(self, stamp: float, max_dt: float) -> tuple[float, T] | None:
        best = min(self._items, key=lambda x: abs(x[0] - stamp), default=None)
        return best if best is not None and abs(best[0] - stamp) <= max_dt else None

    def nearest(self, stamp: float, max_dt: float) -> tuple[float, T] | None:
        """The item whose stamp is nearest ``stamp`` within ``max_dt`` (ties: the older), or None."""
        with self._cond:
            return self._nearest(stamp, max_dt)

    def bracket(self, stamp: float) -> tuple[tuple[float, T] | None, tuple[float, T] | None]:
        """The newest item at or before ``stamp`` and the oldest after it (None where there is none)."""
        with self._cond:
            before = [x for x in self._items if x[0] <= stamp]
            after = [x for x in self._items if x[0] > stamp]
            return (before[-1] if before else None), (after[0] if after else None)

    def wait_nearest(self, stamp: float, max_dt: float, deadline: float,
                     clock: Callable[[], float] = time.monotonic) -> tuple[float, T] | None:  # fmt: skip
        """:meth:`nearest`, waiting until ``deadline`` (``clock`` time) while a match may still come:
        no item yet newer than ``stamp + max_dt`` (past that, a later item can only be farther). A
        match that a later item could still beat (newest item older than ``stamp``) waits too."""
        with self._cond:
            while True:
                match = self._nearest(stamp, max_dt)
                newest = self._items[-1][0] if self._items else None
                settled = newest is not None and newest >= stamp
                if (match is not None and settled) or (newest is not None and newest > stamp + max_dt):
                    return match
                left = deadline - clock()
                if left <= 0.0:
                    return match
                self._cond.wait(left)


def pose_at(buffer: StampBuffer[np.ndarray], stamp: float, max_gap: float) -> np.ndarray | None:
    """The odometry pose at ``stamp``: interpolated between the poses either side of it when both lie
    within ``max_gap``, else the nearest within ``max_gap``, else None."""
    before, after = buffer.bracket(stamp)
    if before is not None and after is not None and stamp - before[0] <= max_gap and after[0] - stamp <= max_gap:
        return transforms.interpolate_pose(before[1], after[1], (stamp - before[0]) / (after[0] - before[0]))
    match = buffer.nearest(stamp, max_gap)
    return None if match is None else match[1]


@dataclass(frozen=True)
class Scan:
    frame_id: str
    msg: Any  # sensor_msgs/PointCloud2, parsed on the worker thread when matched


@dataclass(frozen=True)
class ObjectsResult:
    """One frame's 3D output: the pipeline's :class:`ObjectFrame`, the ego pose used and the tracker session."""

    frame: ObjectFrame
    odom_T_base: np.ndarray
    session: str
    scan_dt: float | None  # image stamp - scan stamp (s); None: camera-only


class _CameraCounters:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.timings: dict[str, deque[float]] = {k: deque(maxlen=300) for k in TIMING_KEYS}
        self.last_skip = ""


class ObjectsStage:
    """See the module doc. One per node activation; ``cameras`` are the node's camera namespaces."""

    def __init__(self, cameras: tuple[str, ...], config: ObjectsConfig,
                 pipeline: ObjectPipelineConfig | None = None, scan_buffer: int = 8) -> None:  # fmt: skip
        self.config = config
        self.cameras = cameras
        self.static = frames.StaticTransforms()
        # one buffer per LiDAR topic; cameras sharing an absolute topic share its buffer
        self.lidar_topics = {cam: config.lidar_topic_of(cam) for cam in cameras}
        self.scans: dict[str, StampBuffer[Scan]] = {t: StampBuffer(scan_buffer)
                                                    for t in set(self.lidar_topics.values())}  # fmt: skip
        self.odometry: StampBuffer[np.ndarray] = StampBuffer(64)
        self.intrinsics: dict[str, CameraIntrinsics] = {}
        self.pipelines = {cam: ObjectPipeline(pipeline) for cam in cameras}
        self._fallback_cam = matrix_from_list(config.base_T_cam, "objects.base_T_cam") if config.base_T_cam else None
        self._fallback_lidar = (matrix_from_list(config.base_T_lidar, "objects.base_T_lidar")
                                if config.base_T_lidar else None)  # fmt: skip
        self._lock = threading.Lock()
        self._counters = {cam: _CameraCounters() for cam in cameras}
        self._reported: dict[str, Counter[str]] = {cam: Counter() for cam in cameras}
        self._pending_reset: dict[str, ResetReason] = {}  # a cut seen on a frame that got no 3D objects

    # -- callbacks (executor thread) -----------------------------------------------------------
    def on_scan(self, topic: str, msg: Any) -> None:
        self.scans[topic].add(convert.stamp_to_seconds(msg.header.stamp), Scan(msg.header.frame_id, msg))

    def on_odometry(self, msg: Any) -> None:
        self.odometry.add(convert.stamp_to_seconds(msg.header.stamp), frames.odometry_to_matrix(msg))

    def on_tf_static(self, msg: Any) -> None:
        for t in msg.transforms:
            self.static.add_msg(t)

    def on_camera_info(self, cam: str, msg: Any) -> None:
        self.intrinsics[cam] = convert.camera_info_to_intrinsics(msg)

    def reset(self, camera: str | None = None) -> None:
        for cam, p in self.pipelines.items():
            if camera is None or cam == camera:
                p.reset()
                self._pending_reset.pop(cam, None)

    # -- worker thread -------------------------------------------------------------------------
    def _count(self, cam: str, kind: str, why: str = "") -> None:
        with self._lock:
            c = self._counters[cam]
            c.counts[kind] += 1
            if why:
                c.last_skip = why

    def _extrinsic(self, frame_id: str, fallback: np.ndarray | None) -> np.ndarray | None:
        found = self.static.lookup(self.config.base_frame, frame_id)
        return found if found is not None else fallback

    def process(self, cam: str, stamp: float, frame_id: str, result: PerceptionResult,
                received: float) -> ObjectsResult | None:  # fmt: skip
        """3D objects of one camera frame (see the module doc); None when the frame cannot have any
        (counted). ``received``: ``time.monotonic()`` when the image arrived (the wait is bounded from it).
        Raises what the pipeline raises (the runner counts it as a failed frame)."""
        cfg = self.config
        self._count(cam, "frames")
        if result.reset in CUTS:
            self._pending_reset[cam] = result.reset  # handed to the pipeline with this or a later frame
        intr = self.intrinsics.get(cam)
        if intr is None:
            self._count(cam, "no_camera_info", f"no camera_info received on {cam}/camera_info")
            return None
        odom = pose_at(self.odometry, stamp, cfg.max_odom_gap_s)
        if odom is None:
            newest = self.odometry.newest()
            self._count(cam, "no_odom", "no odometry within objects.max_odom_gap_s of the image stamp"
                        + ("" if newest is None else f" (newest {stamp - newest:+.3f} s off)"))
            return None
        base_T_cam = self._extrinsic(frame_id, self._fallback_cam)
        if base_T_cam is None:
            self._count(cam, "no_tf", f"no transform {cfg.base_frame} -> {frame_id!r} on /tf_static and no "
                        "objects.base_T_cam")
            return None
        t0 = time.perf_counter()
        match = self.scans[self.lidar_topics[cam]].wait_nearest(stamp, cfg.max_sync_s, received + cfg.max_wait_s)
        wait_ms = 1e3 * (time.perf_counter() - t0)
        points, base_T_lidar, scan_dt = None, base_T_cam, None
        if match is None:
            self._count(cam, "no_scan")
        else:
            lidar = self._extrinsic(match[1].frame_id, self._fallback_lidar)
            if lidar is None:
                self._count(cam, "no_scan")
                self._count(cam, "no_tf_lidar", f"no transform {cfg.base_frame} -> {match[1].frame_id!r} on "
                            "/tf_static and no objects.base_T_lidar: camera-only")
            else:
                points, base_T_lidar, scan_dt = convert.pointcloud2_to_points(match[1].msg), lidar, stamp - match[0]
        pipeline = self.pipelines[cam]
        cut = self._pending_reset.pop(cam, None)
        if cut is not None and result.reset not in CUTS:
            result = dataclasses.replace(result, reset=cut)
        try:
            out = pipeline.process(result, points, intr, Extrinsics(base_T_lidar, base_T_cam), odom)
        except Exception as e:
            self._count(cam, "failed", f"{type(e).__name__}: {e}")
            raise
        with self._lock:
            c = self._counters[cam]
            c.counts["lidar" if points is not None else "camera_only"] += 1
            c.counts["published"] += 1
            c.timings["sync_wait"].append(wait_ms)
            for k in ("fusion", "tracking", "total"):
                c.timings[k].append(out.timings_ms[k])
        return ObjectsResult(out, odom, pipeline.tracker.session, scan_dt)

    # -- diagnostics ---------------------------------------------------------------------------
    def snapshot(self, cam: str) -> tuple[dict[str, Any], str]:
        """(``objects_*`` values for /diagnostics, a problem text or "") of one camera. A problem: frames
        that got no 3D objects since the last snapshot (no odometry / transform / camera_info, failures)."""
        with self._lock:
            c = self._counters[cam]
            values: dict[str, Any] = {f"objects_{k}": c.counts[k] for k in
                                      ("frames", "published", "lidar", "camera_only", "no_scan", *SKIP_KINDS,
                                       "no_tf_lidar")}  # fmt: skip
            for k, d in c.timings.items():
                values[f"objects.{k}_p50_ms"] = float(np.percentile(np.fromiter(d, float), 50)) if d else float("nan")
            values["objects.total_p95_ms"] = (float(np.percentile(np.fromiter(c.timings["total"], float), 95))
                                              if c.timings["total"] else float("nan"))  # fmt: skip
            values["objects_tracks"] = len(self.pipelines[cam].tracker.tracks)
            new = {k: c.counts[k] - self._reported[cam][k] for k in (*SKIP_KINDS, "no_tf_lidar")}
            self._reported[cam] = Counter(c.counts)
            values["objects_last_skip"] = c.last_skip or "none"
        skipped = {k: n for k, n in new.items() if n > 0}
        problem = ""
        if skipped:
            problem = ("3D objects skipped for " + ", ".join(f"{n} frame(s) ({k})" for k, n in skipped.items())
                       + f": {c.last_skip}")
        return values, problem

