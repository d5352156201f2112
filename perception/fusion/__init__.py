"""LiDAR-camera fusion: 2D detections (+ segmentation) and a LiDAR scan -> 3D objects in base_link.

Pure numpy / scipy (open3d only for the optional comparison paths); no rclpy, no torch. Entry
point: :func:`perception.fusion.fuser.fuse`. Modules: ``geometry`` (extrinsics, projection,
frustums, point painting), ``ground`` (plane fit), ``cluster`` (voxel Euclidean clustering),
``shape`` (L-shape and cylinder fits in bird's-eye view), ``camera_only`` (flat-ground range),
``fuser`` (the staged step; its output is a :class:`perception.core.boxes3d.Boxes3D` in base_link).
"""

from .config import ClassModel, FusionConfig, FusionError
from .fuser import fuse
from .geometry import Extrinsics

__all__ = ["ClassModel", "Extrinsics", "FusionConfig", "FusionError", "fuse"]
