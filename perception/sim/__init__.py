"""Synthetic driving world rendered with open3d raycasting: camera, LiDAR and exact ground truth.

Entry points: ``drive.generate_sequence`` / ``drive.render_frame`` (frames), ``world.build_world``
(the world of a seed), ``cli`` (``perception sim``). Heavy modules import open3d lazily.
"""

from .config import SimConfig, SimError

__all__ = ["SimConfig", "SimError"]
