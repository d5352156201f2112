"""LiDAR-camera fusion: 2D detections (+ segmentation) and a LiDAR scan -> 3D objects in base_link.

Pure numpy / scipy (open3d only for the optional comparison paths); no rclpy, no torch. Entry
point: :func:`perception.fusion.fuser.fuse`. Modules: ``geometry`` (extrinsics, projection,
frustums, point painting), ``ground`` (plane fit), ``cluster`` (voxel Euclidean clustering),
``shape`` (L-shape and cylinder fits in bird's-eye view), ``camera_only`` (flat-ground range),
``fuse`` (the staged step and the :class:`Objects3D` output).
"""

from .config import ClassModel, FusionConfig, FusionError
from .fuser import Objects3D, fuse
from .geometry import Extrinsics

__all__ = ["ClassModel", "Extrinsics", "FusionConfig", "FusionError", "Objects3D", "fuse"]
