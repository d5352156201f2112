"""Configuration of the synthetic driving world: one frozen dataclass, plain values only."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from perception.core.types import CameraIntrinsics


class SimError(RuntimeError):
    """Any failure of the synthetic world (bad config, sequence longer than the world...)."""


@dataclass(frozen=True)
class SimConfig:
    """Everything that shapes a synthetic drive. The world is a function of (seed, SimConfig).

    Densities are objects per 100 m of road (per lane, per side or per sidewalk as named).
    ``num_lanes`` 0 draws 2..4 lanes from the seed.
    """

    # camera
    width: int = 640
    height: int = 384
    hfov_deg: float = 90.0
    fps: float = 10.0
    cam_height: float = 1.5
    # road and world
    num_lanes: int = 0
    lane_width: float = 3.5
    world_length_m: float = 1200.0
    max_curvature: float = 1.0 / 250.0
    ego_speed: tuple[float, float] = (6.0, 11.0)
    # object densities
    car_density: float = 2.0  # moving vehicles per 100 m per lane
    truck_fraction: float = 0.18
    parked_density: float = 7.0  # parked vehicles per 100 m per side
    pedestrian_density: float = 8.0  # walkers per 100 m per sidewalk
    crossing_density: float = 2.0  # road-crossing pedestrians per 100 m
    cyclist_density: float = 1.5  # per 100 m per side
    sign_density: float = 3.0  # traffic signs per 100 m per side
    streetlight_spacing: float = 30.0
    tree_density: float = 6.0  # per 100 m per side
    # rendering
    max_range_m: float = 140.0  # things farther than this are not rendered
    fog: bool = True
    degrade: bool = False  # motion blur, sensor noise, JPEG artefacts
    # ground-truth rules
    min_box_height: float = 6.0
    min_visibility: float = 0.1
    # LiDAR
    lidar: bool = False
    lidar_beams: int = 32
    lidar_fov_deg: tuple[float, float] = (-15.0, 15.0)
    lidar_az_step_deg: float = 0.2
    lidar_range_m: float = 100.0
    lidar_height: float = 1.9

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16:
            raise SimError(f"image {self.width}x{self.height} too small: use at least 16x16")
        if not 10.0 <= self.hfov_deg <= 150.0:
            raise SimError(f"hfov_deg {self.hfov_deg} out of range: use 10..150 degrees")
        if self.fps <= 0:
            raise SimError(f"fps must be positive, got {self.fps}")
        if self.num_lanes not in (0, 2, 3, 4):
            raise SimError(f"num_lanes {self.num_lanes} unsupported: use 2, 3, 4 or 0 (random)")
        if self.world_length_m < 300.0:
            raise SimError(f"world_length_m {self.world_length_m} too short: use >= 300 m")
        lo, hi = self.ego_speed
        if not 0.0 < lo <= hi:
            raise SimError(f"ego_speed {self.ego_speed} must be (min, max) with 0 < min <= max")
        if self.lidar_beams < 1 or self.lidar_az_step_deg <= 0:
            raise SimError("lidar_beams must be >= 1 and lidar_az_step_deg > 0")

    @property
    def intrinsics(self) -> CameraIntrinsics:
        return CameraIntrinsics.from_fov(self.width, self.height, self.hfov_deg)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> SimConfig:
        known = {f.name: f for f in fields(SimConfig)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise SimError(f"unknown SimConfig keys {unknown}; known keys: {', '.join(known)}")
        kw: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return SimConfig(**kw)

    def replace(self, **changes: Any) -> SimConfig:
        return dataclasses.replace(self, **changes)
