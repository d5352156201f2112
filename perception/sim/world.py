"""The world of one seed: static meshes, agents with trajectories as functions of time, ego, light.

``build_world(seed, cfg)`` is deterministic. Static geometry (road, markings, sidewalks,
buildings, vegetation, poles) is one Mesh raycast from a prebuilt scene. "Things" (vehicles,
people, sign plates) are agents: a template mesh plus a motion evaluated vectorised over all
agents by ``agent_states(world, t)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perception.core.classes import semantic_id
from perception.core.types import CameraIntrinsics

from . import things
from .config import SimConfig, SimError
from .lighting import Lighting
from .meshes import (
    FACE_POS_Z,
    MAT_ASPHALT,
    MAT_FACADE,
    MAT_FOLIAGE,
    MAT_GRASS,
    MAT_LAMP,
    MAT_METAL,
    MAT_PAINT,
    MAT_PAVING,
    MAT_PLAIN,
    Mesh,
    MeshBuilder,
    box,
    icosphere,
    ngon,
    prism,
    rot_z,
    transform,
)
from .road import BIKE_W, CURB_H, PARK_W, Road, make_road, strip

ROAD, MARKING, SIDEWALK = semantic_id("road"), semantic_id("lane_marking"), semantic_id("sidewalk")
BUILDING, VEGETATION, TERRAIN = semantic_id("building"), semantic_id("vegetation"), semantic_id("terrain")
POLE = semantic_id("pole")

# motion kinds
STATIC, LANE, CROSS = 0, 1, 2
EGO_MARGIN_END = 170.0  # the ego stops this far before the end of the world


@dataclass(frozen=True)
class Agents:
    """Motion parameters of every agent, one array entry per agent (index = track id - 1)."""

    templates: tuple[things.Template, ...]
    kind: np.ndarray  # STATIC / LANE / CROSS
    s0: np.ndarray
    d0: np.ndarray
    d1: np.ndarray
    speed: np.ndarray
    direction: np.ndarray  # +1 along s, -1 against
    wrap: np.ndarray  # period in metres, 0 = no wrap-around
    t0: np.ndarray  # crossing start (CROSS)
    t1: np.ndarray  # crossing end (CROSS)
    z: np.ndarray  # ground height when not crossing (sidewalk top or 0)
    yaw_offset: np.ndarray

    def __len__(self) -> int:
        return len(self.templates)

    @property
    def track_ids(self) -> np.ndarray:
        return np.arange(1, len(self) + 1, dtype=np.int64)


@dataclass(frozen=True)
class AgentStates:
    """Poses of all agents at one time (world frame)."""

    s: np.ndarray
    xyz: np.ndarray  # (N, 3) ground point under the centre
    yaw: np.ndarray  # (N,)
    walk: np.ndarray  # (N,) distance walked (animation phase)


@dataclass(frozen=True)
class Ego:
    lane: int
    s0: float
    speed: float
    d: float

    def s_at(self, t: float) -> float:
        return self.s0 + self.speed * t


@dataclass(frozen=True)
class CameraRig:
    """The camera of a drive: mounting height above the ground (m), pitch (degrees, positive looks
    down) and horizontal field of view. SimConfig's camera unless ``randomize.camera`` is on."""

    height: float
    pitch_deg: float
    hfov_deg: float


@dataclass
class World:
    seed: int
    cfg: SimConfig
    road: Road
    static: Mesh
    agents: Agents
    ego: Ego
    light: Lighting
    crossings: np.ndarray  # s of pedestrian crossings
    camera: CameraRig
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def intrinsics(self) -> CameraIntrinsics:
        """Intrinsics of this drive's camera (``cfg.intrinsics`` unless the camera is randomised)."""
        return CameraIntrinsics.from_fov(self.cfg.width, self.cfg.height, self.camera.hfov_deg)

    @property
    def max_time(self) -> float:
        return (self.road.length - EGO_MARGIN_END - self.ego.s0) / self.ego.speed

    def static_scene(self) -> Any:
        """The prebuilt open3d RaycastingScene of the static mesh (built once, cached)."""
        if "static" not in self._cache:
            import open3d as o3d

            scene = o3d.t.geometry.RaycastingScene()
            scene.add_triangles(
                o3d.core.Tensor.from_numpy(self.static.vertices),
            o3d.core.Tensor.from_numpy(np.ascontiguousarray(self.static.triangles, np.uint32)),
            )
            self._cache["static"] = scene
        return self._cache["static"]


