"""Core types <-> rosbags message dataclasses, for bag files (no rclpy).

The same conventions as the live graph (:mod:`perception.ros.convert`): boxes in image pixels,
``ObjectHypothesis.class_id`` = decimal detection id, masks as mono8 images. Ground truth adds
what evaluation needs: ``Detection2D.id`` = ``"<track id>"`` (``"<track id>:ignore"`` for
objects too small or occluded to score) and the hypothesis score = the object's visibility.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from perception.bag import BagError
from perception.bag.typestore import typestore
from perception.core.types import CameraIntrinsics, Detections, GroundTruth

IGNORE_SUFFIX = ":ignore"


def _t(name: str) -> Any:
    return typestore().types[name]


def stamp_ns(msg: Any) -> int:
    """Header stamp of a deserialised message (or of a std_msgs/Header itself) in integer nanoseconds."""
    stamp = getattr(msg, "header", msg).stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def header(stamp: int, frame_id: str) -> Any:
    """std_msgs/Header at ``stamp`` nanoseconds."""
    t = _t("builtin_interfaces/msg/Time")(sec=int(stamp // 1_000_000_000), nanosec=int(stamp % 1_000_000_000))
    return _t("std_msgs/msg/Header")(stamp=t, frame_id=frame_id)


# -- images ----------------------------------------------------------------------------------------
_IMAGE_KINDS: dict[str, tuple[np.dtype[Any], int]] = {
    "rgb8": (np.dtype(np.uint8), 3), "bgr8": (np.dtype(np.uint8), 3), "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1), "32FC1": (np.dtype(np.float32), 1),
}


def image(array: np.ndarray, hdr: Any, encoding: str) -> Any:
    """(H, W[, C]) array -> sensor_msgs/Image (rgb8, bgr8, mono8 or 32FC1)."""
    if encoding not in _IMAGE_KINDS:
        raise BagError(f"cannot write an image with encoding {encoding!r}; use one of {', '.join(_IMAGE_KINDS)}")
    dtype, ch = _IMAGE_KINDS[encoding]
    a = np.ascontiguousarray(array, dtype=dtype)
    if a.shape[2:] != ((ch,) if ch > 1 else ()) or a.ndim != (3 if ch > 1 else 2):
        raise BagError(f"{encoding} image needs {ch} channel(s), got an array of shape {array.shape}")
    return _t("sensor_msgs/msg/Image")(
        header=hdr, height=int(a.shape[0]), width=int(a.shape[1]), encoding=encoding,
        is_bigendian=int(sys.byteorder == "big" and a.itemsize > 1), step=int(a.shape[1] * ch * a.itemsize),
        data=a.reshape(-1).view(np.uint8))


def image_array(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> (H, W[, C]) array, a view of the message data where the rows are packed."""
    kind = _IMAGE_KINDS.get(msg.encoding)
    if kind is None:
        raise BagError(f"image encoding {msg.encoding!r} unsupported here; use one of {', '.join(_IMAGE_KINDS)}")
    dtype, ch = kind
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    row = w * ch * dtype.itemsize
    buf = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
    if step < row or buf.size < step * h:
        raise BagError(f"{msg.encoding} image {w}x{h} step {step}: {buf.size} bytes is too few (truncated message)")
    rows = buf[: step * h].reshape(h, step)[:, :row]
    if not rows.flags.c_contiguous:
        rows = np.ascontiguousarray(rows)
    if bool(msg.is_bigendian) != (sys.byteorder == "big") and dtype.itemsize > 1:
        dtype = dtype.newbyteorder()
    arr = rows.view(dtype)
    return arr.reshape(h, w, ch) if ch > 1 else arr.reshape(h, w)


def compressed_image(rgb: np.ndarray, hdr: Any, quality: int = 90) -> Any:
    """(H, W, 3) RGB -> sensor_msgs/CompressedImage (JPEG)."""
    import cv2

    ok, enc = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise BagError(f"could not JPEG-encode an image of shape {rgb.shape}")
    return _t("sensor_msgs/msg/CompressedImage")(header=hdr, format="jpeg", data=enc.reshape(-1))


