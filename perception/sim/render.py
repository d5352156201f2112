"""Camera rendering (raycasting + procedural shading) and exact ground-truth extraction.

One frame = one ``cast_rays`` of every pixel against the prebuilt static scene, plus one
``list_intersections`` against a per-frame scene of the things in view, restricted to the
rays inside their projected 3D boxes. The list gives, per ray, every thing it passes
through: the nearest one is the visible surface (when nearer than the static hit), and the
set of things per ray is each object's unoccluded silhouette -> exact visibility.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from perception.core.classes import SEMANTIC_TO_DETECTION
from perception.core.types import CameraIntrinsics, GroundTruth

from .meshes import PATTERN_COLS, face_normals, rotate
from .shading import TriTables, shade_hits, sky_colors, to_srgb8, tri_tables
from .things import BONE_LEFT_ARM, BONE_LEFT_LEG, BONE_RIGHT_ARM, BONE_RIGHT_LEG, PEDESTRIAN
from .world import AgentStates, World, agent_states

NEAR = 0.05
_EDGES = np.array([(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1])
_UNIT_CORNERS = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (0.0, 1.0)], np.float64)

@dataclass(frozen=True)
class CameraRender:
    rgb: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    depth: np.ndarray
    gt: GroundTruth
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ThingsFrame:
    """Things near the sensor at one time: their merged world mesh and per-object data."""

    agent_idx: np.ndarray  # (M,) indices into world.agents
    vertices: np.ndarray  # (V, 3) world
    triangles: np.ndarray  # (T, 3) uint32
    tri_obj: np.ndarray  # (T,) object index 0..M-1
    normals: np.ndarray  # (T, 3)
    corners: np.ndarray  # (M, 8, 3) world corners of the 3D boxes
    states: AgentStates
    scene: Any  # open3d RaycastingScene or None when empty


# ------------------------------------------------------------ helpers ----


@lru_cache(maxsize=8)
def camera_dirs(intr: CameraIntrinsics) -> np.ndarray:
    """(H*W, 3) float32 optical-frame ray directions through pixel centres, with z = 1."""
    u = (np.arange(intr.width, dtype=np.float32) + 0.5 - intr.cx) / intr.fx
    v = (np.arange(intr.height, dtype=np.float32) + 0.5 - intr.cy) / intr.fy
    d = np.empty((intr.height, intr.width, 3), np.float32)
    d[..., 0] = u[None, :]
    d[..., 1] = v[:, None]
    d[..., 2] = 1.0
    return d.reshape(-1, 3)


@lru_cache(maxsize=8)
def camera_dlen(intr: CameraIntrinsics) -> np.ndarray:
    """(H*W,) lengths of ``camera_dirs`` (metres of ray per metre of depth)."""
    return np.linalg.norm(camera_dirs(intr), axis=1).astype(np.float32)


def box_corners(states: AgentStates, sizes: np.ndarray) -> np.ndarray:
    """(M, 8, 3) world corners of 3D boxes (index 4*ix + 2*iy + iz), base on the ground point."""
    local = _UNIT_CORNERS[None] * sizes[:, None, :]
    c, s = np.cos(states.yaw)[:, None], np.sin(states.yaw)[:, None]
    x = c * local[..., 0] - s * local[..., 1]
    y = s * local[..., 0] + c * local[..., 1]
    return np.stack([x, y, local[..., 2]], -1) + states.xyz[:, None, :]


def project_boxes(corners_cam: np.ndarray, intr: CameraIntrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Image boxes (M, 4) of 3D boxes given as optical-frame corners (M, 8, 3), clipped to the
    near plane and the image; returns (boxes, valid)."""
    if len(corners_cam) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, bool)
    pa, pb = corners_cam[:, _EDGES[:, 0]], corners_cam[:, _EDGES[:, 1]]
    za, zb = pa[..., 2], pb[..., 2]
    cross = (za - NEAR) * (zb - NEAR) < 0
    f = np.where(cross, (NEAR - za) / np.where(cross, zb - za, 1.0), 0.0)
    pe = pa + f[..., None] * (pb - pa)
    pts = np.concatenate([corners_cam, pe], axis=1)
    ok = np.concatenate([corners_cam[..., 2] >= NEAR, cross], axis=1)
    z = np.maximum(pts[..., 2], NEAR)
    u = intr.fx * pts[..., 0] / z + intr.cx
    v = intr.fy * pts[..., 1] / z + intr.cy
    big = 1e9
    x1 = np.where(ok, u, big).min(1)
    y1 = np.where(ok, v, big).min(1)
    x2 = np.where(ok, u, -big).max(1)
    y2 = np.where(ok, v, -big).max(1)
    boxes = np.stack([np.clip(x1, 0, intr.width), np.clip(y1, 0, intr.height),
                      np.clip(x2, 0, intr.width), np.clip(y2, 0, intr.height)], 1)  # fmt: skip
    valid = ok.any(1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes.astype(np.float32), valid


def to_cam(points: np.ndarray, cam_pose: np.ndarray) -> np.ndarray:
    return rotate(points - cam_pose[:3, 3], cam_pose[:3, :3].T)


def _animate(tpl_vertices: np.ndarray, bone: np.ndarray, hip: float, shoulder: float, walk: float) -> np.ndarray:
    phase = walk / 1.5 * 2.0 * np.pi
    v = tpl_vertices.copy()
    for b, pivot, amp in ((BONE_LEFT_LEG, hip, 0.38), (BONE_RIGHT_LEG, hip, -0.38), (BONE_LEFT_ARM, shoulder, -0.3),
                          (BONE_RIGHT_ARM, shoulder, 0.3)):  # fmt: skip
        m = bone == b
        a = amp * np.sin(phase)
        x, z = v[m, 0], v[m, 2] - pivot
        v[m, 0] = x * np.cos(a) + z * np.sin(a)
        v[m, 2] = -x * np.sin(a) + z * np.cos(a) + pivot
    return v


def select_things(
    world: World, t: float, cam_pose: np.ndarray, intr: CameraIntrinsics, radius: float | None
) -> np.ndarray:
    """Indices of agents that may be seen: within ``radius`` of the sensor (all around), or when
    None within max_range in front of the camera and inside a widened frustum."""
    st = agent_states(world, t)
    p = to_cam(st.xyz, cam_pose)
    dist = np.linalg.norm(p, axis=1)
    if radius is not None:
        return np.flatnonzero(dist < radius)
    half = np.array([tp.size[0] for tp in world.agents.templates]) * 0.5 + 1.0
    tan_h = (intr.width / 2) / intr.fx
    keep = (p[:, 2] > -half) & (dist < world.cfg.max_range_m) & (np.abs(p[:, 0]) < p[:, 2] * tan_h + 2 * half + 2)
    return np.flatnonzero(keep)


def build_things(world: World, t: float, idx: np.ndarray) -> ThingsFrame:
    """Merged world-space mesh of agents ``idx`` at time t and its raycasting scene."""
    import open3d as o3d

    st = agent_states(world, t, idx)
    tpls = [world.agents.templates[i] for i in idx]
    verts, tris, tri_obj = [], [], []
    nv = 0
    for k, tp in enumerate(tpls):
        v = tp.mesh.vertices
        if tp.semantic == PEDESTRIAN and world.agents.speed[idx[k]] > 0:
            v = _animate(v, tp.mesh.bone, tp.hip, tp.shoulder, float(st.walk[k]))
        c, s = np.cos(st.yaw[k]), np.sin(st.yaw[k])
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], np.float32)
        verts.append(rotate(v, rot) + st.xyz[k].astype(np.float32))
        tris.append(tp.mesh.triangles + np.uint32(nv))
        tri_obj.append(np.full(len(tp.mesh.triangles), k, np.int32))
        nv += len(v)
    sizes = np.array([tp.size for tp in tpls], np.float64).reshape(-1, 3)
    corners = box_corners(st, sizes)
    if not tpls:
        z3 = np.zeros((0, 3), np.float32)
        return ThingsFrame(idx, z3, np.zeros((0, 3), np.uint32), np.zeros(0, np.int32), z3, corners, st, None)
    V = np.concatenate(verts).astype(np.float32)
    T = np.concatenate(tris).astype(np.uint32)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor.from_numpy(V), o3d.core.Tensor.from_numpy(T))
    return ThingsFrame(idx, V, T, np.concatenate(tri_obj), face_normals(V, T), corners, st, scene)