# ---------------------------------------------------------------- motion ----


def agent_states(world: World, t: float, idx: np.ndarray | None = None) -> AgentStates:
    """Vectorised poses at time t of agents ``idx`` (all when None)."""
    a = world.agents
    sel = np.arange(len(a)) if idx is None else idx
    kind, s0, spd, dirn = a.kind[sel], a.s0[sel], a.speed[sel], a.direction[sel]
    t0, t1, d0, d1 = a.t0[sel], a.t1[sel], a.d0[sel], a.d1[sel]
    s = np.where(kind == LANE, s0 + dirn * spd * t, s0)
    wrap = a.wrap[sel]
    s = np.where(wrap > 0, np.mod(s, np.where(wrap > 0, wrap, 1.0)), s)
    cross = kind == CROSS
    before, after = cross & (t < t0), cross & (t > t1)
    s = np.where(before, s0 - dirn * spd * (t0 - t), s)
    s = np.where(after, s0 + dirn * spd * (t - t1), s)
    frac = np.clip((t - t0) / np.maximum(t1 - t0, 1e-6), 0.0, 1.0)
    d = np.where(cross, d0 + (d1 - d0) * frac, d0)
    on_road = cross & ~before & ~after & (np.abs(d) < world.road.curb)
    z = np.where(on_road, 0.0, a.z[sel])
    yaw = world.road.heading_at(s) + np.where(dirn > 0, 0.0, np.pi) + a.yaw_offset[sel]
    crossing_now = cross & ~before & ~after
    yaw = np.where(crossing_now, world.road.heading_at(s) + np.sign(d1 - d0) * np.pi / 2, yaw)
    xy = world.road.to_world(s, d)
    walk = spd * t
    return AgentStates(s=s, xyz=np.column_stack([xy, z]), yaw=yaw, walk=walk)


def ego_pose(world: World, t: float, height: float) -> np.ndarray:
    """4x4 world_T_base of a point ``height`` above the ego's ground point: x forward, y left, z up.

    Includes a small deterministic lane-keeping sway and pitch/roll vibration."""
    if t > world.max_time + 1e-9:
        raise SimError(
            f"time {t:.1f}s is beyond this world's end ({world.max_time:.1f}s of driving at "
            f"{world.ego.speed:.1f} m/s): raise SimConfig.world_length_m or render fewer frames"
        )
    s = world.ego.s_at(t)
    sway = 0.12 * np.sin(0.37 * t + world.seed % 7)
    xy = world.road.to_world(s, world.ego.d + sway)
    yaw = float(world.road.heading_at(s)) + 0.01 * np.cos(0.37 * t + world.seed % 7)
    pitch = 0.004 * np.sin(7.1 * t) + 0.002 * np.sin(13.3 * t + 1.0)
    roll = 0.002 * np.sin(5.3 * t + 2.0)
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    T = np.eye(4)
    T[:3, :3] = rz @ ry @ rx
    T[:3, 3] = [xy[0], xy[1], height + 0.01 * np.sin(9.0 * t)]
    return T


# BASE_T_CAM: optical frame (x right, y down, z forward) in the base frame (x fwd, y left, z up)
BASE_R_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def camera_pose(world: World, t: float) -> np.ndarray:
    """4x4 world_T_cam of the optical frame at time t: the ego pose at the camera's height, pitched
    down by the rig's pitch (a rotation about the optical x axis)."""
    T = ego_pose(world, t, world.camera.height)
    out = T.copy()
    out[:3, :3] = T[:3, :3] @ BASE_R_OPTICAL
    if world.camera.pitch_deg:
        p = np.deg2rad(world.camera.pitch_deg)
        c, s = np.cos(p), np.sin(p)
        out[:3, :3] = out[:3, :3] @ np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])
    return out


# --------------------------------------------------------------- building ----


def _road_box(
    b: MeshBuilder, road: Road, s: float, d: float, size: tuple[float, float, float], z: float, sem: int,
    color: np.ndarray | tuple[float, float, float], mat: int, yaw_off: float = 0.0, param: tuple[float, float] = (0, 0),
) -> np.ndarray:  # fmt: skip
    v, t = box(size, (0.0, 0.0, z))
    xy = road.to_world(s, d)
    v = transform(v, rot_z(float(road.heading_at(s)) + yaw_off), (xy[0], xy[1], 0.0))
    return b.add((v, t), sem, color, mat, param=param)


