"""3D multi-object tracking in the odometry frame (numpy/scipy, no rclpy, no torch).

:class:`MultiObjectTracker` takes per frame the ego pose ``odom_T_base`` and the 3D detections
(:class:`perception.core.boxes3d.Boxes3D` in base_link, as fusion produces them) and returns
:class:`TrackedObject` s with stable ids, velocities and covariances. Scoring tracks (MOTA, IDF1, ID
switches, velocity error) and the synthetic world's ground truth as tracks and noisy detections are
evaluation: :mod:`perception.eval.tracking`, :mod:`perception.eval.track_groundtruth`.
"""

from .config import ClassModel, TrackerConfig, default_class_models
from .tracker import MultiObjectTracker
from .types import TrackedObject, TrackingError, track_uuid

__all__ = [
    "ClassModel",
    "MultiObjectTracker",
    "TrackedObject",
    "TrackerConfig",
    "TrackingError",
    "default_class_models",
    "track_uuid",
]
