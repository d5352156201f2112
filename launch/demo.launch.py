"""Demo: the synthetic camera and perception_node, wired together.

    ros2 launch perception demo.launch.py
    perception run demo                       # the same processes, localhost DDS, private domain

Then look at /camera/detections, /camera/segmentation/color and /camera/attention (RViz, Foxglove).
The LiDAR and the objects stage are on: /camera/objects3d, /camera/objects/tracked, /camera/objects/markers
(fixed frame odom) and /camera/detections/annotations (Foxglove); `perception demo --ros` draws the
tracks in a bird's-eye view.
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
        DeclareLaunchArgument("model", default_value="stan_mbv2", description="network name (registry)"),
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
