"""The road: a gently curving centreline parametrised by arc length, and its lateral layout.

World frame: x, y on the ground, z up. Road coordinates: ``s`` metres along the centreline,
``d`` metres to the left of it. Lanes are numbered 0..n-1 from the right edge; the first
``num_forward`` lanes carry traffic in +s direction (right-hand traffic), the others oncoming.
From the lanes outward on each side: bike lane, parking strip, curb, sidewalk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BIKE_W = 1.5
PARK_W = 2.3
CURB_H = 0.15


@dataclass(frozen=True)
class Road:
    s: np.ndarray  # (K,) arc length samples, 1 m apart
    xy: np.ndarray  # (K, 2) centreline
    heading: np.ndarray  # (K,) radians
    num_lanes: int
    num_forward: int
    lane_width: float
    sidewalk_w: float

    @property
    def length(self) -> float:
        return float(self.s[-1])

    @property
    def lanes_half(self) -> float:
        return 0.5 * self.num_lanes * self.lane_width

    @property
    def curb(self) -> float:
        """|d| of the curb (edge of the drivable surface)."""
        return self.lanes_half + BIKE_W + PARK_W

    def lane_center(self, lane: int) -> float:
        return -self.lanes_half + (lane + 0.5) * self.lane_width

    def is_forward(self, lane: int) -> bool:
        return lane < self.num_forward

    def heading_at(self, s: np.ndarray | float) -> np.ndarray:
        return np.interp(s, self.s, self.heading)

    def to_world(self, s: np.ndarray | float, d: np.ndarray | float) -> np.ndarray:
        """(..., 2) world xy of road coordinates (s, d); s is clamped to the road."""
        s = np.asarray(s, np.float64)
        d = np.asarray(d, np.float64)
        x = np.interp(s, self.s, self.xy[:, 0])
        y = np.interp(s, self.s, self.xy[:, 1])
        h = np.interp(s, self.s, self.heading)
        return np.stack([x - d * np.sin(h), y + d * np.cos(h)], axis=-1)


def make_road(rng: np.random.Generator, length: float, num_lanes: int, lane_width: float, max_curv: float) -> Road:
    """Centreline with a smooth random curvature profile (|curvature| <= max_curv)."""
    s = np.arange(0.0, length + 1.0, 1.0)
    curv = np.zeros_like(s)
    if rng.random() > 0.25:  # a quarter of the worlds are straight
        for _ in range(2):
            period = rng.uniform(250.0, 700.0)
            curv += rng.uniform(0.3, 0.6) * max_curv * np.sin(2 * np.pi * s / period + rng.uniform(0, 2 * np.pi))
    curv = np.clip(curv, -max_curv, max_curv)
    heading = np.concatenate([[0.0], np.cumsum(0.5 * (curv[1:] + curv[:-1]))])
    heading -= heading[0]
    dx, dy = np.cos(heading), np.sin(heading)
    x = np.concatenate([[0.0], np.cumsum(0.5 * (dx[1:] + dx[:-1]))])
    y = np.concatenate([[0.0], np.cumsum(0.5 * (dy[1:] + dy[:-1]))])
    num_forward = (num_lanes + 1) // 2
    return Road(
        s=s,
        xy=np.column_stack([x, y]),
        heading=heading,
        num_lanes=num_lanes,
        num_forward=num_forward,
        lane_width=lane_width,
        sidewalk_w=float(rng.uniform(3.5, 5.0)),
    )


def strip(road: Road, s0: float, s1: float, d0: float, d1: float, z0: float, z1: float, step: float = 2.0) -> tuple[
    np.ndarray, np.ndarray
]:
    """Quad strip following the road between laterals d0..d1 (heights z0 at d0, z1 at d1).

    With d0 == d1 and z0 != z1 it is a vertical wall (e.g. the curb face)."""
    ss: np.ndarray = np.append(np.arange(s0, s1, step), s1)
    n = len(ss)
    a = road.to_world(ss, np.full(n, d0))
    b = road.to_world(ss, np.full(n, d1))
    v = np.concatenate([np.column_stack([a, np.full(n, z0)]), np.column_stack([b, np.full(n, z1)])])
    i = np.arange(n - 1)
    t = np.concatenate([np.column_stack([i, i + 1, n + i + 1]), np.column_stack([i, n + i + 1, n + i])])
    return v.astype(np.float32), t.astype(np.int64)