def camera_info(intr: CameraIntrinsics, hdr: Any) -> Any:
    roi = _t("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return _t("sensor_msgs/msg/CameraInfo")(
        header=hdr, height=int(intr.height), width=int(intr.width), distortion_model="plumb_bob",
        d=np.zeros(5), k=np.asarray(intr.K, np.float64).ravel(), r=np.eye(3).ravel(),
        p=np.array([intr.fx, 0.0, intr.cx, 0.0, 0.0, intr.fy, intr.cy, 0.0, 0.0, 0.0, 1.0, 0.0]),
        binning_x=0, binning_y=0, roi=roi)


def pointcloud2(points: np.ndarray, hdr: Any) -> Any:
    """(N, 4) float32 x, y, z, intensity -> unorganised sensor_msgs/PointCloud2 (16-byte points)."""
    pts = np.ascontiguousarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 4:
        raise BagError(f"points must be (N, 4) x, y, z, intensity, got {points.shape}")
    field = _t("sensor_msgs/msg/PointField")
    names = (("x", 0), ("y", 4), ("z", 8), ("intensity", 12))
    fields = [field(name=n, offset=o, datatype=7, count=1) for n, o in names]  # 7: FLOAT32
    return _t("sensor_msgs/msg/PointCloud2")(
        header=hdr, height=1, width=len(pts), fields=fields, is_bigendian=sys.byteorder == "big", point_step=16,
        row_step=16 * len(pts), data=pts.reshape(-1).view(np.uint8), is_dense=True)


# -- detections ------------------------------------------------------------------------------------
def _hypothesis(class_id: int, score: float) -> Any:
    pose = _t("geometry_msgs/msg/PoseWithCovariance")(pose=_pose(0.0, 0.0, 0.0), covariance=np.zeros(36))
    return _t("vision_msgs/msg/ObjectHypothesisWithPose")(
        hypothesis=_t("vision_msgs/msg/ObjectHypothesis")(class_id=str(int(class_id)), score=float(score)), pose=pose)


def _pose(x: float, y: float, z: float, yaw_about_y: float = 0.0) -> Any:
    p = _t("geometry_msgs/msg/Point")(x=float(x), y=float(y), z=float(z))
    q = _t("geometry_msgs/msg/Quaternion")(x=0.0, y=math.sin(yaw_about_y / 2), z=0.0, w=math.cos(yaw_about_y / 2))
    return _t("geometry_msgs/msg/Pose")(position=p, orientation=q)


def detection2d_array(det: Detections, hdr: Any, ids: list[str] | None = None) -> Any:
    """Core detections -> vision_msgs/Detection2DArray (one hypothesis each; ``ids`` fill Detection2D.id)."""
    boxes = np.asarray(det.boxes, np.float64).reshape(-1, 4)
    out = []
    for i, b in enumerate(boxes):
        centre = _t("vision_msgs/msg/Pose2D")(
            position=_t("vision_msgs/msg/Point2D")(x=float(b[0] + b[2]) / 2, y=float(b[1] + b[3]) / 2), theta=0.0)
        bbox = _t("vision_msgs/msg/BoundingBox2D")(center=centre, size_x=float(b[2] - b[0]), size_y=float(b[3] - b[1]))
        out.append(_t("vision_msgs/msg/Detection2D")(
            header=hdr, results=[_hypothesis(int(det.class_ids[i]), float(det.scores[i]))], bbox=bbox,
            id=ids[i] if ids else ""))
    return _t("vision_msgs/msg/Detection2DArray")(header=hdr, detections=out)


