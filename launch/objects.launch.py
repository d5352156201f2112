"""3D objects: the synthetic camera with its LiDAR, odometry and /tf_static, and perception_node with
the objects stage (LiDAR-camera fusion + tracking) on.

    ros2 launch perception objects.launch.py
    perception run objects                    # the same processes, localhost DDS, private domain

Outputs (frame, every one with the image's stamp): /camera/objects3d (vision_msgs/Detection3DArray,
base_link), /camera/objects/detected (Autoware DetectedObjects, base_link), /camera/objects/tracked
(Autoware TrackedObjects, odom), /camera/objects/markers (MarkerArray, odom: boxes, ids, velocity
arrows) and /camera/detections/annotations (Foxglove ImageAnnotations). RViz / Foxglove: fixed frame
odom (synthetic_camera publishes odom -> base_link on /tf).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    config = os.path.join(get_package_share_directory("perception"), "config")
    return LaunchDescription([
        DeclareLaunchArgument("model", default_value="stan_s_temporal", description="network name (registry)"),
        DeclareLaunchArgument("checkpoint", default_value="", description="checkpoint path stem or shipped name"),
        DeclareLaunchArgument("fps", default_value="10.0", description="synthetic camera frame rate"),
        Node(
            package="perception",
            executable="synthetic_camera",
            name="synthetic_camera",
            output="screen",
            parameters=[
                os.path.join(config, "synthetic_camera.yaml"),
                {"fps": ParameterValue(LaunchConfiguration("fps"), value_type=float), "lidar": True},
            ],
        ),
        Node(
            package="perception",
            executable="perception_node",
            name="perception",
            output="screen",
            parameters=[
                os.path.join(config, "perception.yaml"),
                {
                    "model.name": ParameterValue(LaunchConfiguration("model"), value_type=str),
                    "model.checkpoint": ParameterValue(LaunchConfiguration("checkpoint"), value_type=str),
                    "input.camera_info": True,
                    "objects.enabled": True,
                },
            ],
        ),
    ])
