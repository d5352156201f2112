"""Results out: the messages of one answered frame, built and published with the input's header. No rclpy here.

Detections go first (the latency-critical output). Outputs are demand-driven: an image output nobody
subscribes to (``wants``) is neither built nor published. With ``output.mask_resolution: network`` masks and
attention go out at the network's output size with a matching ``<cam>/mask/camera_info`` (:func:`network_masks`,
:func:`perception.ros.convert.scaled_camera_info`). With ``objects.enabled`` the 3D objects stage runs per
frame here; its failure costs the frame its 3D objects only.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from perception.core.classes import semantic_palette
from perception.ros import convert
from perception.ros.nodes.params import PerceptionNodeConfig
from perception.ros.nodes.queues import Pending
from perception.ros.nodes.stats import NodeStats
from perception.ros.nodes.throttle import ThrottledLog, why

if TYPE_CHECKING:
    from perception.pipeline.perceptor import PerceptionResult
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

Publish = Callable[[str, str, Any], None]  # (camera, output key, message)
Wants = Callable[[str, str], bool]  # (camera, output key) -> someone subscribes to it
IMAGE_OUTPUTS = (SEGMENTATION, SEGMENTATION_COLOR, ATTENTION)  # built only when someone subscribes


def network_masks(r: PerceptionResult) -> tuple[np.ndarray | None, np.ndarray | None, tuple[float, float]]:
    """(segmentation, attention, (sx, sy)) at the network's resolution, letterbox padding cropped, covering
    the whole input image; (sx, sy) = input pixels per mask pixel (the Perceptor's low-resolution maps,
    computed without the input-resolution ones)."""
    sx, sy = r.lowres_scale
    return r.segmentation_lowres, r.attention_lowres, (float(sx), float(sy))



class OutputPublisher:
    """Builds and publishes the messages of answered frames (the worker's publish stage).

    ``camera_sizes`` / ``camera_infos`` are the runner's (filled from camera_info by the node)."""

    def __init__(self, config: PerceptionNodeConfig, publish: Publish, stats: NodeStats, wants: Wants,
                 warn: ThrottledLog, info: ThrottledLog, objects: ObjectsStage | None,
                 camera_sizes: dict[str, tuple[int, int]], camera_infos: dict[str, Any]) -> None:
        self.config, self.objects = config, objects
        self._publish, self._stats, self._wants = publish, stats, wants
        self._warn, self._info = warn, info
        self._class_ids = config.detection.class_ids
        self._palette = semantic_palette()
        self._network_masks = config.output.mask_resolution == "network"
        self.camera_sizes, self.camera_infos = camera_sizes, camera_infos
        self._msgs: Any = None  # perception.ros.objects_msgs, imported now (0.5 s: scipy), not on the first frame
        if config.output.annotations or objects is not None:
            from perception.ros import objects_msgs

            self._msgs = objects_msgs

    def _objects(self, item: Pending, header: Any, r: PerceptionResult) -> ObjectsResult | None:
        """The 3D objects stage for one frame and its messages (the detections ``r`` holds are the published
        ones); a failure there costs the frame its 3D objects only (counted, logged), not its 2D outputs."""
        from std_msgs.msg import Header

        om, stage, cam = self._msgs, self.objects, item.camera
        assert stage is not None
        try:
            res = stage.process(cam, r.stamp, header.frame_id, r, item.received)
        except Exception as e:  # counted by the stage as objects_failed
            self._warn(f"objects:{cam}", f"camera {cam!r}: 3D objects failed for a frame: {why(e)}")
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
            self._warn(f"objects:{cam}", f"camera {cam!r}: 3D object messages failed: {why(e)}")
            return None
        return res

    def result(self, item: Pending, r: PerceptionResult) -> None:
        """Every enabled and wanted output of one answered frame (detections first), then its stats."""
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

