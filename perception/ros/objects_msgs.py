"""3D objects and tracks -> ROS messages: pure functions, testable without a ROS graph.

Inputs are what fusion and tracking produce (:class:`perception.core.boxes3d.Boxes3D` in base_link,
:class:`perception.tracking.TrackedObject` in odom or, after ``.transformed(base_T_odom, ...)``,
base_link). Outputs, for the consumers a planner stack and its viewers have:

- ``vision_msgs/Detection3DArray`` (generic consumers): box pose + size, one hypothesis
  (``class_id`` = the decimal detection id, as LabelInfo lists them), ``id`` = the track id when tracked;
- ``autoware_perception_msgs/DetectedObjects`` and ``TrackedObjects`` (Autoware planners and tools):
  ``object_id`` = ``unique_identifier_msgs/UUID`` from :func:`perception.tracking.track_uuid`,
  Autoware class labels, shape BOUNDING_BOX or CYLINDER, pose / twist with covariance, twist in the
  object's own frame (Autoware's convention);
- ``visualization_msgs/MarkerArray`` (RViz, Foxglove 3D): a DELETEALL first so stale markers
  vanish, then box edges (LINE_LIST), id labels (TEXT_VIEW_FACING) and velocity arrows (ARROW);
- ``foxglove_msgs/ImageAnnotations`` (Foxglove Image panel): 2D boxes and labels, stamped with the image.

Every message takes the ``header`` passed in; the objects must be in ``header.frame_id``
(:class:`RosError` otherwise), so a consumer never reads odom poses as base_link ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from autoware_perception_msgs.msg import (
    DetectedObject,
    DetectedObjectKinematics,
    DetectedObjects,
    ObjectClassification,
    Shape,
    TrackedObjectKinematics,
    TrackedObjects,
)
from autoware_perception_msgs.msg import TrackedObject as AwTrackedObject
from foxglove_msgs.msg import Color, ImageAnnotations, Point2, PointsAnnotation, TextAnnotation
from geometry_msgs.msg import Point, Pose, PoseWithCovariance, Quaternion, TwistWithCovariance, Vector3
from std_msgs.msg import ColorRGBA, Header
from unique_identifier_msgs.msg import UUID
from vision_msgs.msg import (
    BoundingBox3D,
    Detection3D,
    Detection3DArray,
    ObjectHypothesis,
    ObjectHypothesisWithPose,
)
from visualization_msgs.msg import Marker, MarkerArray

from perception.core.boxes3d import Boxes3D
from perception.core.classes import DETECTION_CLASSES, DETECTION_NAMES, detection_id
from perception.core.types import Detections
from perception.fusion.config import default_classes
from perception.ros.errors import RosError
from perception.tracking import TrackedObject, track_uuid

# detection id -> Autoware ObjectClassification label (traffic signs are no Autoware object class)
AUTOWARE_LABELS: dict[int, int] = {
    detection_id("car"): ObjectClassification.CAR,
    detection_id("truck"): ObjectClassification.TRUCK,
    detection_id("pedestrian"): ObjectClassification.PEDESTRIAN,
    detection_id("cyclist"): ObjectClassification.BICYCLE,
}
# classes fusion fits as cylinders (people): Shape.CYLINDER, dimensions (diameter, diameter, height)
CYLINDER_CLASSES: frozenset[int] = frozenset(k for k, m in default_classes().items() if m.shape == "cylinder")
MIN_ARROW_SPEED = 0.2  # m/s: slower tracks get no velocity arrow
_COLORS = {c.id: tuple(v / 255.0 for v in c.color) for c in DETECTION_CLASSES}
# the 12 edges of a box as pairs of corner indices (corners: bit 0 = +x, bit 1 = +y, bit 2 = +z)
_EDGES = ((0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7))


# -- small builders --------------------------------------------------------------------------------
def yaw_quaternion(yaw: float) -> Quaternion:
    return Quaternion(x=0.0, y=0.0, z=math.sin(0.5 * yaw), w=math.cos(0.5 * yaw))


def _pose(center: np.ndarray, yaw: float) -> Pose:
    c = np.asarray(center, np.float64)
    return Pose(position=Point(x=float(c[0]), y=float(c[1]), z=float(c[2])), orientation=yaw_quaternion(float(yaw)))


def _cov6(position_cov: np.ndarray, yaw_var: float = 0.0) -> np.ndarray:
    """6x6 (x, y, z, roll, pitch, yaw) covariance, row-major flat as geometry_msgs holds it."""
    out = np.zeros((6, 6))
    out[:3, :3] = np.asarray(position_cov, np.float64)
    out[5, 5] = float(yaw_var)
    return out.reshape(36)


def _class_name(class_id: int) -> str:
    return DETECTION_NAMES[class_id] if 0 <= class_id < len(DETECTION_NAMES) else str(class_id)


def _check_frame(frames: Sequence[str], header: Header, what: str) -> None:
    bad = sorted({f for f in frames if f != header.frame_id})
    if bad:
        raise RosError(f"{what} are in frame(s) {bad} but the header says {header.frame_id!r}: transform them "
                       f"first (TrackedObject.transformed) or pass a header with their frame")  # fmt: skip


def autoware_shape(class_id: int, size: np.ndarray) -> Shape:
    """Shape for one object: CYLINDER (diameter = the larger footprint side) for people, else BOUNDING_BOX."""
    length, width, height = (float(v) for v in size)
    if class_id in CYLINDER_CLASSES:
        d = max(length, width)
        return Shape(type=Shape.CYLINDER, dimensions=Vector3(x=d, y=d, z=height))
    return Shape(type=Shape.BOUNDING_BOX, dimensions=Vector3(x=length, y=width, z=height))


def autoware_classification(class_id: int, probability: float) -> list[ObjectClassification]:
    label = AUTOWARE_LABELS.get(int(class_id), ObjectClassification.UNKNOWN)
    return [ObjectClassification(label=label, probability=float(np.clip(probability, 0.0, 1.0)))]


# -- vision_msgs/Detection3DArray --------------------------------------------------------------------
def _detection3d(header: Header, center: np.ndarray, size: np.ndarray, yaw: float, cov: np.ndarray, class_id: int,
                 score: float, det_id: str) -> Detection3D:  # fmt: skip
    pose = _pose(center, yaw)
    hyp = ObjectHypothesisWithPose()
    hyp.hypothesis = ObjectHypothesis(class_id=str(int(class_id)), score=float(score))
    hyp.pose = PoseWithCovariance(pose=pose, covariance=cov)
    s = np.asarray(size, np.float64)
    bbox = BoundingBox3D(center=pose, size=Vector3(x=float(s[0]), y=float(s[1]), z=float(s[2])))
    return Detection3D(header=header, results=[hyp], bbox=bbox, id=det_id)


def objects_to_detection3d_array(objects: Boxes3D, header: Header,
                                 track_ids: Sequence[int | None] | None = None) -> Detection3DArray:  # fmt: skip
    """Fused objects (base_link) -> Detection3DArray; ``track_ids[i]`` (None: untracked) fills ``id``."""
    n = len(objects)
    if track_ids is not None and len(track_ids) != n:
        raise RosError(f"track_ids has {len(track_ids)} entries for {n} objects")
    out = Detection3DArray(header=header)
    ids = ["" if track_ids is None or track_ids[i] is None else str(track_ids[i]) for i in range(n)]
    out.detections = [
        _detection3d(header, objects.centers[i], objects.sizes[i], float(objects.yaws[i]),
                     _cov6(objects.position_covs[i]), int(objects.class_ids[i]), float(objects.scores[i]), ids[i])
        for i in range(n)
    ]  # fmt: skip
    return out


def tracks_to_detection3d_array(tracks: Sequence[TrackedObject], header: Header) -> Detection3DArray:
    """Tracks -> Detection3DArray: ``id`` = the track id, score = the class probability x existence probability."""
    _check_frame([t.frame_id for t in tracks], header, "tracks")
    out = Detection3DArray(header=header)
    out.detections = [
        _detection3d(header, t.position, t.dimensions, t.yaw, t.pose_covariance().reshape(36), t.class_id,
                     t.class_probability * t.existence_probability, str(int(t.track_id)))
        for t in tracks
    ]  # fmt: skip
    return out


# -- autoware_perception_msgs ------------------------------------------------------------------------
def objects_to_detected_objects(objects: Boxes3D, header: Header) -> DetectedObjects:
    """Fused objects (base_link) -> Autoware DetectedObjects. The detection score is both the existence
    and the class probability; box headings from an L-shape fit are known up to a sign (SIGN_UNKNOWN),
    cylinders have none (UNAVAILABLE); there is no twist from one frame."""
    out = DetectedObjects(header=header)
    objs = []
    for i in range(len(objects)):
        cid, score = int(objects.class_ids[i]), float(objects.scores[i])
        kin = DetectedObjectKinematics()
        kin.pose_with_covariance = PoseWithCovariance(pose=_pose(objects.centers[i], float(objects.yaws[i])),
                                                      covariance=_cov6(objects.position_covs[i]))  # fmt: skip
        kin.has_position_covariance = True
        kin.orientation_availability = (DetectedObjectKinematics.UNAVAILABLE if cid in CYLINDER_CLASSES
                                        else DetectedObjectKinematics.SIGN_UNKNOWN)  # fmt: skip
        kin.has_twist = False
        kin.has_twist_covariance = False
        objs.append(DetectedObject(existence_probability=float(np.clip(score, 0.0, 1.0)),
                                   classification=autoware_classification(cid, score), kinematics=kin,
                                   shape=autoware_shape(cid, objects.sizes[i])))  # fmt: skip
    out.objects = objs
    return out


def _orientation_availability(t: TrackedObject, body_vx: float) -> int:
    if not t.is_stationary and body_vx > 0.0:
        return TrackedObjectKinematics.AVAILABLE  # moving forwards along the heading: its sign is known
    if t.class_id in CYLINDER_CLASSES:
        return TrackedObjectKinematics.UNAVAILABLE
    return TrackedObjectKinematics.SIGN_UNKNOWN


def tracks_to_tracked_objects(tracks: Sequence[TrackedObject], header: Header, session: str) -> TrackedObjects:
    """Tracks -> Autoware TrackedObjects. ``object_id`` is :func:`track_uuid` (``session``: the tracker's
    :attr:`~perception.tracking.MultiObjectTracker.session`); the twist is in the object's frame (x along
    the heading) with its covariance, angular z = the yaw rate; acceleration is not estimated (zero)."""
    _check_frame([t.frame_id for t in tracks], header, "tracks")
    out = TrackedObjects(header=header)
    objs = []
    for t in tracks:
        v_body, v_cov = t.twist_in_body()
        kin = TrackedObjectKinematics()
        kin.pose_with_covariance = PoseWithCovariance(pose=_pose(t.position, t.yaw),
                                                      covariance=t.pose_covariance().reshape(36))  # fmt: skip
        twist_cov = np.zeros((6, 6))
        twist_cov[:3, :3] = v_cov
        kin.twist_with_covariance = TwistWithCovariance(covariance=twist_cov.reshape(36))
        kin.twist_with_covariance.twist.linear = Vector3(x=float(v_body[0]), y=float(v_body[1]), z=float(v_body[2]))
        kin.twist_with_covariance.twist.angular = Vector3(x=0.0, y=0.0, z=float(t.yaw_rate))
        kin.orientation_availability = _orientation_availability(t, float(v_body[0]))
        kin.is_stationary = bool(t.is_stationary)
        objs.append(AwTrackedObject(
            object_id=UUID(uuid=np.frombuffer(track_uuid(t.track_id, session), np.uint8)),
            existence_probability=float(np.clip(t.existence_probability, 0.0, 1.0)),
            classification=autoware_classification(t.class_id, t.class_probability), kinematics=kin,
            shape=autoware_shape(t.class_id, t.dimensions),
        ))  # fmt: skip
    out.objects = objs
    return out


# -- visualization_msgs/MarkerArray ------------------------------------------------------------------
def _rgba(class_id: int, alpha: float = 1.0) -> ColorRGBA:
    r, g, b = _COLORS.get(int(class_id), (0.8, 0.8, 0.8))
    return ColorRGBA(r=float(r), g=float(g), b=float(b), a=float(alpha))


def box_edges(center: np.ndarray, size: np.ndarray, yaw: float) -> np.ndarray:
    """(24, 3) LINE_LIST points: the 12 edges of a yaw-rotated box."""
    half = 0.5 * np.asarray(size, np.float64)
    signs = np.array([[(k & 1) * 2 - 1, (k >> 1 & 1) * 2 - 1, (k >> 2 & 1) * 2 - 1] for k in range(8)], np.float64)
    c, s = math.cos(yaw), math.sin(yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    corners = (signs * half) @ rot.T + np.asarray(center, np.float64)
    return corners[np.array(_EDGES).reshape(-1)]


def markers(header: Header, centers: np.ndarray, sizes: np.ndarray, yaws: np.ndarray, class_ids: np.ndarray,
            labels: Sequence[str], velocities: np.ndarray | None = None, ns: str = "objects",
            line_width: float = 0.08) -> MarkerArray:  # fmt: skip
    """One frame's boxes as a MarkerArray: a DELETEALL (so objects gone since the last frame vanish; it
    clears every marker of the display, so give each MarkerArray its own topic),
    then per object i the box edges (``<ns>/boxes``, id i), the label text above it (``<ns>/labels``) and,
    when ``velocities`` is given and the object moves faster than MIN_ARROW_SPEED, an arrow from the
    box centre to where it will be in 1 s (``<ns>/velocity``)."""
    out = MarkerArray()
    # empty ns: a DELETEALL with a namespace may clear only that namespace (ros2/rviz#684); empty clears all
    ms = [Marker(header=header, ns="", id=0, action=Marker.DELETEALL)]
    for i in range(len(class_ids)):
        cid = int(class_ids[i])
        center = np.asarray(centers[i], np.float64)
        box = Marker(header=header, ns=f"{ns}/boxes", id=i, type=Marker.LINE_LIST, action=Marker.ADD,
                     color=_rgba(cid), scale=Vector3(x=line_width, y=0.0, z=0.0))  # fmt: skip
        box.pose.orientation.w = 1.0
        edges = box_edges(center, sizes[i], float(yaws[i]))
        box.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in edges]
        ms.append(box)
        top = center + np.array([0.0, 0.0, 0.5 * float(sizes[i][2]) + 0.4])
        text = Marker(header=header, ns=f"{ns}/labels", id=i, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                      pose=_pose(top, 0.0), color=_rgba(cid), scale=Vector3(x=0.0, y=0.0, z=0.6),
                      text=labels[i])  # fmt: skip
        ms.append(text)
        if velocities is not None:
            v = np.asarray(velocities[i], np.float64)
            if float(np.hypot(v[0], v[1])) >= MIN_ARROW_SPEED:
                arrow = Marker(header=header, ns=f"{ns}/velocity", id=i, type=Marker.ARROW, action=Marker.ADD,
                               color=_rgba(cid), scale=Vector3(x=0.15, y=0.3, z=0.3))  # fmt: skip
                arrow.pose.orientation.w = 1.0
                tip = center + v
                arrow.points = [Point(x=float(center[0]), y=float(center[1]), z=float(center[2])),
                                Point(x=float(tip[0]), y=float(tip[1]), z=float(tip[2]))]  # fmt: skip
                ms.append(arrow)
    out.markers = ms
    return out


def objects_to_markers(objects: Boxes3D, header: Header, ns: str = "objects") -> MarkerArray:
    """Fused objects (base_link): boxes and ``<class> <score>`` labels, no arrows (one frame has no velocity)."""
    labels = [f"{_class_name(int(c))} {float(s):.2f}" for c, s in zip(objects.class_ids, objects.scores)]
    return markers(header, objects.centers, objects.sizes, objects.yaws, objects.class_ids, labels, ns=ns)


def tracks_to_markers(tracks: Sequence[TrackedObject], header: Header, ns: str = "tracks") -> MarkerArray:
    """Tracks: boxes, ``#<id> <class> <speed> m/s`` labels and velocity arrows."""
    _check_frame([t.frame_id for t in tracks], header, "tracks")
    n = len(tracks)
    return markers(header, np.array([t.position for t in tracks]).reshape(n, 3),
                   np.array([t.dimensions for t in tracks]).reshape(n, 3), np.array([t.yaw for t in tracks]),
                   np.array([t.class_id for t in tracks], np.int64),
                   [f"#{t.track_id} {_class_name(t.class_id)} {t.speed:.1f} m/s" for t in tracks],
                   np.array([t.velocity for t in tracks]).reshape(n, 3), ns=ns)  # fmt: skip


