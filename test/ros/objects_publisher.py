"""Publisher process for the cross-process test of the object messages (test_objects_msgs.py).

A car drives along x at 5 m/s in front of a parked pedestrian; each 0.1 s tick fuses nothing (the
objects are given) but runs the real tracker, then publishes every object message type the project
has: Detection3DArray, Autoware DetectedObjects / TrackedObjects, MarkerArray, ImageAnnotations.
Stops by itself after ``--ticks`` ticks. Started with the localhost DDS environment of the test.
"""

from __future__ import annotations

import argparse

import numpy as np
import rclpy
from autoware_perception_msgs.msg import DetectedObjects, TrackedObjects
from foxglove_msgs.msg import ImageAnnotations
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from vision_msgs.msg import Detection3DArray
from visualization_msgs.msg import MarkerArray

from perception.core.boxes3d import Boxes3D
from perception.core.classes import detection_id
from perception.core.types import Detections
from perception.ros import objects_msgs as om
from perception.ros.convert import make_header
from perception.tracking import MultiObjectTracker

TOPICS = {"objects3d": Detection3DArray, "objects/detected": DetectedObjects, "objects/tracked": TrackedObjects,
          "objects/markers": MarkerArray, "cam/detections/annotations": ImageAnnotations}  # fmt: skip
SESSION = "cross-process-test"
SPEED = 5.0


def frame(t: float) -> Boxes3D:
    car, ped = detection_id("car"), detection_id("pedestrian")
    return Boxes3D(class_ids=np.array([car, ped]), scores=np.array([0.9, 0.8], np.float32),
                   centers=np.array([[10.0 + SPEED * t, 2.0, 0.75], [8.0, -3.0, 0.85]]),
                   sizes=np.array([[4.4, 1.8, 1.5], [0.6, 0.6, 1.7]]), yaws=np.zeros(2),
                   position_covs=np.stack([np.eye(3) * 0.05] * 2), sources=np.array(["lidar", "lidar"]),
                   detection_index=np.array([0, 1]))  # fmt: skip


class ObjectsPublisher(Node):
    def __init__(self, ticks: int) -> None:
        super().__init__("objects_publisher")
        self.pubs = {topic: self.create_publisher(cls, topic, 10) for topic, cls in TOPICS.items()}
        self.tracker = MultiObjectTracker(session=SESSION)
        self.k, self.ticks = 0, ticks
        self.timer = self.create_timer(0.1, self.tick)

    def tick(self) -> None:
        t = 0.1 * self.k
        self.k += 1
        if self.k > self.ticks:
            raise SystemExit(0)
        objects = frame(t)
        base = make_header(t, "base_link")
        tracks = self.tracker.update(t, np.eye(4), objects)  # odom == base_link: the ego stands still
        ids = {tr.detection_index: tr.track_id for tr in tracks if tr.time_since_update == 0}
        odom = make_header(t, "odom")
        self.pubs["objects3d"].publish(om.objects_to_detection3d_array(objects, base, [ids.get(i) for i in range(2)]))
        self.pubs["objects/detected"].publish(om.objects_to_detected_objects(objects, base))
        self.pubs["objects/tracked"].publish(om.tracks_to_tracked_objects(tracks, odom, SESSION))
        self.pubs["objects/markers"].publish(om.tracks_to_markers(tracks, odom))
        boxes = Detections(np.array([[100, 200, 300, 280], [400, 180, 430, 260]], np.float32),
                           np.array([0.9, 0.8], np.float32), objects.class_ids)  # fmt: skip
        self.pubs["cam/detections/annotations"].publish(
            om.detections_to_annotations(boxes, make_header(t, "cam"), om.track_ids_2d(tracks, 2)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ticks", type=int, default=200)
    args = ap.parse_args()
    rclpy.init()
    node = ObjectsPublisher(args.ticks)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException, SystemExit):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