def _lighting(rng: np.random.Generator) -> Lighting:
    kind = str(rng.choice(["day", "low_sun", "overcast", "dusk"], p=[0.5, 0.25, 0.15, 0.1]))
    elev = {"day": (35, 70), "low_sun": (8, 20), "overcast": (40, 60), "dusk": (2, 7)}[kind]
    el, az = np.deg2rad(rng.uniform(*elev)), rng.uniform(0, 2 * np.pi)
    sun_dir = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    table = {
        "day": ((1.0, 0.96, 0.88), 1.1, (0.34, 0.38, 0.46), (0.25, 0.45, 0.85), (0.7, 0.8, 0.92), 1.0, (400, 900)),
        "low_sun": ((1.0, 0.78, 0.5), 1.0, (0.3, 0.3, 0.38), (0.2, 0.35, 0.7), (0.95, 0.78, 0.6), 1.0, (300, 700)),
        "overcast": ((1.0, 1.0, 1.0), 0.3, (0.62, 0.63, 0.66), (0.55, 0.57, 0.6), (0.78, 0.79, 0.8), 1.0, (150, 350)),
        "dusk": ((1.0, 0.55, 0.3), 0.55, (0.16, 0.15, 0.22), (0.08, 0.1, 0.25), (0.6, 0.4, 0.35), 0.8, (200, 450)),
    }
    sun_c, sun_i, amb, zen, hor, expo, fog = table[kind]
    exposure = expo * rng.uniform(0.75, 1.25)
    return Lighting(
        kind=kind,
        sun_dir=sun_dir,
        sun_color=np.asarray(sun_c) * sun_i * rng.uniform(0.9, 1.1),
        ambient=np.asarray(amb) * rng.uniform(0.85, 1.15),
        sky_zenith=np.asarray(zen),
        sky_horizon=np.asarray(hor),
        exposure=float(exposure),
        fog_dist=float(rng.uniform(*fog)),
    )


def _markings(b: MeshBuilder, road: Road, rng: np.random.Generator, crossings: np.ndarray, zebra: np.ndarray) -> None:
    L, hw = road.length, road.lanes_half
    white = np.array([0.85, 0.85, 0.82]) * rng.uniform(0.85, 1.0)
    z = 0.012

    def solid(d: float, w: float = 0.15) -> None:
        b.add(strip(road, 0.0, L, d - w / 2, d + w / 2, z, z), MARKING, white, MAT_PAINT)

    def dashed(d: float, dash: float, gap: float, w: float = 0.13) -> None:
        for s in np.arange(rng.uniform(0, gap), L - dash, dash + gap):
            _road_box(b, road, float(s + dash / 2), d, (dash, w, 0.02), 0.0, MARKING, white, MAT_PAINT)

    solid(-hw)
    solid(hw)
    center = road.lane_center(road.num_forward) - road.lane_width / 2
    if road.num_lanes >= 4:
        solid(center - 0.12)
        solid(center + 0.12)
    else:
        solid(center)
    for lane in range(1, road.num_lanes):
        d = -hw + lane * road.lane_width
        if abs(d - center) > 0.5:
            dashed(d, 3.0, 6.0)
    for side in (-1.0, 1.0):
        dashed(side * (hw + BIKE_W), 1.0, 1.5, 0.1)
    for s_c, z_on in zip(crossings, zebra):
        if not z_on:
            continue
        for dd in np.arange(-hw + 0.5, hw - 0.2, 1.0):
            _road_box(b, road, float(s_c), float(dd), (3.0, 0.5, 0.02), 0.0, MARKING, white, MAT_PAINT)


_FACADES = np.array(
    [[0.75, 0.68, 0.55], [0.55, 0.28, 0.2], [0.6, 0.6, 0.6], [0.85, 0.84, 0.8], [0.8, 0.72, 0.45],
     [0.3, 0.32, 0.35], [0.45, 0.5, 0.55], [0.7, 0.55, 0.45]]
)  # fmt: skip