def things_attributes(world: World, things: ThingsFrame) -> dict[str, np.ndarray]:
    """Per-triangle attributes of the merged things mesh (cached per agent set is not needed: cheap)."""
    tpls = [world.agents.templates[i] for i in things.agent_idx]
    if not tpls:
        return {"color": np.zeros((0, 3), np.float32), "material": np.zeros(0, np.uint8),
                "param": np.zeros((0, 2), np.float32), "semantic": np.zeros(0, np.uint8)}  # fmt: skip
    out = {
        "color": np.concatenate([tp.mesh.color for tp in tpls]),
        "material": np.concatenate([tp.mesh.material for tp in tpls]),
        "param": np.concatenate([tp.mesh.param for tp in tpls]),
        "semantic": np.concatenate([tp.mesh.semantic for tp in tpls]),
    }
    if any(tp.mesh.pattern is not None for tp in tpls):  # domain-randomised textures
        out["pattern"] = np.concatenate([
            tp.mesh.pattern if tp.mesh.pattern is not None else np.zeros((tp.mesh.num_triangles, PATTERN_COLS),
                                                                         np.float32)
            for tp in tpls
        ])  # fmt: skip
    return out


def make_rays(dirs_local: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """(N, 6) float32 world rays (origin, direction) of sensor-frame directions under ``pose``.

    One OpenCV transform (SIMD, no BLAS threads) instead of numpy broadcasting: ~30x faster."""
    import cv2

    m = np.zeros((6, 4), np.float32)
    m[:3, 3] = pose[:3, 3]
    m[3:, :3] = pose[:3, :3]
    rays: np.ndarray = cv2.transform(dirs_local.reshape(-1, 1, 3), m).reshape(-1, 6)
    return rays


def static_tables(world: World) -> TriTables:
    """Shading tables of the static mesh (computed once per world)."""
    if "tables" not in world._cache:
        st = world.static
        n = face_normals(st.vertices, st.triangles)
        world._cache["tables"] = tri_tables(st.vertices, st.triangles, n, st.color, st.material, st.param,
                                            world.light, st.pattern)  # fmt: skip
    tables: TriTables = world._cache["tables"]
    return tables


def _pattern_rows(tab: TriTables) -> np.ndarray:
    return tab.pattern if tab.pattern is not None else np.zeros((8, len(tab.material)), np.float32)


def render_camera(world: World, t: float, cam_pose: np.ndarray, intr: CameraIntrinsics,
                  things: ThingsFrame | None = None) -> CameraRender:  # fmt: skip
    """Render one camera image with semantic/instance/depth and ground truth at time t."""
    import open3d as o3d

    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    H, W = intr.height, intr.width
    origin = cam_pose[:3, 3].astype(np.float32)
    rays = make_rays(camera_dirs(intr), cam_pose)
    dirs = rays[:, 3:]
    if things is None:
        things = build_things(world, t, select_things(world, t, cam_pose, intr, None))
    timings["world_update"] = time.perf_counter() - t_start

    t0 = time.perf_counter()
    res = world.static_scene().cast_rays(o3d.core.Tensor.from_numpy(rays))
    depth = res["t_hit"].numpy().reshape(-1).copy()
    g = res["primitive_ids"].numpy().reshape(-1).astype(np.int64)
    timings["raycast"] = time.perf_counter() - t0
    n_static = world.static.num_triangles
    instance = np.zeros(H * W, np.int32)

    # things: first hits of the rays inside the projected 3D boxes; where boxes overlap, every
    # intersection is listed so that each object's unoccluded silhouette is known exactly
    t0 = time.perf_counter()
    M = len(things.agent_idx)
    corners_cam = to_cam(things.corners.reshape(-1, 3), cam_pose).reshape(-1, 8, 3)
    amodal, valid = project_boxes(corners_cam, intr)
    silhouette = np.zeros(M, np.int64)
    if M and valid.any():
        cover = np.zeros((H, W), np.int16)
        for x1, y1, x2, y2 in amodal[valid]:
            cover[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))] += 1
        cover_flat = cover.reshape(-1)
        ray_idx = np.flatnonzero(cover_flat)
        rc = things.scene.cast_rays(o3d.core.Tensor.from_numpy(rays[ray_idx]))
        th = rc["t_hit"].numpy().reshape(-1)
        hit = np.isfinite(th)
        tri = rc["primitive_ids"].numpy().reshape(-1).astype(np.int64)
        tri[~hit] = 0
        obj = things.tri_obj[tri]
        single = cover_flat[ray_idx] == 1
        silhouette += np.bincount(obj[single & hit], minlength=M)
        multi = ray_idx[~single]
        if len(multi):
            li = things.scene.list_intersections(o3d.core.Tensor.from_numpy(rays[multi]))
            rid = li["ray_ids"].numpy().astype(np.int64)
            lobj = things.tri_obj[li["primitive_ids"].numpy().astype(np.int64)]
            keys = np.unique(rid * M + lobj)
            silhouette += np.bincount(keys % M, minlength=M)
        near = hit & (th < depth[ray_idx])
        pix = ray_idx[near]
        depth[pix] = th[near]
        g[pix] = n_static + tri[near]
        instance[pix] = things.agent_idx[obj[near]] + 1
    timings["raycast"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    st_tab = static_tables(world)
    attrs = things_attributes(world, things)
    anchor = things.states.xyz[things.tri_obj] if "pattern" in attrs else None  # textures move with objects
    th_tab = tri_tables(things.vertices, things.triangles, things.normals, attrs["color"], attrs["material"],
                        attrs["param"], world.light, attrs.get("pattern"), anchor)  # fmt: skip
    hit = np.isfinite(depth)
    sem_table = np.concatenate([world.static.semantic, attrs["semantic"], np.zeros(1, np.uint8)])
    semantic = np.take(sem_table, np.where(hit, g, len(sem_table) - 1))
    timings["gt"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    # every pixel is shaded through one table gather; sky pixels point at an extra blank row
    n_tri = n_static + len(th_tab.material)
    g[~hit] = n_tri
    depth0 = np.where(hit, depth, np.float32(0.0))
    p = tuple(origin[i] + dirs[:, i] * depth0 for i in range(3))
    lit_s, nrm_s = st_tab.oriented(origin)
    lit_t, nrm_t = th_tab.oriented(origin)
    z3 = np.zeros((1, 3), np.float32)
    lit = np.concatenate([lit_s, lit_t, z3.T], axis=1)
    nrm = np.concatenate([nrm_s, nrm_t, z3])
    tex = np.concatenate([st_tab.tex, th_tab.tex, np.ones((9, 1), np.float32)], axis=1)
    mat = np.concatenate([st_tab.material, th_tab.material, np.zeros(1, np.uint8)])
    dlen = camera_dlen(intr)
    pat = None
    if st_tab.pattern is not None or th_tab.pattern is not None:
        pat = np.concatenate([_pattern_rows(st_tab), _pattern_rows(th_tab), np.zeros((8, 1), np.float32)], axis=1)
    lin = shade_hits(g, p, dirs, depth0 * dlen, lit, tex, mat, nrm, world.light, world.cfg.fog, pat)
    sky = np.flatnonzero(~hit)
    if len(sky):
        lin[:, sky] = sky_colors(dirs[sky], dlen[sky], world.light)
    rgb = to_srgb8(lin, H, W)
    timings["shading"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    instance_img = instance.reshape(H, W)
    gt = extract_gt(world, instance_img, things, amodal, corners_cam, silhouette, cam_pose)
    timings["gt"] += time.perf_counter() - t0
    return CameraRender(rgb, semantic.reshape(H, W), instance_img, depth.reshape(H, W).astype(np.float32), gt, timings)


def extract_gt(world: World, instance: np.ndarray, things: ThingsFrame, amodal: np.ndarray, corners_cam: np.ndarray,
               silhouette: np.ndarray, cam_pose: np.ndarray) -> GroundTruth:  # fmt: skip
    """Ground truth of every thing with at least one visible pixel."""
    from scipy import ndimage

    if not instance.any():
        return GroundTruth()
    max_id = int(instance.max())
    slices = ndimage.find_objects(instance, max_label=max_id)
    counts = np.bincount(instance.reshape(-1), minlength=max_id + 1)
    local = {int(a) + 1: k for k, a in enumerate(things.agent_idx)}
    rows = []
    for tid in np.flatnonzero(counts[1:]) + 1:
        sl = slices[tid - 1]
        k = local[int(tid)]
        rows.append((tid, k, sl[1].start, sl[0].start, sl[1].stop, sl[0].stop, counts[tid]))
    r = np.array(rows, np.int64)
    tids, ks = r[:, 0], r[:, 1]
    boxes = r[:, 2:6].astype(np.float32)
    vis = np.clip(r[:, 6] / np.maximum(silhouette[ks], 1), 0.0, 1.0).astype(np.float32)
    sem = np.array([world.agents.templates[things.agent_idx[k]].semantic for k in ks])
    cls = np.array([SEMANTIC_TO_DETECTION[int(s)] for s in sem], np.int64)
    # 3D boxes in the optical frame: centre, l, w, h, yaw (KITTI rotation_y: forward = (cos, 0, -sin))
    cc = corners_cam[ks]
    centre = cc.mean(1)
    sizes = np.array([world.agents.templates[things.agent_idx[k]].size for k in ks], np.float64)
    yaw_w = things.states.yaw[ks]
    fwd = rotate(np.stack([np.cos(yaw_w), np.sin(yaw_w), np.zeros_like(yaw_w)], 1), cam_pose[:3, :3].T)
    ry = np.arctan2(-fwd[:, 2], fwd[:, 0])
    boxes3d = np.column_stack([centre, sizes, ry]).astype(np.float32)
    height = boxes[:, 3] - boxes[:, 1]
    ignore = (height < world.cfg.min_box_height) | (vis < world.cfg.min_visibility)
    return GroundTruth(
        boxes=boxes,
        class_ids=cls,
        track_ids=tids.astype(np.int64),
        visibility=vis,
        amodal_boxes=amodal[ks].astype(np.float32),
        boxes3d=boxes3d,
        ignore=ignore,
    )