def ground_truth_2d(gt: GroundTruth, hdr: Any) -> Any:
    """Ground truth -> Detection2DArray: id = track id (+ ``:ignore``), score = visibility."""
    n = len(gt)
    vis = np.asarray(gt.visibility, np.float32) if len(gt.visibility) == n else np.ones(n, np.float32)
    ignore = np.asarray(gt.ignore, bool) if len(gt.ignore) == n else np.zeros(n, bool)
    ids = [f"{int(t)}{IGNORE_SUFFIX if ig else ''}" for t, ig in zip(np.asarray(gt.track_ids).tolist(), ignore)]
    det = Detections(np.asarray(gt.boxes, np.float32).reshape(-1, 4), vis, np.asarray(gt.class_ids, np.int64))
    return detection2d_array(det, hdr, ids)


def ground_truth_3d(gt: GroundTruth, hdr: Any) -> Any:
    """3D ground truth (camera optical frame) -> Detection3DArray; size = (length, height, width) along the
    box's x (heading), y (down) and z axes after the yaw rotation about the optical y axis."""
    out = []
    for i, b in enumerate(np.asarray(gt.boxes3d, np.float64).reshape(-1, 7)):
        size = _t("geometry_msgs/msg/Vector3")(x=float(b[3]), y=float(b[5]), z=float(b[4]))
        bbox = _t("vision_msgs/msg/BoundingBox3D")(center=_pose(b[0], b[1], b[2], float(b[6])), size=size)
        out.append(_t("vision_msgs/msg/Detection3D")(
            header=hdr, results=[_hypothesis(int(gt.class_ids[i]), 1.0)], bbox=bbox, id=str(int(gt.track_ids[i]))))
    return _t("vision_msgs/msg/Detection3DArray")(header=hdr, detections=out)


def detections_from_msg(msg: Any) -> Detections:
    """vision_msgs/Detection2DArray -> core Detections (best hypothesis per detection)."""
    n = len(msg.detections)
    boxes = np.zeros((n, 4), np.float32)
    scores = np.zeros(n, np.float32)
    ids = np.zeros(n, np.int64)
    for i, d in enumerate(msg.detections):
        cx, cy = d.bbox.center.position.x, d.bbox.center.position.y
        hw, hh = 0.5 * d.bbox.size_x, 0.5 * d.bbox.size_y
        boxes[i] = (cx - hw, cy - hh, cx + hw, cy + hh)
        if d.results:
            best = max(d.results, key=lambda r: r.hypothesis.score)
            scores[i] = best.hypothesis.score
            try:
                ids[i] = int(best.hypothesis.class_id)
            except ValueError as e:
                raise BagError(f"detection {i}: class_id {best.hypothesis.class_id!r} is not a numeric id") from e
    return Detections(boxes, scores, ids)


def ground_truth_from_msg(msg: Any) -> GroundTruth:
    """Inverse of :func:`ground_truth_2d` (a plain Detection2DArray gives visibility 1, nothing ignored)."""
    det = detections_from_msg(msg)
    tracks, ignore = [], []
    for i, d in enumerate(msg.detections):
        text = str(d.id)
        ignore.append(text.endswith(IGNORE_SUFFIX))
        try:
            tracks.append(int(text.removesuffix(IGNORE_SUFFIX)))
        except ValueError:
            tracks.append(i + 1)
    return GroundTruth(boxes=det.boxes, class_ids=det.class_ids, track_ids=np.asarray(tracks, np.int64),
                       visibility=det.scores, ignore=np.asarray(ignore, bool))


def rgb_of(msg: Any, msgtype: str) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array of a deserialised sensor_msgs/Image (rgb8, bgr8, mono8) or
    CompressedImage (JPEG/PNG)."""
    import cv2

    if msgtype == "sensor_msgs/msg/CompressedImage":
        bgr = cv2.imdecode(np.asarray(msg.data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise BagError(f"compressed image ({msg.format}) cannot be decoded: corrupt data")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    arr = image_array(msg)
    if msg.encoding == "rgb8":
        return np.ascontiguousarray(arr)
    if msg.encoding == "bgr8":
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    if msg.encoding in ("mono8", "8UC1"):
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    raise BagError(f"image encoding {msg.encoding!r} is not a colour or grey image")