def _buildings(b: MeshBuilder, road: Road, rng: np.random.Generator, veg: list[tuple[float, float]]) -> None:
    urban = rng.random() < 0.6
    hmin, hmax = (9.0, 36.0) if urban else (4.0, 12.0)
    inner = road.curb + road.sidewalk_w
    for side in (-1.0, 1.0):
        s = -30.0
        while s < road.length + 30:
            if rng.random() < (0.15 if urban else 0.35):
                gap = rng.uniform(5.0, 18.0)
                veg.append((s + gap / 2, side))
                s += gap
                continue
            w = rng.uniform(8.0, 26.0)
            depth, h = rng.uniform(8.0, 20.0), rng.uniform(hmin, hmax)
            setback = rng.uniform(0.3, 4.0) if urban else rng.uniform(2.0, 9.0)
            color = np.clip(_FACADES[rng.integers(len(_FACADES))] * rng.uniform(0.8, 1.15, 3), 0, 1)
            param = (rng.uniform(2.0, 3.6), rng.uniform(2.8, 3.6))
            d = side * (inner + setback + depth / 2)
            col = _road_box(b, road, s + w / 2, d, (w, depth, h), h / 2, BUILDING, color, MAT_FACADE, param=param)
            col[2 * FACE_POS_Z : 2 * FACE_POS_Z + 2] = color * 0.5  # roof
            if urban and rng.random() < 0.6:  # shop front on the ground floor
                shop = np.clip(color * rng.uniform(0.4, 0.9, 3), 0, 1)
                _road_box(b, road, s + w / 2, d - side * 0.15, (w - 0.4, depth, 3.4), 1.7, BUILDING, shop,
                          MAT_FACADE, param=(rng.uniform(3.5, 6.0), 3.4))  # fmt: skip
            s += w + (rng.uniform(0.0, 2.0) if rng.random() < 0.3 else 0.0)


def _tree(b: MeshBuilder, rng: np.random.Generator, x: float, y: float, z: float, scale: float = 1.0) -> None:
    trunk_h = rng.uniform(1.8, 3.5) * scale
    v, t = prism(ngon(6, rng.uniform(0.1, 0.2) * scale), z, z + trunk_h + 0.5)
    b.add((v + np.array([x, y, 0], np.float32), t), VEGETATION, (0.25, 0.18, 0.12), MAT_PLAIN)
    r = rng.uniform(1.3, 3.0, 3) * scale
    r[2] *= rng.uniform(0.9, 1.5)
    green = np.array([0.16, 0.32, 0.08]) * rng.uniform(0.6, 1.3, 3)
    for _ in range(1 + int(rng.integers(2))):
        off = rng.normal(0, 0.35, 3) * r
        v, t = icosphere(tuple(r * rng.uniform(0.7, 1.0, 3)), 0.2, rng)
        b.add((v + np.array([x + off[0], y + off[1], z + trunk_h + r[2] * 0.8 + off[2] * 0.3], np.float32), t),
              VEGETATION, np.clip(green, 0, 1), MAT_FOLIAGE)  # fmt: skip


def _street_furniture(
    b: MeshBuilder, road: Road, cfg: SimConfig, rng: np.random.Generator
) -> list[tuple[float, float]]:
    """Street lights (pole class); returns occupied (s, side) spots."""
    spots: list[tuple[float, float]] = []
    grey = np.array([0.35, 0.36, 0.38])
    for side in (-1.0, 1.0):
        if rng.random() < 0.25:
            continue
        for s in np.arange(rng.uniform(0, cfg.streetlight_spacing), road.length, cfg.streetlight_spacing):
            d = side * (road.curb + 0.35)
            xy = road.to_world(float(s), d)
            hgt = 7.5
            v, t = prism(ngon(8, 0.09), CURB_H, hgt)
            b.add((v + np.array([xy[0], xy[1], 0], np.float32), t), POLE, grey, MAT_METAL)
            _road_box(b, road, float(s), d - side * 0.9, (0.1, 1.8, 0.1), hgt - 0.05, POLE, grey, MAT_METAL)
            _road_box(b, road, float(s), d - side * 1.7, (0.6, 0.3, 0.15), hgt - 0.15, POLE, (0.9, 0.9, 0.8),
                      MAT_LAMP)  # fmt: skip
            spots.append((float(s), side))
    return spots


def _positions(rng: np.random.Generator, lo: float, hi: float, count: float, min_gap: float) -> np.ndarray:
    """Sorted positions in [lo, hi) with at least ``min_gap`` between them, about ``count`` of them."""
    n = rng.poisson(max(count, 0.0))
    if n == 0:
        return np.zeros(0)
    extra = max((hi - lo) - n * min_gap, 0.0)
    p = np.sort(rng.uniform(0.0, extra, n)) + np.arange(n) * min_gap + lo
    return p[p < hi]


