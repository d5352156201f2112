"""Attention-based camera perception for ROS 2.

Layers (left to right is the data path): core (numpy/cv2), models (torch), runtime,
pipeline, sim, train, bag, fusion, ros (the only package importing rclpy), cli.
"""

__version__ = "0.1.0"
