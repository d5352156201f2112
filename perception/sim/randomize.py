"""Domain randomisation of a world (after Tremblay et al. 2018, "Training Deep Networks with
Synthetic Data: Bridging the Reality Gap by Domain Randomization").

Each effect of ``SimConfig.randomize`` (a :class:`~perception.sim.config.DomainRandomization`)
draws from its own random stream of the world seed: ``[seed, 20]`` camera, ``[seed, 21]`` lighting,
``[seed, 22, k]`` textures of the static world, ``[seed, 23]`` distractors, ``[seed, 25, k]``
textures of the objects (sensor effects per frame live in ``degrade.py``). A world is still a
function of (seed, cfg), and with every strength 0 nothing here runs.

Ground truth is untouched by construction: textures and light change colours only, the camera
rig changes the pose and intrinsics that the ground truth is computed with, and distractors are
static surfaces labelled void (``IGNORE_INDEX``) with instance 0.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from perception.core.classes import IGNORE_INDEX

from .config import DomainRandomization, SimConfig
from .lighting import Lighting
from .meshes import (
    MAT_CLOTH,
    MAT_METAL,
    MAT_PLAIN,
    PAT_BLOTCH,
    PAT_CHECKER,
    PAT_COS,
    PAT_FREQ,
    PAT_KIND,
    PAT_NOISE,
    PAT_NONE,
    PAT_RATIO,
    PAT_SIN,
    PAT_STRIPES,
    PATTERN_COLS,
    Mesh,
    MeshBuilder,
    box,
    icosphere,
    ngon,
    prism,
    rotate,
)
from .road import Road

DISTRACTOR = IGNORE_INDEX  # semantic id of flying distractors: void, like Cityscapes' "static"/"dynamic"
_LUMA = np.array([0.2126, 0.7152, 0.0722])


def _lerp(a: np.ndarray | float, b: np.ndarray | float, s: float) -> np.ndarray:
    return np.asarray(a, np.float64) * (1.0 - s) + np.asarray(b, np.float64) * s


def hsv_to_linear(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(N, 3) linear RGB (gamma 2, as the renderer's output curve) of HSV colours in [0, 1]."""
    h6 = (np.asarray(h) % 1.0) * 6.0
    i = np.floor(h6).astype(np.int64) % 6
    f = h6 - np.floor(h6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    rgb = table[i, np.arange(len(i))]
    return np.asarray(rgb * rgb, np.float64)


def random_albedo(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) float32 random surface colours: uniform hue and saturation, value 0.12..1."""
    hsv = rng.random((n, 3))
    rgb = hsv_to_linear(hsv[:, 0], hsv[:, 1], 0.12 + 0.88 * hsv[:, 2])
    return np.maximum(rgb, 0.004).astype(np.float32)


# ------------------------------------------------------------------ camera ----


def random_camera(cfg: SimConfig, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """(height m, pitch deg (positive looks down), hfov deg, exposure gain) of a drive's camera:
    ``SimConfig``'s camera blended by ``randomize.camera`` towards one drawn from the ranges."""
    dr = cfg.randomize
    s = dr.camera
    u = rng.random(4)
    height = float(_lerp(cfg.cam_height, dr.cam_height[0] + u[0] * (dr.cam_height[1] - dr.cam_height[0]), s))
    pitch = float(s * (dr.cam_pitch_deg[0] + u[1] * (dr.cam_pitch_deg[1] - dr.cam_pitch_deg[0])))
    hfov = float(_lerp(cfg.hfov_deg, dr.hfov_deg[0] + u[2] * (dr.hfov_deg[1] - dr.hfov_deg[0]), s))
    gain = float(2.0 ** (s * dr.exposure_ev * (2.0 * u[3] - 1.0)))
    return height, pitch, hfov, gain


# ---------------------------------------------------------------- lighting ----


def _irradiance_luma(ambient: np.ndarray, sun_color: np.ndarray, sun_dir: np.ndarray) -> float:
    """Luminance of the light falling on a horizontal surface (what auto-exposure looks at)."""
    return float(_LUMA @ (np.asarray(ambient) + np.asarray(sun_color) * max(float(sun_dir[2]), 0.0)))


def randomize_lighting(light: Lighting, s: float, rng: np.random.Generator) -> Lighting:
    """``light`` (a world.Lighting) blended by ``s`` towards a random sun (direction, colour,
    intensity), ambient, sky gradient (zenith and horizon colours, curve) and haze distance; the
    exposure is rescaled so that a horizontal grey surface keeps its brightness (auto-exposure)."""
    el, az = np.deg2rad(3.0 + 77.0 * rng.random()), 2.0 * np.pi * rng.random()
    sun_r = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    hsv = rng.random((4, 3))
    sun_c = hsv_to_linear(hsv[0, :1], 0.5 * hsv[0, 1:2], np.ones(1))[0] * (0.1 + 1.5 * rng.random())
    amb = hsv_to_linear(hsv[1, :1], 0.35 * hsv[1, 1:2], np.ones(1))[0] * (0.08 + 0.7 * rng.random())
    zen = hsv_to_linear(hsv[2, :1], 0.9 * hsv[2, 1:2], 0.5 + 0.5 * hsv[2, 2:3])[0]
    hor = hsv_to_linear(hsv[3, :1], 0.6 * hsv[3, 1:2], 0.6 + 0.4 * hsv[3, 2:3])[0]
    fog = float(np.exp(np.log(150.0) + rng.random() * np.log(3000.0 / 150.0)))
    curve = 0.25 + 0.75 * rng.random()
    sun_dir = _lerp(light.sun_dir, sun_r, s)
    sun_dir[2] = max(sun_dir[2], 0.03)
    sun_dir /= np.linalg.norm(sun_dir)
    sun_color = _lerp(light.sun_color, sun_c, s)
    ambient = _lerp(light.ambient, amb, s)
    before = _irradiance_luma(light.ambient, light.sun_color, light.sun_dir)
    after = _irradiance_luma(ambient, sun_color, sun_dir)
    gain = float(np.clip(before / max(after, 1e-6), 0.35, 4.0))
    return dataclasses.replace(
        light,
        kind=f"{light.kind}+random",
        sun_dir=sun_dir,
        sun_color=sun_color,
        ambient=ambient,
        sky_zenith=_lerp(light.sky_zenith, zen, s),
        sky_horizon=_lerp(light.sky_horizon, hor, s),
        exposure=float(light.exposure * gain),
        fog_dist=float(np.exp(_lerp(np.log(light.fog_dist), np.log(fog), s))),
        sky_curve=float(_lerp(light.sky_curve, curve, s)),
    )


# ---------------------------------------------------------------- textures ----


def _part_draws(num_parts: int, share: float, seed: int, stream: int) -> dict[str, np.ndarray]:
    """Per-part random texture data; each quantity has its own stream, so the draws of part i do
    not depend on how many parts there are."""
    rngs = [np.random.default_rng([seed, stream, k]) for k in range(6)]
    kinds = np.array([PAT_NONE, PAT_STRIPES, PAT_CHECKER, PAT_BLOTCH, PAT_NOISE])
    return {
        "pick": rngs[0].random(num_parts) < share,
        "color": random_albedo(rngs[1], num_parts),
        "color2": random_albedo(rngs[2], num_parts),
        "kind": kinds[rngs[3].integers(len(kinds), size=num_parts)],
        "freq": 1.0 / np.exp(np.log(0.08) + rngs[4].random(num_parts) * np.log(2.5 / 0.08)),  # periods 8 cm..2.5 m
        "angle": rngs[5].random(num_parts) * np.pi,
    }


def _apply_parts(mesh: Mesh, draws: dict[str, np.ndarray], offset: int, always: np.ndarray | None = None) -> Mesh:
    """``mesh`` with its parts (indices offset + mesh.part into ``draws``) recoloured and textured where
    picked (or ``always`` per triangle)."""
    idx = mesh.part.astype(np.int64) + offset
    pick = draws["pick"][idx]
    if always is not None:
        pick = pick | always
    pattern = np.zeros((mesh.num_triangles, PATTERN_COLS), np.float32) if mesh.pattern is None else mesh.pattern.copy()
    if not pick.any():
        return dataclasses.replace(mesh, pattern=pattern)
    color = mesh.color.copy()
    p = idx[pick]
    color[pick] = draws["color"][p]
    pattern[pick, PAT_KIND] = draws["kind"][p]
    pattern[pick, PAT_FREQ] = draws["freq"][p]
    pattern[pick, PAT_COS] = np.cos(draws["angle"][p])
    pattern[pick, PAT_SIN] = np.sin(draws["angle"][p])
    pattern[pick, PAT_RATIO : PAT_RATIO + 3] = draws["color2"][p] / draws["color"][p]
    return dataclasses.replace(mesh, color=color, pattern=pattern)


def randomize_static(mesh: Mesh, share: float, seed: int) -> Mesh:
    """The static mesh with a ``share`` of its parts in random colours and textures; distractor
    parts always are."""
    draws = _part_draws(int(mesh.part.max()) + 1 if mesh.num_triangles else 0, share, seed, 22)
    return _apply_parts(mesh, draws, 0, mesh.semantic == DISTRACTOR)


def randomize_meshes(meshes: list[Mesh], share: float, seed: int) -> list[Mesh]:
    """Object meshes (one per agent) with a ``share`` of their parts in random colours and textures."""
    sizes = [int(m.part.max()) + 1 if m.num_triangles else 0 for m in meshes]
    draws = _part_draws(sum(sizes), share, seed, 25)
    offsets = np.cumsum([0, *sizes[:-1]])
    return [_apply_parts(m, draws, int(o)) for m, o in zip(meshes, offsets)]


# ------------------------------------------------------------- distractors ----


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3D rotation matrix."""
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])  # fmt: skip


def add_distractors(b: MeshBuilder, road: Road, density: float, corridor_d: float, clear_z: float,
                    rng: np.random.Generator) -> int:  # fmt: skip
    """Add flying distractors (about ``density`` per 100 m of road) to the static mesh builder:
    boxes, blobs and prisms of 0.2..2.6 m, randomly rotated, floating 0.3..8 m up over the road,
    sidewalks and verges. Within reach of the sensors' path (lateral ``corridor_d``) they float
    above ``clear_z``, so no camera or LiDAR is ever inside one. Returns how many were added."""
    n = int(rng.poisson(density * road.length / 100.0))
    reach = road.curb + road.sidewalk_w + 4.0
    mats = np.array([MAT_PLAIN, MAT_PLAIN, MAT_METAL, MAT_CLOTH])
    for _ in range(n):
        s = rng.uniform(0.0, road.length)
        d = rng.uniform(-reach, reach)
        r = float(np.exp(rng.uniform(np.log(0.1), np.log(1.3))))  # half size
        shape = int(rng.integers(3))
        if shape == 0:
            v, t = box(tuple(2 * r * rng.uniform(0.3, 1.0, 3)))
        elif shape == 1:
            v, t = icosphere(tuple(r * rng.uniform(0.5, 1.0, 3)), 0.25, rng)
        else:
            v, t = prism(ngon(int(rng.integers(3, 9)), r * rng.uniform(0.4, 1.0)), -r, r)
        v = rotate(v, _rotation(rng))
        z = rng.uniform(0.3, 8.0) + r
        if abs(d - corridor_d) < 2.0 * r + 1.4:
            z = max(z, clear_z + 2.0 * r + 0.3)
        xy = road.to_world(s, d)
        b.add((v + np.array([xy[0], xy[1], z], np.float32), t), DISTRACTOR, (0.5, 0.5, 0.5),
              int(mats[rng.integers(len(mats))]))  # fmt: skip
    return n


__all__ = ["DISTRACTOR", "DomainRandomization", "add_distractors", "random_albedo", "random_camera",
           "randomize_lighting", "randomize_meshes", "randomize_static"]  # fmt: skip