class _AgentList:
    def __init__(self) -> None:
        self.templates: list[things.Template] = []
        self.rows: list[tuple[float, ...]] = []

    def add(self, tpl: things.Template, kind: int, s0: float, d0: float, *, d1: float | None = None,
            speed: float = 0.0, direction: float = 1.0, wrap: float = 0.0, t0: float = 0.0, t1: float = 0.0,
            z: float = 0.0, yaw_offset: float = 0.0) -> None:  # fmt: skip
        self.templates.append(tpl)
        self.rows.append((kind, s0, d0, d0 if d1 is None else d1, speed, direction, wrap, t0, t1, z, yaw_offset))

    @property
    def next_id(self) -> int:
        return len(self.templates) + 1

    def build(self) -> Agents:
        r = np.array(self.rows, np.float64).reshape(-1, 11)
        return Agents(tuple(self.templates), r[:, 0].astype(np.int64), *(r[:, i] for i in range(1, 11)))


def _crossing_time(
    road: Road, ego: Ego, agents: Agents, s_c: float, d0: float, d1: float, v: float, rng: np.random.Generator
) -> float | None:
    """Start time of a crossing at s_c that clears the ego lane before the ego arrives and hits no vehicle."""
    dur = abs(d1 - d0) / v
    t_exit = (abs(ego.d - d0) + 1.8) / v  # leaves the ego corridor this long after starting
    t_ego = (s_c - 3.0 - ego.s0) / ego.speed
    moving = np.flatnonzero(agents.kind == LANE)
    length = np.array([agents.templates[i].size[0] for i in moving])
    width = np.array([agents.templates[i].size[1] for i in moving])
    for k in range(10):
        t0 = t_ego - rng.uniform(0.5, 3.0) - t_exit - 2.0 * k
        ts = np.arange(t0 - 0.5, t0 + dur + 0.5, 0.1)
        d = d0 + (d1 - d0) * np.clip((ts - t0) / dur, 0, 1)
        s = agents.s0[moving][None] + agents.direction[moving][None] * agents.speed[moving][None] * ts[:, None]
        wrap = agents.wrap[moving]
        s = np.where(wrap > 0, np.mod(s, np.where(wrap > 0, wrap, 1.0)), s)
        hit = (np.abs(s - s_c) < length / 2 + 0.8) & (np.abs(agents.d0[moving][None] - d[:, None]) < width / 2 + 0.6)
        if not hit.any():
            return float(t0)
    return None


