"""Spinning LiDAR in the same scene as the camera (instantaneous sweep, no rolling shutter).

LiDAR frame: x forward, y left, z up (REP 103). Points are (N, 4) float32: x, y, z, intensity,
with a semantic label per point. Intensity is a per-class reflectivity times an incidence
term, in [0, 1].
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from perception.core.classes import IGNORE_INDEX, semantic_id

from .world import World

_REFLECTIVITY = np.zeros(256, np.float32)  # every uint8 label, IGNORE_INDEX too (flying distractors)
_REFLECTIVITY[IGNORE_INDEX] = 0.3
for _name, _r in (
    ("road", 0.12), ("lane_marking", 0.8), ("sidewalk", 0.25), ("building", 0.3), ("vegetation", 0.45),
    ("terrain", 0.3), ("pole", 0.4), ("traffic_sign", 0.95), ("car", 0.5), ("truck", 0.5),
    ("pedestrian", 0.35), ("cyclist", 0.4),
):  # fmt: skip
    _REFLECTIVITY[semantic_id(_name)] = _r


@lru_cache(maxsize=4)
def lidar_dirs(beams: int, fov_deg: tuple[float, float], az_step_deg: float) -> np.ndarray:
    """(beams * n_azimuth, 3) float32 unit directions in the LiDAR frame, beam-major rows."""
    el = np.deg2rad(np.linspace(fov_deg[0], fov_deg[1], beams))
    az = np.deg2rad(np.arange(0.0, 360.0, az_step_deg))
    E, A = np.meshgrid(el, az, indexing="ij")
    d = np.stack([np.cos(E) * np.cos(A), np.cos(E) * np.sin(A), np.sin(E)], -1)
    return d.reshape(-1, 3).astype(np.float32)


def scan(world: World, lidar_pose: np.ndarray, things: object) -> tuple[np.ndarray, np.ndarray]:
    """One sweep from ``lidar_pose`` (4x4 world_T_lidar) against the static scene and the
    things of this frame (a render.ThingsFrame built with a radius covering the LiDAR range).

    Returns points (N, 4) float32 in the LiDAR frame and labels (N,) uint8."""
    import open3d as o3d

    from .render import ThingsFrame, make_rays, things_attributes

    assert isinstance(things, ThingsFrame)
    cfg = world.cfg
    dl = lidar_dirs(cfg.lidar_beams, tuple(cfg.lidar_fov_deg), cfg.lidar_az_step_deg)
    rays = make_rays(dl, lidar_pose)
    dw = rays[:, 3:]
    rt = o3d.core.Tensor.from_numpy(rays)
    rs = world.static_scene().cast_rays(rt)
    t = rs["t_hit"].numpy().copy()
    prim = rs["primitive_ids"].numpy().astype(np.int64)
    normal = rs["primitive_normals"].numpy().copy()
    ok = np.isfinite(t)
    prim[~ok] = 0
    labels = np.where(ok, world.static.semantic[prim], 0).astype(np.uint8)
    if things.scene is not None:
        rtg = things.scene.cast_rays(rt)
        tt = rtg["t_hit"].numpy()
        near = np.isfinite(tt) & (tt < t)
        tri = rtg["primitive_ids"].numpy().astype(np.int64)[near]
        t[near] = tt[near]
        normal[near] = things.normals[tri]
        labels[near] = things_attributes(world, things)["semantic"][tri]
    keep = np.isfinite(t) & (t <= cfg.lidar_range_m) & (t > 0.3)
    t, labels, normal, d = t[keep], labels[keep], normal[keep], dw[keep]
    cos = np.abs(np.einsum("ij,ij->i", normal, d))
    intensity = np.clip(_REFLECTIVITY[labels] * (0.3 + 0.7 * cos), 0.0, 1.0)
    pts = np.empty((len(t), 4), np.float32)
    pts[:, :3] = dl[keep] * t[:, None]
    pts[:, 3] = intensity
    return pts, labels
