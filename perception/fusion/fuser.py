"""The fusion step: 2D detections (+ segmentation) and one LiDAR scan -> 3D objects in base_link.

Stages, cheapest first so the expensive ones see few points: crop the scan to the detection
frustums (points in front of the camera, inside the image, inside some box), paint each point with
the class of its pixel, remove the ground, cluster on a voxel grid, associate clusters with
detections (projected IoU, class, per-class size gates, greedy one-to-one), fit yaw-only boxes in
bird's-eye view (L-shape for vehicles, cylinder for people), and range what has no LiDAR points
from the camera alone (flat-ground intersection of the bottom edge).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from perception.core.boxes3d import Boxes3D
from perception.core.classes import DETECTION_TO_SEMANTIC, detection_id, semantic_id
from perception.core.types import CameraIntrinsics, Detections

from .camera_only import camera_object
from .cluster import voxel_clusters
from .config import ClassModel, FusionConfig
from .geometry import Extrinsics, check_points, crop_to_image, frustum_boxes, in_boxes, paint, transform
from .ground import fit_ground, height_above
from .shape import BevBox, fit_cylinder, fit_l_shape

STAGES = ("crop", "ground", "cluster", "associate", "boxes", "camera", "lidar_only")
BOX_MARGIN = 0.1  # frustum crop: boxes grown by this share of their size on each side

# painted classes that may answer each other's detections (the detector and the mask may disagree)
_CAR, _TRUCK = semantic_id("car"), semantic_id("truck")
_GROUP = np.arange(256, dtype=np.int64)
_GROUP[_TRUCK] = _CAR


@dataclass
class _Row:
    det: int  # -1: LiDAR-only
    center: np.ndarray
    size: np.ndarray
    yaw: float
    cov: np.ndarray
    source: str
    class_id: int = -1  # LiDAR-only rows: their class and score (others take the detection's)
    score: float = 0.0


def _lidar_box(pts: np.ndarray, heights: np.ndarray, plane: np.ndarray, model: ClassModel, sensor_xy: np.ndarray,
               cfg: FusionConfig) -> tuple[BevBox, float, float]:  # fmt: skip
    """BEV box, height and ground z under its centre for the points (base_link) of one cluster."""
    xy = pts[:, :2].astype(np.float64)
    l0, w0, _ = model.size
    if model.shape == "cylinder":
        bev = fit_cylinder(xy, w0, model.max_extent, sensor_xy)
    else:
        bev = fit_l_shape(xy, (l0, w0), sensor_xy, cfg.yaw_step_deg, cfg.yaw_fine_deg, cfg.shape_points, cfg.seed)
    ground_z = float(plane[0] * bev.x + plane[1] * bev.y + plane[2])
    return bev, float(heights.max()), ground_z


def _gate(pts: np.ndarray, heights: np.ndarray, model: ClassModel) -> bool:
    top = float(heights.max())
    extent = float(np.ptp(pts[:, :2], axis=0).max())
    return model.height[0] <= top <= model.height[1] and extent <= model.max_extent


def _candidates(pts: np.ndarray, uv: np.ndarray, h: np.ndarray, labels: np.ndarray, groups: np.ndarray | None,
                boxes: np.ndarray, grown: np.ndarray, class_ids: np.ndarray, width: float,
                cfg: FusionConfig) -> list[tuple[float, int, int, np.ndarray]]:  # fmt: skip
    """Every (score, detection, cluster, point indices) that may pair. A cluster is taken inside the
    detection's frustum only (the box grown by :data:`BOX_MARGIN` and opened where it touches the
    image border, :func:`~perception.fusion.geometry.frustum_boxes`; with a mask, only its points
    painted with the detection's class), so a neighbour it merged with outside does not count. It
    must have ``min_points`` points in the box, pass the class's size gates, and its columns must
    overlap the box's by ``min_overlap`` (IoU within the image; the rows of a far pedestrian's one or
    two beams say little). The score is that IoU times the cluster's share of the points in the box (an object
    fills its box) times, with a mask, the share of the WHOLE cluster painted with the detection's
    class: points painted through parallax (a car roof or a wall the LiDAR sees where the camera
    sees a pedestrian) belong to clusters painted mostly with another class, and lose."""
    if len(pts) == 0:
        return []
    tight = in_boxes(uv, boxes)  # (M, N)
    near = in_boxes(uv, grown)
    k = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=k)
    painted: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # painted class -> (per point, per cluster share)
    out: list[tuple[float, int, int, np.ndarray]] = []
    for j in range(len(boxes)):
        counts = np.bincount(labels[tight[j]], minlength=k)
        total = max(int(tight[j].sum()), 1)
        model = cfg.classes[int(class_ids[j])]
        want = int(_GROUP[DETECTION_TO_SEMANTIC[int(class_ids[j])]])
        if groups is None:
            frustum, share = np.flatnonzero(near[j]), np.ones(k)
        else:
            if want not in painted:
                is_want = (groups == want).any(1)
                painted[want] = (is_want, np.bincount(labels, is_want, k) / np.maximum(sizes, 1))
            frustum, share = np.flatnonzero(near[j] & painted[want][0]), painted[want][1]
        f_labels = labels[frustum]
        for c in np.flatnonzero((counts >= cfg.min_points) & (share > 0)):
            sel = frustum[f_labels == c]
            if len(sel) < cfg.min_points or not _gate(pts[sel], h[sel], model):
                continue
            u0, u1 = max(float(uv[sel, 0].min()), 0.0), min(float(uv[sel, 0].max()), width)
            x1, x2 = float(boxes[j, 0]), float(boxes[j, 2])
            iou_u = max(0.0, min(u1, x2) - max(u0, x1)) / max(max(u1, x2) - min(u0, x1), 1e-6)
            if iou_u >= cfg.min_overlap:
                out.append((iou_u * counts[c] / total * share[c], j, int(c), sel))
    return out


def _ground(pts_l: np.ndarray, ext: Extrinsics, cfg: FusionConfig) -> np.ndarray:
    """The ground plane in base_link, fitted to a sample of the whole scan (inside the frustums objects
    outnumber the road)."""
    step = max(1, len(pts_l) // (4 * cfg.ground_samples))
    sample = transform(pts_l[::step], ext.base_T_lidar)
    return fit_ground(sample, cfg.ground_method, samples=cfg.ground_samples, iterations=cfg.ground_iterations,
                      max_tilt_deg=cfg.ground_max_tilt_deg, seed=cfg.seed)  # fmt: skip


def _box_row(det: int, pts: np.ndarray, h: np.ndarray, plane: np.ndarray, model: ClassModel, sensor_xy: np.ndarray,
             cfg: FusionConfig, source: str = "lidar", class_id: int = -1, score: float = 0.0) -> _Row:  # fmt: skip
    bev, top, gz = _lidar_box(pts, h, plane, model, sensor_xy, cfg)
    var = cfg.lidar_sigma**2 + (0.5 * bev.shift) ** 2
    cov = np.diag([var, var, cfg.lidar_sigma**2])
    return _Row(det, np.array([bev.x, bev.y, gz + top / 2]), np.array([bev.length, bev.width, top]), bev.yaw, cov,
                source, class_id, score)  # fmt: skip


def _lidar_rows(pts_l: np.ndarray, pc: np.ndarray, plane: np.ndarray, det: Detections, intr: CameraIntrinsics,
                ext: Extrinsics, mask: np.ndarray | None, cand: np.ndarray, cfg: FusionConfig,
                timings: dict[str, float]) -> list[_Row]:  # fmt: skip
    """Objects of the detections ``cand`` from the clusters in their frustums (``pc``: the scan in
    the camera frame)."""
    t0 = time.perf_counter()
    boxes = det.boxes[cand].astype(np.float32)
    grown = frustum_boxes(boxes, intr, BOX_MARGIN)
    idx, uv = crop_to_image(pc, intr, cfg.min_depth, cfg.max_range, grown)
    # a beam through a one-pixel gap in the mask (a pedestrian's neck) keeps the class above or below it
    painted = paint(uv, mask, intr, (-1, 0, 1)) if (mask is not None and cfg.paint) else None
    pts = transform(pts_l[idx], ext.base_T_lidar)
    timings["crop"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    h = height_above(pts, plane)
    above = h > cfg.ground_height
    pts, uv, h = pts[above], uv[above], h[above]
    groups = None if painted is None else _GROUP[painted[above]]  # (N, 3)
    timings["ground"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    labels = voxel_clusters(pts, cfg.voxel, cfg.tolerance, cfg.cluster_method)
    timings["cluster"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    pairs = _candidates(pts, uv, h, labels, groups, boxes, grown, det.class_ids[cand], float(intr.width), cfg)
    timings["associate"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    rows: list[_Row] = []
    used_det: set[int] = set()
    used_cl: set[int] = set()
    sensor_xy = ext.base_T_lidar[:2, 3]
    for _, j, c, sel in sorted(pairs, key=lambda p: -p[0]):
        if j in used_det or c in used_cl:
            continue
        used_det.add(j)
        used_cl.add(c)
        model = cfg.classes[int(det.class_ids[cand[j]])]
        rows.append(_box_row(int(cand[j]), pts[sel], h[sel], plane, model, sensor_xy, cfg))
    timings["boxes"] += time.perf_counter() - t0
    return rows


def _shape_class(pts: np.ndarray, heights: np.ndarray, cfg: FusionConfig) -> int:
    """Without a mask: the class a cluster's shape says (a car-sized box: car; a people-sized column:
    pedestrian), -1 for anything else (walls, poles, trees are dropped)."""
    top = float(heights.max())
    extent = float(np.ptp(pts[:, :2], axis=0).max())
    for name, lo, hi in (("car", 2.5, None), ("pedestrian", 0.2, 1.0)):
        cid = detection_id(name)
        model = cfg.classes.get(cid)
        if model is not None and lo <= extent <= (hi or model.max_extent) and model.height[0] <= top <= model.height[1]:
            return cid
    return -1


def _in_footprint(xy: np.ndarray, rows: list[_Row], margin: float) -> bool:
    """Whether the bird's-eye-view point ``xy`` lies in some row's box grown by ``margin`` m (a
    fragment of an object already made: its far side, its roof)."""
    for r in rows:
        c, s = np.cos(r.yaw), np.sin(r.yaw)
        d = xy - r.center[:2]
        if abs(c * d[0] + s * d[1]) <= r.size[0] / 2 + margin and abs(-s * d[0] + c * d[1]) <= r.size[1] / 2 + margin:
            return True
    return False


def _near_painted(pts: np.ndarray, painted: np.ndarray, radius: float) -> np.ndarray:
    """Bool per point: within about ``radius`` m (bird's-eye-view cells of that size and their
    neighbours) of a ``painted`` point; only those can belong to a cluster worth classifying, so the
    rest of the view (walls, trees far from any car or person) is never clustered."""
    cell = np.floor(pts[:, :2] / radius).astype(np.int64)
    key = cell[:, 0] * 1_000_003 + cell[:, 1]
    seeds = np.unique(key[painted])
    grown = np.unique((seeds[:, None] + (np.arange(-1, 2)[:, None] * 1_000_003 + np.arange(-1, 2)).ravel()).ravel())
    return np.isin(key, grown)


def _lidar_only_rows(pts_l: np.ndarray, pc: np.ndarray, plane: np.ndarray, det: Detections,
                     intr: CameraIntrinsics, ext: Extrinsics, mask: np.ndarray | None, rows: list[_Row],
                     cfg: FusionConfig, timings: dict[str, float]) -> list[_Row]:  # fmt: skip
    """Objects from the clusters of the camera's view that no detection claimed (module doc): every
    point above the ground within ``lidar_only_range`` is clustered. With a mask a cluster takes the
    fused class its points are most painted with, if at least ``lidar_only_min_share`` of the WHOLE
    cluster (of the points within ~2 m of a painted one: :func:`_near_painted`) is painted so (a
    wall the LiDAR sees behind a car, painted "car" through parallax, is mostly painted "building");
    without one the class comes from the shape (:func:`_shape_class`).
    Clusters centred within ``lidar_only_dedup`` m of a LiDAR object's box are left out (fragments of
    it). A cluster in the frustum of a detection that was ranged from the camera (its class group,
    within ``lidar_only_gate_rel`` x range of the camera's estimate, at least 1 m) gives that
    detection its box instead (``rows`` is changed in place: a late association, the camera's range
    is the least certain part); the others are new rows."""
    t0 = time.perf_counter()
    idx, uv = crop_to_image(pc, intr, cfg.min_depth, cfg.lidar_only_range)
    pts = transform(pts_l[idx], ext.base_T_lidar)
    h = height_above(pts, plane)
    keep = h > cfg.ground_height
    pts, uv, h = pts[keep], uv[keep], h[keep]
    labels_sem = None
    if mask is not None:
        labels_sem = paint(uv, mask, intr)
        near = _near_painted(pts, np.isin(labels_sem, [DETECTION_TO_SEMANTIC[c] for c in cfg.classes]), 2.0)
        pts, uv, h, labels_sem = pts[near], uv[near], h[near], labels_sem[near]
    timings["lidar_only"] += time.perf_counter() - t0
    if len(pts) < cfg.lidar_only_min_points:
        return []
    t0 = time.perf_counter()
    labels = voxel_clusters(pts, cfg.voxel, cfg.tolerance, cfg.cluster_method)
    taken = [r for r in rows if r.source == "lidar"]
    camera = [r for r in rows if r.source == "camera"]
    cam_group = np.array([_GROUP[DETECTION_TO_SEMANTIC[int(det.class_ids[r.det])]] for r in camera], np.int64)
    cam_xy: np.ndarray = np.array([r.center[:2] for r in camera]).reshape(-1, 2)
    cam_box = det.boxes[[r.det for r in camera]].astype(np.float32).reshape(-1, 4)
    sensor_xy = ext.base_T_lidar[:2, 3]
    sem_to_det = {DETECTION_TO_SEMANTIC[c]: c for c in cfg.classes}
    fused_groups = np.unique(_GROUP[list(sem_to_det)])
    out: list[_Row] = []
    k = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=k)
    ok = sizes >= cfg.lidar_only_min_points
    if labels_sem is not None:  # enough of the cluster painted with some fused class (cheap pre-filter)
        fused = np.isin(_GROUP[labels_sem], fused_groups)
        ok &= np.bincount(labels, fused, k) >= cfg.lidar_only_min_share * sizes
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    for c in np.flatnonzero(ok):
        sel = order[bounds[c]:bounds[c + 1]]
        share = 1.0
        if labels_sem is not None:
            groups = _GROUP[labels_sem[sel]]
            counts = np.bincount(groups, minlength=256)[fused_groups]
            group = int(fused_groups[np.argmax(counts)])
            share = float(counts.max()) / len(sel)
            if share < cfg.lidar_only_min_share:
                continue
            cid = sem_to_det.get(int(np.argmax(np.bincount(labels_sem[sel][groups == group], minlength=256))), -1)
        else:
            cid = _shape_class(pts[sel], h[sel], cfg)
            share = 0.5
        if cid < 0 or not _gate(pts[sel], h[sel], cfg.classes[cid]):
            continue
        xy = pts[sel, :2].mean(0)
        if _in_footprint(xy, taken, cfg.lidar_only_dedup):
            continue
        group = int(_GROUP[DETECTION_TO_SEMANTIC[cid]])
        u = float(uv[sel, 0].mean())
        dist = np.linalg.norm(cam_xy - xy, axis=1) if len(cam_xy) else np.zeros(0)
        gate = max(1.0, cfg.lidar_only_gate_rel * float(np.linalg.norm(xy - sensor_xy)))
        near = np.flatnonzero((cam_group == group) & (dist <= gate) & (cam_box[:, 0] <= u) & (u <= cam_box[:, 2]))
        if len(near):  # the camera-ranged detection whose estimate is nearest takes the cluster's box
            k = int(near[np.argmin(dist[near])])
            r = camera[k]
            model = cfg.classes[int(det.class_ids[r.det])]
            late = _box_row(r.det, pts[sel], h[sel], plane, model, sensor_xy, cfg)
            r.center, r.size, r.yaw, r.cov, r.source = late.center, late.size, late.yaw, late.cov, "lidar"
            cam_group[k] = -1  # taken
            taken.append(r)
            continue
        row = _box_row(-1, pts[sel], h[sel], plane, cfg.classes[cid], sensor_xy, cfg, "lidar", cid,
                       cfg.lidar_only_score * share)  # fmt: skip
        out.append(row)
        taken.append(row)
    timings["lidar_only"] += time.perf_counter() - t0
    return out


def fuse(
    points: np.ndarray | None,
    detections: Detections,
    intr: CameraIntrinsics,
    ext: Extrinsics,
    mask: np.ndarray | None = None,
    cfg: FusionConfig | None = None,
) -> tuple[Boxes3D, dict[str, float]]:
    """3D objects in base_link for the 2D ``detections`` of one image (pixel coordinates of ``intr``):
    one box per fused detection (``detection_index`` its row, ``sources`` "lidar" or "camera", position
    covariances from the fit), LiDAR-only objects (``detection_index`` -1) last.

    ``points``: the LiDAR scan (N, 3 or 4) in its own frame, or None (camera only). ``mask``: the
    semantic segmentation (H, W) of the same image, any resolution, for point painting. Returns the
    objects and the seconds spent per stage (:data:`STAGES` and ``total``). Detections of classes
    without a :class:`ClassModel` in ``cfg.classes`` (traffic signs by default) give no object."""
    cfg = cfg or FusionConfig()
    t_start = time.perf_counter()
    timings = dict.fromkeys(STAGES, 0.0)
    cand = np.flatnonzero(np.isin(detections.class_ids, list(cfg.classes)))
    rows: list[_Row] = []
    pts_l, pc, plane = None, None, None
    if points is not None and (len(cand) or cfg.lidar_only):
        pts_l = check_points(points)
        t0 = time.perf_counter()
        pc = transform(pts_l, ext.cam_T_lidar)
        timings["crop"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        plane = _ground(pts_l, ext, cfg)
        timings["ground"] += time.perf_counter() - t0
    if pts_l is not None and pc is not None and plane is not None and len(cand):
        rows = _lidar_rows(pts_l, pc, plane, detections, intr, ext, mask, cand, cfg, timings)
    t0 = time.perf_counter()
    done = {r.det for r in rows}
    if cfg.camera_fallback:
        for i in cand:
            if int(i) in done:
                continue
            obj = camera_object(detections.boxes[i], cfg.classes[int(detections.class_ids[i])], intr, ext,
                                cfg.pixel_sigma)  # fmt: skip
            if obj is not None:
                rows.append(_Row(int(i), obj.center, obj.size, obj.yaw, obj.covariance, "camera"))
    timings["camera"] = time.perf_counter() - t0
    if pts_l is not None and pc is not None and plane is not None and cfg.lidar_only:
        rows += _lidar_only_rows(pts_l, pc, plane, detections, intr, ext, mask, rows, cfg, timings)
    rows.sort(key=lambda r: r.det if r.det >= 0 else len(detections))  # LiDAR-only objects last
    # a degenerate fit (non-finite centre, size, heading or covariance) gives no object
    rows = [r for r in rows if all(np.isfinite(v).all() for v in (r.center, r.size, r.yaw, r.cov))]
    cls = np.array([detections.class_ids[r.det] if r.det >= 0 else r.class_id for r in rows], np.int64)
    scores = np.array([detections.scores[r.det] if r.det >= 0 else r.score for r in rows], np.float32)
    out = Boxes3D(
        class_ids=cls,
        centers=np.array([r.center for r in rows], np.float64).reshape(-1, 3),
        sizes=np.array([r.size for r in rows], np.float64).reshape(-1, 3),
        yaws=np.array([r.yaw for r in rows], np.float64),
        scores=np.clip(scores, 0.0, 1.0),  # confidences (the tracker clipped them before)
        position_covs=np.array([r.cov for r in rows], np.float64).reshape(-1, 3, 3),
        sources=np.array([r.source for r in rows], np.str_),
        detection_index=np.array([r.det for r in rows], np.int64),
    )
    timings["total"] = time.perf_counter() - t_start
    return out, timings
