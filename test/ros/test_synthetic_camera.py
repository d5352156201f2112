"""synthetic_camera in its own process: image, camera_info, ground truth, odometry (and LiDAR) with one
stamp, and the rig on /tf_static."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")

from nav_msgs.msg import Odometry
from rclpy.qos import qos_profile_sensor_data
from ros_testing import Client
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection2DArray

from perception.ros import convert, frames
from perception.ros.qos import latched
from perception.ros.tools.node_process import NodeProcess


def test_synthetic_camera_publishes_a_consistent_frame(client: Client,
                                                       node_factory: Callable[..., NodeProcess]) -> None:
    pytest.importorskip("perception.sim.drive")
    pytest.importorskip("open3d")
    images = client.collect(Image, "/simcam/image_raw", qos_profile_sensor_data)
    compressed = client.collect(CompressedImage, "/simcam/image_raw/compressed", qos_profile_sensor_data)
    infos = client.collect(CameraInfo, "/simcam/camera_info", qos_profile_sensor_data)
    points = client.collect(PointCloud2, "/simcam/points", qos_profile_sensor_data)
    gts = client.collect(Detection2DArray, "/simcam/ground_truth")
    odom = client.collect(Odometry, "/odom")
    tf_static = client.collect(TFMessage, "/tf_static", latched(10))
    proc = node_factory("perception.ros.nodes.synthetic_camera", "synthetic_camera_test",
                        {"camera": "simcam", "width": 160, "height": 96, "fps": 5.0, "lidar": True,
                         "publish_compressed": True, "num_frames": 3, "max_frames": 200})  # stopped by pid
    ok = client.spin_until(lambda: not proc.alive() or (len(images) >= 2 and len(points) >= 2 and len(gts) >= 2), 60)
    assert ok and proc.alive(), proc.output()
    client.spin_for(0.3)  # the reliable topics of the newest image may still be on their way
    img = images[-1]
    assert (img.width, img.height, img.encoding) == (160, 96, "rgb8")
    assert convert.image_to_rgb(img).shape == (96, 160, 3)
    stamp = img.header.stamp
    assert any(i.header.stamp == stamp and i.width == 160 and i.k[0] > 0 for i in infos)
    assert any(g.header.stamp == stamp and g.header.frame_id == img.header.frame_id for g in gts)
    assert any(c.header.stamp == stamp for c in compressed)
    assert len(convert.pointcloud2_to_points(points[-1])) > 0
    assert points[-1].header.frame_id == "lidar"
    o = next(o for o in odom if o.header.stamp == stamp)
    assert (o.header.frame_id, o.child_frame_id) == ("odom", "base_link")
    assert o.twist.twist.linear.x > 0.5  # the ego drives forwards (body frame)
    rig = frames.StaticTransforms()
    for m in tf_static:
        for t in m.transforms:
            rig.add_msg(t)
    base_T_cam = rig.lookup("base_link", img.header.frame_id)
    cam_T_lidar = rig.lookup(img.header.frame_id, "lidar")
    assert base_T_cam is not None and cam_T_lidar is not None
    assert 1.0 < base_T_cam[2, 3] < 2.5  # the camera sits above the ground, looking forwards (optical z ~ base x)
    assert base_T_cam[0, 2] > 0.9
    np.testing.assert_allclose(cam_T_lidar[3], [0, 0, 0, 1])
