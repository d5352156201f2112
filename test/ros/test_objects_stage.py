"""The perception node's objects stage without a graph: nearest-stamp matching with a bounded wait,
counted drops (no camera_info / odometry / transform / scan), extrinsics from /tf_static or the
parameters, and a real fused frame (the synthetic world's LiDAR + its ground-truth 2D boxes)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytest.importorskip("nav_msgs.msg")
pytest.importorskip("tf2_msgs.msg")
pytest.importorskip("autoware_perception_msgs.msg")

from tf2_msgs.msg import TFMessage

from perception.core.temporal import ResetReason
from perception.core.types import CameraIntrinsics, Detections
from perception.pipeline.perceptor import PerceptionResult
from perception.ros import convert, frames
from perception.ros.errors import RosError
from perception.ros.nodes.objects_stage import ObjectsStage, StampBuffer
from perception.ros.nodes.params import ObjectsConfig, node_config

# a camera 1.5 m up looking forwards (optical: x right, y down, z forward), a LiDAR 1.8 m up
BASE_T_CAM = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 1.5], [0, 0, 0, 1]], np.float64)
BASE_T_LIDAR = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1.8], [0, 0, 0, 1]], np.float64)
INTR = CameraIntrinsics.from_fov(320, 192, 90.0)


# -- StampBuffer ---------------------------------------------------------------------------------
def test_nearest_stamp_within_the_window() -> None:
    buf: StampBuffer[str] = StampBuffer(4)
    for t in (1.0, 1.1, 1.2):
        buf.add(t, f"s{t}")
    assert buf.nearest(1.13, 0.05) == (1.1, "s1.1")
    assert buf.nearest(1.16, 0.05) == (1.2, "s1.2")
    assert buf.nearest(1.5, 0.05) is None  # nothing within the window
    buf.add(1.05, "late")  # out of order: sorted in, not lost
    assert buf.nearest(1.06, 0.02) == (1.05, "late")
    for t in (1.3, 1.4, 1.5, 1.6):
        buf.add(t, "x")
    assert buf.nearest(1.0, 0.1) is None and len(buf) == 4  # bounded: the oldest fell out


def test_wait_is_bounded_and_skipped_when_a_match_cannot_come() -> None:
    buf: StampBuffer[str] = StampBuffer()
    t0 = time.monotonic()
    assert buf.wait_nearest(5.0, 0.05, time.monotonic() + 0.15) is None  # nothing comes: waits to the deadline
    waited = time.monotonic() - t0
    assert 0.12 <= waited < 1.0
    buf.add(5.2, "newer")  # newer than the window: a match can no longer come, no wait at all
    t0 = time.monotonic()
    assert buf.wait_nearest(5.0, 0.05, time.monotonic() + 5.0) is None
    assert time.monotonic() - t0 < 0.1
    buf.add(4.98, "ok")  # a match with a newer scan already there: returned at once
    t0 = time.monotonic()
    assert buf.wait_nearest(5.0, 0.05, time.monotonic() + 5.0) == (4.98, "ok")
    assert time.monotonic() - t0 < 0.1
    assert buf.wait_nearest(5.0, 0.05, time.monotonic() - 1.0) == (4.98, "ok")  # past deadline: what there is


def test_wait_returns_when_the_scan_arrives() -> None:
    buf: StampBuffer[str] = StampBuffer()
    buf.add(9.9, "old")  # within the window but a nearer scan may still come
    threading.Timer(0.1, buf.add, (10.01, "new")).start()
    t0 = time.monotonic()
    assert buf.wait_nearest(10.0, 0.15, time.monotonic() + 3.0) == (10.01, "new")
    assert time.monotonic() - t0 < 2.0


# -- the stage -----------------------------------------------------------------------------------
def _result(stamp: float, det: Detections | None = None) -> PerceptionResult:
    return PerceptionResult("cam", stamp, det if det is not None else Detections(), None, None, ResetReason.NONE, {})


def _tf_static(base_T_cam: np.ndarray = BASE_T_CAM, base_T_lidar: np.ndarray = BASE_T_LIDAR) -> TFMessage:
    h = convert.make_header(0.0, "base_link")
    return TFMessage(transforms=[frames.transform_msg(base_T_cam, h, "camera_optical_frame"),
                                 frames.transform_msg(base_T_lidar, h, "lidar")])  # fmt: skip


def _odom(stamp: float, x: float = 0.0) -> object:
    pose = np.eye(4)
    pose[0, 3] = x
    return frames.odometry_msg(pose, convert.make_header(stamp, "odom"), "base_link", np.array([5.0, 0, 0]))


def _scan(stamp: float, points: np.ndarray | None = None) -> object:
    pts = points if points is not None else np.zeros((0, 4), np.float32)
    return convert.points_to_pointcloud2(pts, convert.make_header(stamp, "lidar"))


def test_stage_counts_every_reason_a_frame_gets_no_or_fewer_objects() -> None:
    stage = ObjectsStage(("cam",), ObjectsConfig(enabled=True, max_sync_s=0.05, max_wait_s=0.05))
    now = time.monotonic
    assert stage.process("cam", 1.0, "camera_optical_frame", _result(1.0), now()) is None
    stage.on_camera_info("cam", convert.intrinsics_to_camera_info(INTR, convert.make_header(1.0, "x")))
    assert stage.process("cam", 1.0, "camera_optical_frame", _result(1.0), now()) is None
    stage.on_odometry(_odom(0.5))  # too far from the image stamp (max_odom_gap_s 0.2)
    assert stage.process("cam", 1.0, "camera_optical_frame", _result(1.0), now()) is None
    stage.on_odometry(_odom(1.0))
    assert stage.process("cam", 1.0, "camera_optical_frame", _result(1.0), now()) is None  # no transform
    stage.on_tf_static(_tf_static())
    t0 = time.monotonic()
    out = stage.process("cam", 1.0, "camera_optical_frame", _result(1.0), now())  # no scan: camera-only
    assert out is not None and not out.frame.lidar and out.scan_dt is None
    assert time.monotonic() - t0 < 1.0  # the wait was bounded by max_wait_s
    stage.on_scan("cam/points", _scan(1.01))
    stage.on_odometry(_odom(1.1, 0.5))
    stage.on_scan("cam/points", _scan(1.11))
    out = stage.process("cam", 1.1, "camera_optical_frame", _result(1.1), now())
    assert out is not None and out.frame.lidar and out.scan_dt == pytest.approx(-0.01, abs=1e-6)
    assert out.odom_T_base[0, 3] == pytest.approx(0.5)
    values, problem = stage.snapshot("cam")
    assert {k: values[f"objects_{k}"] for k in ("frames", "published", "lidar", "camera_only", "no_scan",
                                                "no_camera_info", "no_odom", "no_tf", "failed")} == {
        "frames": 6, "published": 2, "lidar": 1, "camera_only": 1, "no_scan": 1, "no_camera_info": 1,
        "no_odom": 2, "no_tf": 1, "failed": 0}  # fmt: skip
    assert values["objects.total_p50_ms"] > 0 and values["objects.sync_wait_p50_ms"] >= 0
    assert "no_odom" in problem and "no_tf" in problem and "no_camera_info" in problem
    assert stage.snapshot("cam")[1] == ""  # the problem is what happened since the last snapshot


def test_stage_falls_back_to_the_parameter_extrinsics() -> None:
    cfg = node_config({"objects.enabled": True, "objects.base_T_cam": BASE_T_CAM.ravel().tolist(),
                       "objects.base_T_lidar": BASE_T_LIDAR.ravel().tolist()}).objects  # fmt: skip
    stage = ObjectsStage(("cam",), cfg)
    stage.on_camera_info("cam", convert.intrinsics_to_camera_info(INTR, convert.make_header(1.0, "x")))
    stage.on_odometry(_odom(2.0))
    stage.on_scan("cam/points", _scan(2.0))
    out = stage.process("cam", 2.0, "camera_optical_frame", _result(2.0), time.monotonic())
    assert out is not None and out.frame.lidar
    # /tf_static wins over the parameters once it has the frames
    other = BASE_T_CAM.copy()
    other[2, 3] = 1.2
    stage.on_tf_static(_tf_static(other))
    found = stage._extrinsic("camera_optical_frame", stage._fallback_cam)
    assert found is not None and found[2, 3] == pytest.approx(1.2)


@pytest.mark.parametrize(("values", "reason"), [
    ({"objects.base_T_cam": [1.0] * 15}, "16 finite numbers"),
    ({"objects.base_T_cam": (2 * np.eye(4)).ravel().tolist()}, "not a rigid transform"),
    ({"objects.base_T_lidar": ["a"] * 16}, "double array"),
    ({"objects.lidar_topic": "bad topic"}, "not a valid relative ROS name"),
    ({"objects.base_frame": ""}, "must be a frame id"),
    ({"objects.max_sync_s": -0.1}, "below its minimum"),
])  # fmt: skip
def test_objects_parameters_are_validated(values: dict[str, object], reason: str) -> None:
    with pytest.raises(RosError, match=reason):
        node_config(values)


def test_lidar_topic_is_per_camera_unless_absolute() -> None:
    assert node_config({"objects.lidar_topic": "points"}).objects.lidar_topic_of("front") == "front/points"
    cfg = node_config({"objects.lidar_topic": "/sensing/lidar/points", "cameras": ["a", "b"]}).objects
    stage = ObjectsStage(("a", "b"), cfg)
    assert set(stage.scans) == {"/sensing/lidar/points"}  # one buffer shared by both cameras


def test_a_synthetic_frame_fuses_with_its_lidar() -> None:
    """The world's scan + its ground-truth 2D boxes through the stage: LiDAR-fused cars near the truth."""
    pytest.importorskip("open3d")
    from perception.sim.config import SimConfig
    from perception.sim.drive import get_world, render_frame
    from perception.sim.world import ego_pose

    cfg = SimConfig(width=320, height=192, lidar=True)
    world = get_world(2024, cfg)
    stage = ObjectsStage(("cam",), ObjectsConfig(enabled=True))
    n_lidar = 0
    for i in (0, 1, 2):
        f = render_frame(2024, i, cfg)
        assert f.lidar is not None and f.world_T_lidar is not None
        odom_T_base = ego_pose(world, f.stamp, 0.0)
        base_T_odom = np.linalg.inv(odom_T_base)
        h = convert.make_header(0.0, "base_link")
        stage.on_tf_static(TFMessage(transforms=[
            frames.transform_msg(base_T_odom @ f.world_T_cam, h, "camera_optical_frame"),
            frames.transform_msg(base_T_odom @ f.world_T_lidar, h, "lidar")]))  # fmt: skip
        stage.on_camera_info("cam", convert.intrinsics_to_camera_info(f.intrinsics, h))
        stamp = 100.0 + f.stamp
        stage.on_odometry(frames.odometry_msg(odom_T_base, convert.make_header(stamp, "odom"), "base_link"))
        stage.on_scan("cam/points", convert.points_to_pointcloud2(f.lidar, convert.make_header(stamp, "lidar")))
        det = Detections(np.asarray(f.gt.boxes, np.float32), np.ones(len(f.gt.boxes), np.float32),
                         np.asarray(f.gt.class_ids, np.int64))  # fmt: skip
        out = stage.process("cam", stamp, "camera_optical_frame", _result(stamp, det), time.monotonic())
        assert out is not None and out.frame.lidar
        n_lidar += int((out.frame.objects.sources == "lidar").sum())
    assert n_lidar > 0
    assert stage.snapshot("cam")[0]["objects_lidar"] == 3


