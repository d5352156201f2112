"""One camera: perception_node subscribed to ``camera_topic``.

    ros2 launch perception perception.launch.py camera_topic:=/my_cam/image_raw model:=stan_mbv2
    perception run perception camera_topic:=/my_cam/image_raw          # the same, without ros2 launch

Outputs: /camera/detections, /camera/segmentation, /camera/attention, ... (see docs/ros.md).
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
        DeclareLaunchArgument("device", default_value="cpu", description="cpu, cuda or cuda:N"),
        DeclareLaunchArgument("camera_topic", default_value="/camera/image_raw", description="input image topic"),
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
                    "model.backend": ParameterValue(LaunchConfiguration("backend"), value_type=str),
                    "model.device": ParameterValue(LaunchConfiguration("device"), value_type=str),
                },
            ],
            remappings=[("camera/image_raw", LaunchConfiguration("camera_topic"))],
        ),
    ])