def build_world(seed: int, cfg: SimConfig) -> World:
    """Deterministic world of ``seed``: road, static mesh, agents, ego and lighting."""
    if seed < 0:
        raise SimError(f"seed must be >= 0, got {seed}")
    rng = np.random.default_rng([seed, 11])
    num_lanes = cfg.num_lanes or int(rng.integers(2, 5))
    road = make_road(rng, cfg.world_length_m, num_lanes, cfg.lane_width, cfg.max_curvature)
    L = road.length
    light = _lighting(np.random.default_rng([seed, 12]))

    # ego
    erng = np.random.default_rng([seed, 13])
    ego_lane = int(erng.integers(road.num_forward))
    ego = Ego(lane=ego_lane, s0=float(erng.uniform(40.0, 60.0)), speed=float(erng.uniform(*cfg.ego_speed)),
              d=road.lane_center(ego_lane))  # fmt: skip

    # domain randomisation: camera rig and light (own random streams; nothing drawn when off)
    dr = cfg.randomize
    camera = CameraRig(cfg.cam_height, 0.0, cfg.hfov_deg)
    if dr.enabled:
        from . import randomize

        if dr.camera > 0:
            height, pitch, hfov, gain = randomize.random_camera(cfg, np.random.default_rng([seed, 20]))
            camera = CameraRig(height, pitch, hfov)
            light = dataclasses.replace(light, exposure=light.exposure * gain)
        if dr.lighting > 0:
            light = randomize.randomize_lighting(light, dr.lighting, np.random.default_rng([seed, 21]))

    # crossings
    crng = np.random.default_rng([seed, 14])
    crossings = _positions(crng, 70.0, L - 60.0, cfg.crossing_density * L / 100.0, 25.0)
    zebra = crng.random(len(crossings)) < 0.5

    # static world
    srng = np.random.default_rng([seed, 15])
    b = MeshBuilder()
    x0, y0 = road.xy.min(0) - 600.0
    x1, y1 = road.xy.max(0) + 600.0
    ground = np.array([[x0, y0, -0.03], [x1, y0, -0.03], [x1, y1, -0.03], [x0, y1, -0.03]], np.float32)
    b.add((ground, np.array([[0, 1, 2], [0, 2, 3]])), TERRAIN, np.array([0.2, 0.28, 0.1]) * srng.uniform(0.8, 1.2, 3),
          MAT_GRASS)  # fmt: skip
    asphalt = np.array([0.13, 0.13, 0.14]) * srng.uniform(0.8, 1.3)
    b.add(strip(road, 0.0, L, -road.curb, road.curb, 0.0, 0.0), ROAD, asphalt, MAT_ASPHALT)
    pave = np.array([0.42, 0.4, 0.37]) * srng.uniform(0.8, 1.2, 3)
    for side in (-1.0, 1.0):
        c, o = side * road.curb, side * (road.curb + road.sidewalk_w)
        b.add(strip(road, 0.0, L, c, o, CURB_H, CURB_H), SIDEWALK, pave, MAT_PAVING)
        b.add(strip(road, 0.0, L, c, c, 0.0, CURB_H), SIDEWALK, pave * 0.8, MAT_PLAIN)
        b.add(strip(road, 0.0, L, o, o, CURB_H, 0.0), SIDEWALK, pave * 0.8, MAT_PLAIN)
    _markings(b, road, srng, crossings, zebra)
    gaps: list[tuple[float, float]] = []
    _buildings(b, road, srng, gaps)
    spots = _street_furniture(b, road, cfg, srng)
    # trees: curb-side on the sidewalk, in building gaps, and behind the buildings line
    for side in (-1.0, 1.0):
        for s in _positions(srng, 0.0, L, cfg.tree_density * L / 100.0, 7.0):
            if any(abs(s - s2) < 3.0 and side == sd for s2, sd in spots) or np.any(np.abs(crossings - s) < 5.0):
                continue
            xy = road.to_world(s, side * (road.curb + 0.8))
            _tree(b, srng, float(xy[0]), float(xy[1]), CURB_H, 0.8)
    for s, side in gaps:
        for _ in range(int(srng.integers(1, 4))):
            d = side * (road.curb + road.sidewalk_w + srng.uniform(2.0, 14.0))
            xy = road.to_world(s + srng.uniform(-4, 4), d)
            _tree(b, srng, float(xy[0]), float(xy[1]), 0.0)
        if srng.random() < 0.5:  # hedge
            _road_box(b, road, s, side * (road.curb + road.sidewalk_w + 0.6), (srng.uniform(4, 9), 0.8, 1.1), 0.55,
                      VEGETATION, (0.12, 0.25, 0.07), MAT_FOLIAGE)  # fmt: skip

    # agents
    arng = np.random.default_rng([seed, 16])
    al = _AgentList()
    grey = (0.4, 0.4, 0.42)
    for side in (-1.0, 1.0):  # signs: pole (static) + plate (thing)
        for s in _positions(arng, 20.0, L, cfg.sign_density * L / 100.0, 15.0):
            if any(abs(s - s2) < 2.0 and side == sd for s2, sd in spots):
                continue
            tpl = things.sign_plate(arng, al.next_id)
            facing_ego = side < 0 or arng.random() < 0.3
            yaw_off = np.pi if facing_ego else 0.0
            d = side * (road.curb + 0.3)
            plate_z = CURB_H + arng.uniform(1.8, 2.3)
            al.add(tpl, STATIC, float(s), d, z=plate_z, yaw_offset=yaw_off)
            back = -0.06 if facing_ego else 0.06  # pole behind the plate
            xy = road.to_world(s + back, d)
            v, t = prism(ngon(8, 0.04), CURB_H, plate_z + tpl.size[2] * 0.8)
            b.add((v + np.array([xy[0], xy[1], 0], np.float32), t), POLE, grey, MAT_METAL)
    if dr.distractors > 0:
        randomize.add_distractors(b, road, dr.distractors, ego.d, max(camera.height, cfg.lidar_height),
                                  np.random.default_rng([seed, 23]))  # fmt: skip
    static = b.build()
    if dr.textures > 0 or dr.distractors > 0:
        static = randomize.randomize_static(static, dr.textures, seed)

    for side in (-1.0, 1.0):  # parked vehicles
        d = side * (road.lanes_half + BIKE_W + PARK_W / 2)
        s = arng.uniform(0, 10)
        mean_gap = max(100.0 / max(cfg.parked_density, 1e-3) - 5.0, 0.5)
        while s < L - 10:
            is_truck = arng.random() < 0.2
            tpl = (things.truck if is_truck else things.car)(arng, al.next_id)
            ln = tpl.size[0]
            c = s + ln / 2
            if np.any(np.abs(crossings - c) < ln / 2 + 3.0):
                s = c + ln / 2 + 3.0
                continue
            al.add(tpl, STATIC, c, d, yaw_offset=(0.0 if side < 0 else np.pi) + arng.normal(0, 0.02))
            s = c + ln / 2 + 0.8 + arng.exponential(mean_gap)

    for lane in range(road.num_lanes):  # moving traffic
        fwd = road.is_forward(lane)
        d = road.lane_center(lane)
        if lane == ego.lane:
            speed, lo, wrap = ego.speed + arng.uniform(0.3, 2.0), ego.s0 + 25.0, 0.0
        else:
            speed, lo, wrap = arng.uniform(6.0, 14.0), 0.0, L
        for s in _positions(arng, lo, L, cfg.car_density * (L - lo) / 100.0, 14.0):
            tpl = (things.truck if arng.random() < cfg.truck_fraction else things.car)(arng, al.next_id)
            al.add(tpl, LANE, float(s), d + arng.normal(0, 0.1), speed=speed, direction=1.0 if fwd else -1.0,
                   wrap=wrap)  # fmt: skip

    for side in (-1.0, 1.0):  # cyclists in the bike lanes
        speed = arng.uniform(3.5, 6.5)
        d = side * (road.lanes_half + BIKE_W / 2)
        for s in _positions(arng, 0.0, L, cfg.cyclist_density * L / 100.0, 8.0):
            al.add(things.cyclist(arng, al.next_id), LANE, float(s), d, speed=speed,
                   direction=1.0 if side < 0 else -1.0, wrap=L)  # fmt: skip

    for side in (-1.0, 1.0):  # walkers on the sidewalks
        for s in _positions(arng, 0.0, L, cfg.pedestrian_density * L / 100.0, 1.0):
            d = side * (road.curb + arng.uniform(1.3, road.sidewalk_w - 0.4))
            speed = 0.0 if arng.random() < 0.15 else arng.uniform(0.9, 1.7)
            al.add(things.pedestrian(arng, al.next_id), LANE, float(s), d, speed=speed,
                   direction=float(arng.choice([-1.0, 1.0])), wrap=L, z=CURB_H)  # fmt: skip

    moving = al.build()
    for s_c in crossings:  # pedestrians crossing the road, timed to clear the ego's lane
        for _ in range(int(arng.integers(1, 3))):
            side = float(arng.choice([-1.0, 1.0]))
            d0 = side * (road.curb + arng.uniform(0.6, 2.0))
            d1 = -side * (road.curb + arng.uniform(0.6, 2.0))
            v_cross = float(arng.uniform(1.0, 1.8))
            sc = float(s_c + arng.uniform(-1.2, 1.2))
            t0 = _crossing_time(road, ego, moving, sc, d0, d1, v_cross, arng)
            tpl = things.pedestrian(arng, al.next_id)
            if t0 is None:
                continue
            t1 = t0 + abs(d1 - d0) / v_cross
            al.add(tpl, CROSS, sc, d0, d1=d1, speed=v_cross, direction=float(arng.choice([-1.0, 1.0])), t0=t0, t1=t1,
                   z=CURB_H)  # fmt: skip
    agents = al.build()
    if dr.textures > 0:
        meshes = randomize.randomize_meshes([tp.mesh for tp in agents.templates], dr.textures, seed)
        templates = tuple(dataclasses.replace(tp, mesh=m) for tp, m in zip(agents.templates, meshes))
        agents = dataclasses.replace(agents, templates=templates)
    return World(seed=seed, cfg=cfg, road=road, static=static, agents=agents, ego=ego, light=light,
                 crossings=crossings, camera=camera)  # fmt: skip


__all__ = ["Agents", "CameraRig", "Ego", "World", "agent_states", "build_world", "camera_pose", "ego_pose"]
