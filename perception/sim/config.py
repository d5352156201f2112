"""Configuration of the synthetic driving world: one frozen dataclass, plain values only."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

from perception.core.config import dataclass_kwargs
from perception.core.types import CameraIntrinsics


class SimError(RuntimeError):
    """Any failure of the synthetic world (bad config, sequence longer than the world...)."""


@dataclass(frozen=True)
class DomainRandomization:
    """Domain randomisation of a drive (after Tremblay et al. 2018); every effect off by default.

    Strengths are in [0, 1]; each effect draws from its own random stream of the world seed, so
    switching one on or off leaves the others' draws unchanged, and the same seed gives the same pixels.

    - ``textures``: share of surface parts (road, walls, trees, every part of every object...) given a
      random colour and a procedural texture (stripes, checker, blotches, smooth noise).
    - ``lighting``: blend from the drive's natural light towards a random one (sun direction, colour
      and intensity, ambient, sky gradient colours, haze); exposure follows (auto-exposure).
    - ``camera``: blend from ``SimConfig``'s camera towards one drawn per drive from ``cam_height``,
      ``cam_pitch_deg`` (positive looks down), ``hfov_deg`` and +-``exposure_ev`` stops.
    - ``sensor``: probability and strength of per-drive white balance, vignetting, defocus, and per-frame
      motion blur, noise and JPEG artefacts.
    - ``distractors``: flying distractors (random shapes in random textures floating over the road
      and sidewalks) per 100 m of road. They are no object: void (``IGNORE_INDEX``) in the semantic
      masks, instance 0, no boxes; they occlude objects like any other surface.
    """

    textures: float = 0.0
    lighting: float = 0.0
    camera: float = 0.0
    sensor: float = 0.0
    distractors: float = 0.0
    cam_height: tuple[float, float] = (1.2, 3.0)
    cam_pitch_deg: tuple[float, float] = (-3.0, 12.0)
    hfov_deg: tuple[float, float] = (50.0, 110.0)
    exposure_ev: float = 1.0

    def __post_init__(self) -> None:
        for name in ("textures", "lighting", "camera", "sensor"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SimError(f"randomize.{name} = {getattr(self, name)} out of range: use a strength in 0..1")
        if self.distractors < 0:
            raise SimError(f"randomize.distractors = {self.distractors}: use distractors per 100 m, >= 0")
        for name, lo_ok, hi_ok in (("cam_height", 0.3, 10.0), ("cam_pitch_deg", -30.0, 45.0),
                                   ("hfov_deg", 10.0, 150.0)):  # fmt: skip
            lo, hi = getattr(self, name)
            if not lo_ok <= lo <= hi <= hi_ok:
                raise SimError(f"randomize.{name} = {(lo, hi)}: use (min, max) with {lo_ok} <= min <= max <= {hi_ok}")
        if not 0.0 <= self.exposure_ev <= 4.0:
            raise SimError(f"randomize.exposure_ev = {self.exposure_ev}: use 0..4 stops")

    @property
    def enabled(self) -> bool:
        return any(getattr(self, k) > 0 for k in ("textures", "lighting", "camera", "sensor", "distractors"))

    @staticmethod
    def full() -> DomainRandomization:
        """Every effect on at full strength, 10 distractors per 100 m (``perception sim --randomize``)."""
        return DomainRandomization(textures=1.0, lighting=1.0, camera=1.0, sensor=1.0, distractors=10.0)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @staticmethod
    def from_dict(d: dict[str, Any] | bool | DomainRandomization | None) -> DomainRandomization:
        """From a mapping of fields; ``True`` is :meth:`full`, ``False``/``None``/``{}`` all off."""
        if isinstance(d, DomainRandomization):
            return d
        if d is True:
            return DomainRandomization.full()
        if not d:
            return DomainRandomization()
        if not isinstance(d, dict):
            raise SimError(f"randomize must be a mapping of strengths or true/false, not {d!r}")
        kw, unknown = dataclass_kwargs(DomainRandomization, d)
        if unknown:
            known = sorted(f.name for f in fields(DomainRandomization))
            raise SimError(f"unknown randomize keys {unknown}; known keys: {', '.join(known)}")
        return DomainRandomization(**kw)


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
    # domain randomisation (off by default; see DomainRandomization)
    randomize: DomainRandomization = field(default_factory=DomainRandomization)

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
        if not isinstance(self.randomize, DomainRandomization):
            raise SimError("randomize must be a DomainRandomization (use SimConfig.from_dict for mappings)")

    @property
    def intrinsics(self) -> CameraIntrinsics:
        """The nominal camera; a drive's own is ``World.intrinsics`` (it differs with ``randomize.camera``)."""
        return CameraIntrinsics.from_fov(self.width, self.height, self.hfov_deg)

    def to_dict(self) -> dict[str, Any]:
        """Plain values; ``randomize`` only when some effect is on (so default configs read as before)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, DomainRandomization):
                if v.enabled:
                    out[f.name] = v.to_dict()
            else:
                out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @staticmethod
    def from_dict(d: dict[str, Any]) -> SimConfig:
        known = {f.name: f for f in fields(SimConfig)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise SimError(f"unknown SimConfig keys {unknown}; known keys: {', '.join(known)}")
        kw: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        if "randomize" in kw:
            kw["randomize"] = DomainRandomization.from_dict(kw["randomize"])
        return SimConfig(**kw)

    def replace(self, **changes: Any) -> SimConfig:
        return dataclasses.replace(self, **changes)
