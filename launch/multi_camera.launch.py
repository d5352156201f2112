"""Several cameras, one perception_node, one model (batched inference, per-camera temporal state).

    ros2 launch perception multi_camera.launch.py        # cameras from config/multi_camera.yaml
    perception run multi_camera

Inputs /front/image_raw, /left/image_raw, /right/image_raw; outputs /<camera>/detections, ...
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
        DeclareLaunchArgument("backend", default_value="auto", description="inference runtime: auto | tensorrt | onnxruntime | torch"),
        Node(
            package="perception",
            executable="perception_node",
            name="perception",
            output="screen",
            parameters=[
                os.path.join(config, "perception.yaml"),
                os.path.join(config, "multi_camera.yaml"),
                {
                    "model.name": ParameterValue(LaunchConfiguration("model"), value_type=str),
                    "model.checkpoint": ParameterValue(LaunchConfiguration("checkpoint"), value_type=str),
                    "model.backend": ParameterValue(LaunchConfiguration("backend"), value_type=str),
                },
            ],
        ),
    ])