def test_odometry_is_interpolated_between_the_messages_either_side() -> None:
    from scipy.spatial.transform import Rotation

    from perception.ros.nodes.objects_stage import pose_at

    buf: StampBuffer[np.ndarray] = StampBuffer()
    a, b = np.eye(4), np.eye(4)
    b[:3, :3] = Rotation.from_euler("z", 0.4).as_matrix()
    b[:3, 3] = [2.0, 1.0, 0.0]
    buf.add(1.0, a)
    buf.add(1.1, b)
    mid = pose_at(buf, 1.075, 0.2)
    assert mid is not None
    np.testing.assert_allclose(mid[:3, 3], [1.5, 0.75, 0.0], atol=1e-9)
    assert Rotation.from_matrix(mid[:3, :3]).as_euler("xyz")[2] == pytest.approx(0.3, abs=1e-9)
    after = pose_at(buf, 1.15, 0.2)  # nothing after: the nearest
    assert after is not None and np.allclose(after, b)
    assert pose_at(buf, 1.5, 0.2) is None  # too far from every message


def test_a_cut_on_a_frame_without_objects_still_resets_the_tracks() -> None:
    """The 2D stage reports a scene cut on a frame that gets no 3D objects (no transform for its frame
    id): the next frame that reaches the pipeline starts the tracks afresh, with the cut as its reason."""
    stage = ObjectsStage(("cam",), ObjectsConfig(enabled=True, max_wait_s=0.0))
    stage.on_camera_info("cam", convert.intrinsics_to_camera_info(INTR, convert.make_header(1.0, "x")))
    stage.on_tf_static(_tf_static())
    car = Detections(np.array([[140, 100, 180, 125]], np.float32), np.full(1, 0.9, np.float32), np.zeros(1, np.int64))
    now = time.monotonic
    for k in range(4):
        stamp = 1.0 + 0.1 * k
        stage.on_odometry(_odom(stamp, 0.5 * k))
        out = stage.process("cam", stamp, "camera_optical_frame", _result(stamp, car), now())
        assert out is not None
    assert out.frame.tracks and out.frame.tracks[0].hits == 4  # one confirmed track, camera-only
    cut = PerceptionResult("cam", 1.4, car, None, None, ResetReason.SCENE_CUT, {})
    stage.on_odometry(_odom(1.4, 2.0))
    assert stage.process("cam", 1.4, "unknown_frame", cut, now()) is None  # counted no_tf, no objects
    stage.on_odometry(_odom(1.5, 2.5))
    out = stage.process("cam", 1.5, "camera_optical_frame", _result(1.5, car), now())
    assert out is not None and out.frame.reset is ResetReason.SCENE_CUT
    assert out.frame.tracks == [] and all(t.hits == 1 for t in stage.pipelines["cam"].tracker.tracks)
    out = stage.process("cam", 1.5, "camera_optical_frame", _result(1.5, car), now())
    assert out is not None and out.frame.reset is ResetReason.NONE  # handed over once
