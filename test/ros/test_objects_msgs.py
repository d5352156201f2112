"""3D objects / tracks -> Detection3DArray, Autoware Detected/TrackedObjects, MarkerArray, ImageAnnotations.

Every message goes through rclpy's CDR serialization and back before its fields are checked, so what
is asserted is what a subscriber in another process reads.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("visualization_msgs.msg")
pytest.importorskip("autoware_perception_msgs.msg")
pytest.importorskip("foxglove_msgs.msg")

from autoware_perception_msgs.msg import ObjectClassification, Shape, TrackedObjectKinematics
from rclpy.serialization import deserialize_message, serialize_message
from visualization_msgs.msg import Marker

from perception.core.boxes3d import Boxes3D
from perception.core.classes import detection_id
from perception.core.types import Detections
from perception.ros import objects_msgs as om
from perception.ros.convert import make_header, stamp_to_seconds
from perception.ros.errors import RosError
from perception.tracking import MultiObjectTracker, TrackedObject, track_uuid

CAR, PED = detection_id("car"), detection_id("pedestrian")


def rt(msg: Any) -> Any:
    """``msg`` after CDR serialization and deserialization (what another process receives)."""
    return deserialize_message(serialize_message(msg), type(msg))


def yaw_of(q: Any) -> float:
    return 2.0 * math.atan2(q.z, q.w)


@pytest.fixture
def objects() -> Boxes3D:
    cov = np.stack([np.diag([0.04, 0.09, 0.01]), np.diag([0.5, 0.6, 0.02])])
    return Boxes3D(class_ids=np.array([CAR, PED]), scores=np.array([0.9, 0.6], np.float32),
                   centers=np.array([[12.0, 1.5, 0.75], [6.0, -2.0, 0.85]]),
                   sizes=np.array([[4.4, 1.8, 1.5], [0.6, 0.5, 1.7]]), yaws=np.array([0.3, 0.0]), position_covs=cov,
                   sources=np.array(["lidar", "camera"]), detection_index=np.array([0, 1]))  # fmt: skip


def track(**kw: Any) -> TrackedObject:
    base = dict(track_id=7, class_id=CAR, class_probability=0.8, existence_probability=0.95,
                position=np.array([20.0, 5.0, 0.7]), position_cov=np.diag([0.1, 0.2, 0.05]), yaw=math.pi / 2,
                yaw_var=0.01, dimensions=np.array([4.5, 1.9, 1.5]), velocity=np.array([0.0, 3.0, 0.0]),
                velocity_cov=np.diag([0.3, 0.4, 0.0]), yaw_rate=0.1, is_stationary=False, age=2.0, hits=20,
                time_since_update=0.0, stamp=5.0, detection_index=0, index_2d=2, frame_id="odom")  # fmt: skip
    base.update(kw)
    return TrackedObject(**base)  # type: ignore[arg-type]


def test_detection3d_array_carries_boxes_classes_and_track_ids(objects: Boxes3D) -> None:
    header = make_header(12.25, "base_link")
    msg = rt(om.objects_to_detection3d_array(objects, header, track_ids=[4, None]))
    assert msg.header.frame_id == "base_link" and stamp_to_seconds(msg.header.stamp) == pytest.approx(12.25)
    d0, d1 = msg.detections
    assert (d0.id, d1.id) == ("4", "")
    assert (d0.bbox.center.position.x, d0.bbox.center.position.y) == pytest.approx((12.0, 1.5))
    assert yaw_of(d0.bbox.center.orientation) == pytest.approx(0.3)
    assert (d0.bbox.size.x, d0.bbox.size.y, d0.bbox.size.z) == pytest.approx((4.4, 1.8, 1.5))
    assert d1.results[0].hypothesis.class_id == str(PED)
    assert d1.results[0].hypothesis.score == pytest.approx(0.6)
    cov = np.asarray(d0.results[0].pose.covariance).reshape(6, 6)
    assert np.allclose(cov[:3, :3], np.diag([0.04, 0.09, 0.01]))
    with pytest.raises(RosError, match="track_ids"):
        om.objects_to_detection3d_array(objects, header, track_ids=[1])


def test_detected_objects_use_autoware_labels_shapes_and_covariance(objects: Boxes3D) -> None:
    msg = rt(om.objects_to_detected_objects(objects, make_header(3.0, "base_link")))
    car, ped = msg.objects
    assert car.classification[0].label == ObjectClassification.CAR
    assert ped.classification[0].label == ObjectClassification.PEDESTRIAN
    assert car.existence_probability == pytest.approx(0.9) and ped.classification[0].probability == pytest.approx(0.6)
    assert car.shape.type == Shape.BOUNDING_BOX
    assert (car.shape.dimensions.x, car.shape.dimensions.y) == pytest.approx((4.4, 1.8))
    assert ped.shape.type == Shape.CYLINDER
    assert (ped.shape.dimensions.x, ped.shape.dimensions.y, ped.shape.dimensions.z) == pytest.approx((0.6, 0.6, 1.7))
    assert car.kinematics.orientation_availability == car.kinematics.SIGN_UNKNOWN
    assert ped.kinematics.orientation_availability == ped.kinematics.UNAVAILABLE
    assert car.kinematics.has_position_covariance and not car.kinematics.has_twist
    assert yaw_of(car.kinematics.pose_with_covariance.pose.orientation) == pytest.approx(0.3)
    assert np.asarray(ped.kinematics.pose_with_covariance.covariance)[7] == pytest.approx(0.6)


def test_tracked_objects_have_uuid_body_twist_and_covariances() -> None:
    moving, parked = track(), track(track_id=9, class_id=PED, is_stationary=True, velocity=np.zeros(3), yaw=0.0)
    msg = rt(om.tracks_to_tracked_objects([moving, parked], make_header(5.0, "odom"), session="s1"))
    a, b = msg.objects
    assert bytes(a.object_id.uuid) == track_uuid(7, "s1") and bytes(b.object_id.uuid) == track_uuid(9, "s1")
    assert a.existence_probability == pytest.approx(0.95)
    assert a.classification[0].label == ObjectClassification.CAR
    assert a.classification[0].probability == pytest.approx(0.8)
    tw = a.kinematics.twist_with_covariance
    # heading +y in odom, moving +y at 3 m/s: 3 m/s forwards in the object's frame
    assert (tw.twist.linear.x, tw.twist.linear.y) == pytest.approx((3.0, 0.0), abs=1e-9)
    assert tw.twist.angular.z == pytest.approx(0.1)
    assert np.allclose(np.asarray(tw.covariance).reshape(6, 6)[:2, :2], np.diag([0.4, 0.3]))
    pose_cov = np.asarray(a.kinematics.pose_with_covariance.covariance).reshape(6, 6)
    assert pose_cov[1, 1] == pytest.approx(0.2) and pose_cov[5, 5] == pytest.approx(0.01)
    assert a.kinematics.orientation_availability == TrackedObjectKinematics.AVAILABLE and not a.kinematics.is_stationary
    assert b.kinematics.is_stationary and b.kinematics.orientation_availability == TrackedObjectKinematics.UNAVAILABLE
    assert b.shape.type == Shape.CYLINDER
    with pytest.raises(RosError, match="frame"):
        om.tracks_to_tracked_objects([moving], make_header(5.0, "base_link"), session="s1")


def test_tracks_from_the_real_tracker_keep_their_uuid_across_frames() -> None:
    tracker = MultiObjectTracker(session="fixed")
    uuids: list[bytes] = []
    for k in range(6):
        t = 0.1 * k
        det = Boxes3D(class_ids=[CAR], scores=[0.9], centers=[[10.0 + 5.0 * t, 0.0, 0.75]], sizes=[[4.4, 1.8, 1.5]],
                      yaws=[0.0], position_covs=0.05, frame_id="odom")  # fmt: skip
        tracks = tracker.update(t, None, det)
        msg = rt(om.tracks_to_tracked_objects(tracks, make_header(t, "odom"), tracker.session))
        uuids += [bytes(o.object_id.uuid) for o in msg.objects]
        d3 = rt(om.tracks_to_detection3d_array(tracks, make_header(t, "odom")))
        assert [d.id for d in d3.detections] == [str(x.track_id) for x in tracks]
    assert uuids and set(uuids) == {track_uuid(tracks[0].track_id, "fixed")}
    assert msg.objects[0].kinematics.twist_with_covariance.twist.linear.x == pytest.approx(5.0, abs=1.0)


def test_markers_start_with_deleteall_and_draw_boxes_labels_and_arrows() -> None:
    header = make_header(1.0, "odom")
    slow = track(track_id=3, velocity=np.array([0.05, 0.0, 0.0]), position=np.array([0.0, 0.0, 0.75]), yaw=0.0)
    msg = rt(om.tracks_to_markers([track(), slow], header))
    first, rest = msg.markers[0], msg.markers[1:]
    assert (first.action, first.ns) == (Marker.DELETEALL, "")  # stale markers of every namespace vanish
    boxes = [m for m in rest if m.type == Marker.LINE_LIST]
    texts = [m for m in rest if m.type == Marker.TEXT_VIEW_FACING]
    arrows = [m for m in rest if m.type == Marker.ARROW]
    assert [m.id for m in boxes] == [0, 1] and len(texts) == 2 and len(arrows) == 1  # the slow one has no arrow
    pts = np.array([[p.x, p.y, p.z] for p in boxes[1].points])
    assert len(pts) == 24
    assert np.allclose(pts.min(0), [-2.25, -0.95, 0.0]) and np.allclose(pts.max(0), [2.25, 0.95, 1.5])
    assert texts[0].text.startswith("#7 car") and "3.0 m/s" in texts[0].text
    tip = arrows[0].points[1]
    assert (tip.x, tip.y) == pytest.approx((20.0, 8.0))
    assert all(m.header.frame_id == "odom" for m in msg.markers)
    # an empty frame still clears the view
    empty = rt(om.tracks_to_markers([], header))
    assert [m.action for m in empty.markers] == [Marker.DELETEALL]


def test_image_annotations_are_stamped_with_the_image_and_label_tracks() -> None:
    det = Detections(np.array([[10, 20, 110, 80], [200, 5, 240, 90]], np.float32), np.array([0.87, 0.4], np.float32),
                     np.array([CAR, PED]))  # fmt: skip
    header = make_header(42.5, "cam")
    ids = om.track_ids_2d([track(index_2d=1, track_id=11), track(index_2d=0, track_id=12, time_since_update=0.1)], 2)
    assert ids == [None, 11]  # a coasting track labels no detection
    msg = rt(om.detections_to_annotations(det, header, track_ids=ids))
    assert len(msg.points) == 2 and len(msg.texts) == 2 and not msg.circles
    p0 = msg.points[0]
    assert p0.type == p0.LINE_LOOP
    assert [(p.x, p.y) for p in p0.points] == [(10, 20), (110, 20), (110, 80), (10, 80)]
    assert all(stamp_to_seconds(a.timestamp) == pytest.approx(42.5) for a in [*msg.points, *msg.texts])
    assert msg.texts[0].text == "car 0.87" and msg.texts[1].text == "pedestrian 0.40 #11"


def test_transformed_tracks_convert_in_base_link() -> None:
    base_T_odom = np.eye(4)
    base_T_odom[:3, 3] = [-20.0, -5.0, 0.0]
    t = track().transformed(base_T_odom, "base_link")
    d = rt(om.tracks_to_detection3d_array([t], make_header(5.0, "base_link"))).detections[0]
    assert (d.bbox.center.position.x, d.bbox.center.position.y) == pytest.approx((0.0, 0.0))


def test_an_independent_subscriber_receives_every_object_message(client: Any, tmp_path: Any) -> None:
    """objects_publisher.py (another process, loopback DDS, this session's private domain) publishes every
    object message type; this process subscribes and checks types, hashes and contents."""
    import sys

    from objects_publisher import SESSION, SPEED, TOPICS
    from ros_testing import DOMAIN_ID, ROOT
    from test_interface_hashes import RIHS01

    from perception.ros.env import localhost_env
    from perception.ros.tools.node_process import NodeProcess

    env = localhost_env(DOMAIN_ID)
    env["PYTHONPATH"] = str(ROOT)
    log = tmp_path / "objects_publisher.log"
    boxes = {topic: client.collect(cls, topic) for topic, cls in TOPICS.items()}
    pub = NodeProcess.start("objects_publisher", [sys.executable, str(ROOT / "test" / "ros" / "objects_publisher.py"),
                                                  "--ticks", "300"], env, log)
    try:
        assert client.spin_until(lambda: all(len(b) >= 8 for b in boxes.values()), 40.0), (
            {t: len(b) for t, b in boxes.items()}, pub.output()[-2000:])
        infos = {t: client.node.get_publishers_info_by_topic("/" + t) for t in TOPICS}
    finally:
        pub.stop()
    for topic, cls in TOPICS.items():
        name = f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"
        assert [i.node_name for i in infos[topic]] == ["objects_publisher"]
        if name in RIHS01:
            assert str(infos[topic][0].topic_type_hash) == RIHS01[name]
    tracked = boxes["objects/tracked"][-1]
    assert tracked.header.frame_id == "odom" and len(tracked.objects) == 2
    car = next(o for o in tracked.objects if o.classification[0].label == ObjectClassification.CAR)
    assert {bytes(o.object_id.uuid) for o in tracked.objects} <= {track_uuid(i, SESSION) for i in range(1, 10)}
    assert car.kinematics.twist_with_covariance.twist.linear.x == pytest.approx(SPEED, abs=0.5)
    d3 = boxes["objects3d"][-1]
    assert d3.header.frame_id == "base_link" and all(d.id for d in d3.detections)
    assert len(boxes["objects/detected"][-1].objects) == 2
    assert boxes["objects/markers"][-1].markers[0].action == Marker.DELETEALL
    ann = boxes["cam/detections/annotations"][-1]
    assert len(ann.points) == 2 and all(t.text.split("#")[-1].isdigit() for t in ann.texts)
