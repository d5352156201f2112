"""The light of a world (sun, sky, exposure, haze): built by :mod:`.world`, varied by :mod:`.randomize`,
used by :mod:`.shading`. Its own module so that world and randomize need not import each other."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Lighting:
    kind: str
    sun_dir: np.ndarray  # (3,) unit vector towards the sun, world frame
    sun_color: np.ndarray  # (3,) linear RGB irradiance
    ambient: np.ndarray  # (3,)
    sky_zenith: np.ndarray  # (3,)
    sky_horizon: np.ndarray  # (3,)
    exposure: float
    fog_dist: float  # metres; inf disables haze
    sky_curve: float = 0.5  # exponent of the horizon-to-zenith blend (smaller: wider bright horizon band)