# -- foxglove_msgs/ImageAnnotations --------------------------------------------------------------------
def track_ids_2d(tracks: Sequence[TrackedObject], n_detections: int) -> list[int | None]:
    """Per 2D detection the id of the track it updated this frame (None: none), via ``TrackedObject.index_2d``."""
    out: list[int | None] = [None] * n_detections
    for t in tracks:
        if 0 <= t.index_2d < n_detections and t.time_since_update == 0:
            out[t.index_2d] = int(t.track_id)
    return out


def _fox_color(class_id: int, alpha: float = 1.0) -> Color:
    r, g, b = _COLORS.get(int(class_id), (0.8, 0.8, 0.8))
    return Color(r=float(r), g=float(g), b=float(b), a=float(alpha))


def detections_to_annotations(det: Detections, header: Header, track_ids: Sequence[int | None] | None = None,
                              names: Mapping[int, str] | None = None, thickness: float = 2.0,
                              font_size: float = 14.0) -> ImageAnnotations:  # fmt: skip
    """2D detections (input-image pixels) -> ImageAnnotations for Foxglove's Image panel: a LINE_LOOP per
    box in its class colour and a ``<class> <score> [#track]`` label at its top-left corner. Every
    annotation carries the image's stamp (``header`` = the input image's header) so Foxglove pairs it
    with that image."""
    n = len(det)
    if track_ids is not None and len(track_ids) != n:
        raise RosError(f"track_ids has {len(track_ids)} entries for {n} detections")
    out = ImageAnnotations()
    boxes = np.asarray(det.boxes, np.float64).reshape(-1, 4)
    points, texts = [], []
    for i in range(n):
        x0, y0, x1, y1 = (float(v) for v in boxes[i])
        cid = int(det.class_ids[i])
        points.append(PointsAnnotation(
            timestamp=header.stamp, type=PointsAnnotation.LINE_LOOP,
            points=[Point2(x=x0, y=y0), Point2(x=x1, y=y0), Point2(x=x1, y=y1), Point2(x=x0, y=y1)],
            outline_color=_fox_color(cid), fill_color=_fox_color(cid, 0.0), thickness=float(thickness),
        ))  # fmt: skip
        name = (names or {}).get(cid, _class_name(cid))
        tid = None if track_ids is None else track_ids[i]
        label = f"{name} {float(det.scores[i]):.2f}" + ("" if tid is None else f" #{int(tid)}")
        texts.append(TextAnnotation(timestamp=header.stamp, position=Point2(x=x0, y=max(y0 - 2.0, font_size)),
                                    text=label, font_size=float(font_size),
                                    text_color=Color(r=1.0, g=1.0, b=1.0, a=1.0),
                                    background_color=_fox_color(cid, 0.7)))  # fmt: skip
    out.points = points
    out.texts = texts
    return out
