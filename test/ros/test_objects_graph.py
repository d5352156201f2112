"""3D objects across processes on a real graph (localhost DDS, private domain).

synthetic_camera (LiDAR, odometry, /tf_static) and perception_node (the shipped stan_s_temporal at a
small input, ``objects.enabled``) run as two processes; this process is an independent subscriber
of Detection3DArray, TrackedObjects, MarkerArray and ImageAnnotations. Every message must carry the
stamp of an image the camera published and the documented frame, and at some point the objects and
the confirmed tracks must be non-empty, fused with the LiDAR (not ranged from the camera alone).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("autoware_perception_msgs.msg")
pytest.importorskip("foxglove_msgs.msg")
pytest.importorskip("nav_msgs.msg")
pytest.importorskip("tf2_msgs.msg")

from autoware_perception_msgs.msg import TrackedObjects
from diagnostic_msgs.msg import DiagnosticArray
from foxglove_msgs.msg import ImageAnnotations
from nav_msgs.msg import Odometry
from rclpy.qos import qos_profile_sensor_data
from ros_testing import Client, diag_values, needs_model
from sensor_msgs.msg import Image
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection3DArray
from visualization_msgs.msg import Marker, MarkerArray

from perception.ros.qos import latched
from perception.ros.tools.node_process import NodeProcess

NODE = "perception_objects_test"


def _key(msg: Any) -> tuple[int, int]:
    if isinstance(msg, ImageAnnotations):
        stamp = msg.points[0].timestamp
    elif isinstance(msg, MarkerArray):
        stamp = msg.markers[0].header.stamp
    else:
        stamp = msg.header.stamp
    return (stamp.sec, stamp.nanosec)


def test_objects_across_processes(client: Client, node_factory: Callable[..., NodeProcess]) -> None:
    needs_model()
    pytest.importorskip("perception.sim.drive")
    pytest.importorskip("open3d")
    images = client.collect(Image, "/cam/image_raw", qos_profile_sensor_data)
    odom = client.collect(Odometry, "/odom")
    tf_static = client.collect(TFMessage, "/tf_static", latched(10))
    objects3d = client.collect(Detection3DArray, "/cam/objects3d")
    tracked = client.collect(TrackedObjects, "/cam/objects/tracked")
    markers = client.collect(MarkerArray, "/cam/objects/markers")
    annotations = client.collect(ImageAnnotations, "/cam/detections/annotations")
    diags = client.collect(DiagnosticArray, "/diagnostics")
    node = node_factory("perception.ros.nodes.perception_node", NODE, {
        "autostart": True, "model.name": "stan_s_temporal", "model.input_height": 192, "model.input_width": 320,
        "model.threads": 1, "model.backend": "torch", "cameras": ["cam"], "diagnostics_period": 0.5,
        "objects.enabled": True, "objects.max_wait_s": 0.3, "temporal.max_gap_s": 2.0,
        "output.segmentation_color": False, "output.attention": False, "output.object_attention": False,
    })  # fmt: skip
    camera = node_factory("perception.ros.nodes.synthetic_camera", "synthetic_camera_objects_test", {
        "camera": "cam", "width": 320, "height": 192, "fps": 4.0, "lidar": True, "seed": 2024, "num_frames": 120,
        "loop": False,
        # this process's image collector AND the perception node: with 1, the collector (subscribed first)
        # let the camera start before the node was up, and the node's subscriptions were matched mid-stream
        "wait_for_subscribers": 2,
    })  # fmt: skip

    def complete_frames() -> list[TrackedObjects]:
        """Frames with tracks whose Detection3DArray, annotations and markers all arrived (best-effort topics
        may lose one message of a frame: the check below takes a frame that has them all)."""
        keys3d = {_key(m) for m in objects3d if len(m.detections)}
        keys_ann = {_key(a) for a in annotations if a.points}
        keys_mk = {_key(m) for m in markers if m.markers[1:]}
        return [m for m in tracked if len(m.objects) and {_key(m)} <= keys3d & keys_ann & keys_mk]

    ok = client.spin_until(lambda: not node.alive() or not camera.alive() or bool(complete_frames()), 50.0)
    assert node.alive(), "perception node died:\n" + node.output()
    assert camera.alive(), "synthetic camera stopped:\n" + camera.output()
    assert ok, (f"no 3D objects and tracks: {len(images)} images, {len(objects3d)} Detection3DArray, "
                f"{len(tracked)} TrackedObjects; diagnostics {diag_values(diags[-1], NODE) if diags else None}\n"
                + node.output()[-3000:])  # fmt: skip
    client.spin_for(0.5)

    # the camera's side: odometry with the image stamps, the rig on /tf_static
    image_stamps = {_key(m) for m in images}
    assert {_key(m) for m in odom} >= image_stamps - {_key(images[-1])}
    # the frames the camera published: the images this best-effort subscriber got, and the (reliable) odometry,
    # which carries every image's stamp
    published = image_stamps | {_key(m) for m in odom}
    assert all(m.header.frame_id == "odom" and m.child_frame_id == "base_link" for m in odom)
    children = {t.child_frame_id: t.header.frame_id for m in tf_static for t in m.transforms}
    assert children == {"camera_optical_frame": "base_link", "lidar": "base_link"}

    # every output with an image's stamp and its documented frame
    annotated = [a for a in annotations if a.points]
    for a in annotated:  # every annotation of one message is stamped with its image
        assert {(p.timestamp.sec, p.timestamp.nanosec) for p in [*a.points, *a.texts]} == {_key(a)}
    for msgs, frame in ((objects3d, "base_link"), (tracked, "odom"), (annotated, None)):
        assert msgs
        for m in msgs:
            assert _key(m) in published
            if frame is not None:
                assert m.header.frame_id == frame
    for m in markers:
        assert m.markers[0].action == Marker.DELETEALL
        assert all(mk.header.frame_id == "odom" and _key(mk) in published for mk in m.markers)
    # the outputs of one frame agree: the tracked ids appear as Detection3D ids and annotation labels
    by_stamp = {_key(m): m for m in objects3d}
    frame = complete_frames()[-1]
    ids = [d.id for d in by_stamp[_key(frame)].detections if d.id]
    assert ids, "no Detection3D carries a track id in a frame with tracks"
    ann = next(a for a in annotated if _key(a) == _key(frame))
    assert any(f"#{i}" in t.text for t in ann.texts for i in ids)
    assert any(m.markers[1:] for m in markers if _key(m) == _key(frame))
    for d in by_stamp[_key(frame)].detections:
        assert d.header.frame_id == "base_link" and d.bbox.size.x > 0 and d.results
    for o in frame.objects:
        assert len(o.object_id.uuid) == 16 and o.shape.dimensions.z > 0

    values = diag_values(diags[-1], f"{NODE}: cam")
    assert values is not None
    assert int(values["objects_lidar"]) > 0, values  # fused with scans, not only ranged from the camera
    assert int(values["objects_no_tf"]) == 0 and int(values["objects_no_odom"]) == 0, values
    assert float(values["objects.total_p50_ms"]) > 0.0
    print("objects stage:", {k: v for k, v in values.items() if k.startswith("objects") or k in ("infer_p50_ms",
                                                                                               "latency_p50_ms")})
