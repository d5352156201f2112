"""Tracker configuration: one frozen dataclass per class model, one for the tracker."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from perception.core.classes import detection_id
from perception.core.config import dataclass_kwargs

from .types import TrackingError

MOTION_MODELS = ("cv", "ctrv")


@dataclass(frozen=True)
class ClassModel:
    """How one detection class is tracked.

    - ``motion``: ``"cv"`` (constant velocity, linear Kalman filter on x, y, vx, vy) or ``"ctrv"``
      (constant turn rate and velocity, EKF on x, y, yaw, v, yaw rate; uses the measured heading).
    - ``accel_std`` (m/s^2) and ``yaw_accel_std`` (rad/s^2, CTRV): process noise.
    - ``yaw_std_deg``: standard deviation of a detection's heading (degrees; CTRV weighs the measured
      heading by it, growing with the position noise relative to the box length).
    - ``init_speed_std``: prior standard deviation of the speed of a new track (m/s).
    - ``gate_chi2``: Mahalanobis gate on the bird's-eye-view position innovation (2 dof; 13.8 = 99.9 %);
      ``gate_distance``: hard cap on the centre distance (m) whatever the covariance.
    - ``group``: classes of one group may associate with each other's tracks (car <-> truck).
    - ``n_init``: hits that confirm a track; ``max_age``: seconds a confirmed track coasts without a
      detection before it dies (tentative tracks die at their first miss).
    - ``p_detect``: detection probability of an existing object (existence filter).
    - ``stationary_speed``: below this speed (m/s) an object is stationary (left at 1.5x: hysteresis).
    """

    motion: str = "cv"
    accel_std: float = 2.0
    yaw_accel_std: float = 0.5
    init_speed_std: float = 5.0
    yaw_std_deg: float = 10.0
    gate_chi2: float = 13.8
    gate_distance: float = 3.0
    group: str = ""
    n_init: int = 3
    max_age: float = 1.0
    p_detect: float = 0.85
    stationary_speed: float = 0.5

    def __post_init__(self) -> None:
        if self.motion not in MOTION_MODELS:
            raise TrackingError(f"motion model {self.motion!r}: use one of {', '.join(MOTION_MODELS)}")
        if min(self.accel_std, self.yaw_accel_std, self.init_speed_std, self.gate_chi2, self.gate_distance) <= 0:
            raise TrackingError("accel_std, yaw_accel_std, init_speed_std, gate_chi2 and gate_distance must be > 0")
        if self.n_init < 1 or self.max_age <= 0:
            raise TrackingError(f"n_init {self.n_init} must be >= 1 and max_age {self.max_age} > 0 s")
        if not 0.0 < self.p_detect < 1.0:
            raise TrackingError(f"p_detect {self.p_detect} must lie in (0, 1)")


def default_class_models() -> dict[int, ClassModel]:
    """Vehicles CTRV with a 4 m gate, people CV with a 2 m gate; traffic signs are not tracked."""
    vehicle = dict(motion="ctrv", accel_std=1.5, yaw_accel_std=0.6, init_speed_std=10.0, gate_distance=4.0,
                   group="vehicle")  # fmt: skip
    return {
        detection_id("car"): ClassModel(**vehicle),  # type: ignore[arg-type]
        detection_id("truck"): ClassModel(**vehicle),  # type: ignore[arg-type]
        detection_id("pedestrian"): ClassModel(motion="cv", accel_std=1.5, init_speed_std=2.0, gate_distance=2.0,
                                               group="pedestrian", stationary_speed=0.3),
        detection_id("cyclist"): ClassModel(motion="ctrv", accel_std=2.0, yaw_accel_std=1.0, init_speed_std=6.0,
                                            gate_distance=3.0, group="cyclist"),
    }


@dataclass(frozen=True)
class TrackerConfig:
    """The tracker (ByteTrack-style two-stage association in the odom frame).

    Detections scoring at least ``high_score`` are associated first with every track; the remaining
    tracks then get a second chance with detections scoring in [``low_score``, ``high_score``)
    (low scores are often true objects that are partly occluded). Only unmatched high-score
    detections scoring at least ``birth_score`` start tracks. Confirmed tracks are output while they
    coast up to ``output_coast`` seconds. ``classes`` maps detection class ids to their
    :class:`ClassModel`; classes not in it are ignored. ``fixed_frame`` names the frame of the output (odom)."""

    high_score: float = 0.5
    low_score: float = 0.1
    birth_score: float = 0.5
    output_coast: float = 0.5
    fixed_frame: str = "odom"
    classes: Mapping[int, ClassModel] = field(default_factory=default_class_models)

    def __post_init__(self) -> None:
        if not 0.0 <= self.low_score <= self.high_score <= 1.0:
            raise TrackingError(f"need 0 <= low_score ({self.low_score}) <= high_score ({self.high_score}) <= 1")
        if not 0.0 <= self.birth_score <= 1.0 or self.output_coast < 0:
            raise TrackingError("birth_score must lie in [0, 1] and output_coast be >= 0 s")
        if not self.classes:
            raise TrackingError("TrackerConfig.classes is empty: name at least one class to track")

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> TrackerConfig:
        """From plain values; ``classes`` maps class names or ids to ClassModel fields, overriding the
        defaults of those classes (``{"classes": {"car": {"max_age": 2.0}}}``)."""
        kw, unknown = dataclass_kwargs(TrackerConfig, d)
        if unknown:
            raise TrackingError(f"unknown tracker keys {unknown}")
        if "classes" in kw:
            models = default_class_models()
            for name, fields_ in dict(kw["classes"]).items():
                cid = int(name) if isinstance(name, int) or str(name).isdigit() else detection_id(str(name))
                ckw, bad = dataclass_kwargs(ClassModel, fields_)
                if bad:
                    raise TrackingError(f"unknown class-model keys {bad} for class {name!r}")
                base = models.get(cid, ClassModel())
                models[cid] = ClassModel(**{**base.__dict__, **ckw})
            kw["classes"] = models
        return TrackerConfig(**kw)
