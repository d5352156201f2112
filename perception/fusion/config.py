"""Configuration of the LiDAR-camera fusion: frozen dataclasses of plain values, and the layer's error."""

from __future__ import annotations

from dataclasses import dataclass, field

from perception.core.classes import DETECTION_NAMES, detection_id


class FusionError(ValueError):
    """Bad input to a ``perception.fusion`` function; the message says what to pass instead."""


@dataclass(frozen=True)
class ClassModel:
    """What fusion knows about one detection class.

    ``height`` is the gate on a cluster's top above the ground (m, Autoware's pedestrian gate is
    0.8-2.2 m); ``max_extent`` the gate on its longest bird's-eye-view side. ``size`` is the prior
    length, width, height: boxes from partial views are grown to it away from the sensor, and the
    camera-only fallback uses it. ``shape`` is ``"box"`` (L-shape fit) or ``"cylinder"``."""

    height: tuple[float, float]
    max_extent: float
    size: tuple[float, float, float]
    shape: str = "box"

    def __post_init__(self) -> None:
        lo, hi = self.height
        if not 0.0 <= lo < hi:
            raise FusionError(f"class height gate {self.height}: use (min, max) metres with 0 <= min < max")
        if self.max_extent <= 0 or min(self.size) <= 0:
            raise FusionError(f"class max_extent {self.max_extent} and size {self.size} must be positive")
        if self.shape not in ("box", "cylinder"):
            raise FusionError(f"class shape {self.shape!r}: use 'box' (vehicles) or 'cylinder' (people)")


def default_classes() -> dict[int, ClassModel]:
    """Detection id -> model for the classes a planner needs (traffic signs are not fused)."""
    return {
        detection_id("car"): ClassModel((0.9, 2.6), 6.5, (4.4, 1.8, 1.5)),
        detection_id("truck"): ClassModel((1.5, 4.5), 14.0, (9.0, 2.5, 3.3)),
        detection_id("pedestrian"): ClassModel((0.8, 2.2), 1.5, (0.6, 0.6, 1.7), "cylinder"),
        detection_id("cyclist"): ClassModel((0.8, 2.4), 2.5, (1.8, 0.6, 1.8), "box"),
    }


@dataclass(frozen=True)
class FusionConfig:
    """Every knob of :func:`perception.fusion.fuser.fuse`; the defaults are the tested ones.

    Crop: points nearer than ``min_depth`` or farther than ``max_range`` (m) from the camera, or
    outside the image, are dropped first. Ground: a plane is fitted by RANSAC (``ground_method``
    ``"ransac"``: numpy on at most ``ground_samples`` low points; ``"open3d"``: open3d's
    ``segment_plane``; ``"band"``: the base_link z = 0 plane, no fit) and points within
    ``ground_height`` above it are removed. Clusters: points are binned in ``voxel`` cells whose
    centroids are linked within ``tolerance`` (Autoware's Euclidean cluster: 0.3 m, 0.7 m) by a
    scipy KD-tree (``cluster_method`` ``"kdtree"``) or open3d's ``cluster_dbscan`` (``"open3d"``);
    a segmentation mask refines the association (see ``fuser._candidates``). Association:
    a cluster answers a detection when at least ``min_points`` of its points fall in the box and the
    columns of its points overlap the box's by ``min_overlap`` (IoU). Boxes: the L-shape search steps
    ``yaw_step_deg`` then refines at ``yaw_fine_deg`` on at most ``shape_points`` points.
    Camera-only: ``pixel_sigma`` is the bottom-edge error (px) the range covariance grows from.
    LiDAR-only objects (``lidar_only``): clusters no detection claimed within ``lidar_only_range`` m,
    of at least ``lidar_only_min_points`` points, at least ``lidar_only_min_share`` painted with
    their class, not centred within ``lidar_only_dedup`` m of another LiDAR box, scored ``lidar_only_score`` x
    that share (below the tracker's ``birth_score`` they keep tracks alive but start none).
    """

    min_depth: float = 1.0
    max_range: float = 80.0
    ground_method: str = "ransac"
    ground_height: float = 0.25
    ground_samples: int = 2000
    ground_iterations: int = 60
    ground_max_tilt_deg: float = 10.0
    voxel: float = 0.3
    tolerance: float = 0.7
    cluster_method: str = "kdtree"
    min_points: int = 3
    min_overlap: float = 0.2
    paint: bool = True
    yaw_step_deg: float = 2.0
    yaw_fine_deg: float = 0.25
    shape_points: int = 400
    pixel_sigma: float = 2.0
    lidar_sigma: float = 0.15
    camera_fallback: bool = True
    lidar_only: bool = True
    lidar_only_range: float = 50.0
    lidar_only_min_points: int = 5
    lidar_only_min_share: float = 0.6
    lidar_only_dedup: float = 0.5
    lidar_only_gate_rel: float = 0.2
    lidar_only_score: float = 0.3
    classes: dict[int, ClassModel] = field(default_factory=default_classes)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.min_depth < self.max_range:
            raise FusionError(f"min_depth {self.min_depth} / max_range {self.max_range}: use 0 < min_depth < max_range")
        if self.ground_method not in ("ransac", "open3d", "band"):
            raise FusionError(f"ground_method {self.ground_method!r}: use 'ransac', 'open3d' or 'band'")
        if self.cluster_method not in ("kdtree", "open3d"):
            raise FusionError(
                f"cluster_method {self.cluster_method!r}: use 'kdtree' (scipy) or 'open3d' (cluster_dbscan)"
            )
        if self.voxel <= 0 or self.tolerance <= 0 or self.ground_height <= 0:
            raise FusionError("voxel, tolerance and ground_height must be positive metres")
        if self.min_points < 1 or not 0.0 <= self.min_overlap < 1.0:
            raise FusionError(f"min_points {self.min_points} must be >= 1 and min_overlap {self.min_overlap} in [0, 1)")
        if not 0.0 < self.yaw_fine_deg <= self.yaw_step_deg <= 45.0:
            raise FusionError("use 0 < yaw_fine_deg <= yaw_step_deg <= 45")
        if self.ground_samples < 3 or self.ground_iterations < 1 or self.shape_points < 3:
            raise FusionError("ground_samples and shape_points must be >= 3, ground_iterations >= 1")
        if not 0.0 < self.lidar_only_score <= 1.0 or not 0.0 <= self.lidar_only_min_share <= 1.0:
            raise FusionError("lidar_only_score must lie in (0, 1] and lidar_only_min_share in [0, 1]")
        if self.lidar_only_min_points < 1 or self.lidar_only_range <= self.min_depth or self.lidar_only_dedup < 0:
            raise FusionError("lidar_only_min_points must be >= 1, lidar_only_range > min_depth, lidar_only_dedup >= 0")
        bad = sorted(k for k in self.classes if not 0 <= k < len(DETECTION_NAMES))
        if bad:
            raise FusionError(f"classes has unknown detection ids {bad}; known: {dict(enumerate(DETECTION_NAMES))}")
