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
from dataclasses import dataclass, field

import numpy as np

from perception.core.classes import DETECTION_TO_SEMANTIC, semantic_id
from perception.core.types import CameraIntrinsics, Detections

from .camera_only import camera_object
from .cluster import voxel_clusters
from .config import ClassModel, FusionConfig, FusionError
from .geometry import Extrinsics, check_points, crop_to_image, frustum_boxes, in_boxes, paint, transform
from .ground import fit_ground, height_above
from .shape import BevBox, fit_cylinder, fit_l_shape

STAGES = ("crop", "ground", "cluster", "associate", "boxes", "camera")
SOURCES = ("lidar", "camera")
BOX_MARGIN = 0.1  # frustum crop: boxes grown by this share of their size on each side

# painted classes that may answer each other's detections (the detector and the mask may disagree)
_CAR, _TRUCK = semantic_id("car"), semantic_id("truck")
_GROUP = np.arange(256, dtype=np.int64)
_GROUP[_TRUCK] = _CAR


def _f64(shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape, np.float64)


@dataclass(frozen=True)
class Objects3D:
    """3D objects of one frame in base_link (x forward, y left, z up), one row per object.

    ``centers`` are box centres (mid-height), ``sizes`` length, width, height (length along
    ``yaws``), ``covariances`` the 3x3 position covariances, ``sources`` "lidar" or "camera" and
    ``detection_index`` the row of the 2D detection each object came from."""

    class_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    centers: np.ndarray = field(default_factory=lambda: _f64((0, 3)))
    sizes: np.ndarray = field(default_factory=lambda: _f64((0, 3)))
    yaws: np.ndarray = field(default_factory=lambda: _f64((0,)))
    covariances: np.ndarray = field(default_factory=lambda: _f64((0, 3, 3)))
    sources: np.ndarray = field(default_factory=lambda: np.zeros(0, "<U6"))
    detection_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        n = len(self.class_ids)
        shapes = {"scores": (n,), "centers": (n, 3), "sizes": (n, 3), "yaws": (n,), "covariances": (n, 3, 3),
                  "sources": (n,), "detection_index": (n,)}  # fmt: skip
        bad = {k: getattr(self, k).shape for k, s in shapes.items() if getattr(self, k).shape != s}
        if bad:
            raise FusionError(f"Objects3D arrays disagree with {n} class ids: {bad}")

    def __len__(self) -> int:
        return len(self.class_ids)


@dataclass
class _Row:
    det: int
    center: np.ndarray
    size: np.ndarray
    yaw: float
    cov: np.ndarray
    source: str


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


def _lidar_rows(pts_l: np.ndarray, det: Detections, intr: CameraIntrinsics, ext: Extrinsics, mask: np.ndarray | None,
                cand: np.ndarray, cfg: FusionConfig, timings: dict[str, float]) -> list[_Row]:  # fmt: skip
    t0 = time.perf_counter()
    pc = transform(pts_l, ext.cam_T_lidar)
    boxes = det.boxes[cand].astype(np.float32)
    grown = frustum_boxes(boxes, intr, BOX_MARGIN)
    idx, uv = crop_to_image(pc, intr, cfg.min_depth, cfg.max_range, grown)
    # a beam through a one-pixel gap in the mask (a pedestrian's neck) keeps the class above or below it
    painted = paint(uv, mask, intr, (-1, 0, 1)) if (mask is not None and cfg.paint) else None
    pts = transform(pts_l[idx], ext.base_T_lidar)
    timings["crop"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    # the plane is fitted to a sample of the whole scan: inside the frustums objects outnumber the road
    step = max(1, len(pts_l) // (4 * cfg.ground_samples))
    sample = transform(pts_l[::step], ext.base_T_lidar)
    plane = fit_ground(sample, cfg.ground_method, samples=cfg.ground_samples, iterations=cfg.ground_iterations,
                       max_tilt_deg=cfg.ground_max_tilt_deg, seed=cfg.seed)  # fmt: skip
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
        bev, top, gz = _lidar_box(pts[sel], h[sel], plane, model, sensor_xy, cfg)
        var = cfg.lidar_sigma**2 + (0.5 * bev.shift) ** 2
        cov = np.diag([var, var, cfg.lidar_sigma**2])
        rows.append(_Row(int(cand[j]), np.array([bev.x, bev.y, gz + top / 2]), np.array([bev.length, bev.width, top]),
                         bev.yaw, cov, "lidar"))  # fmt: skip
    timings["boxes"] += time.perf_counter() - t0
    return rows


def fuse(
    points: np.ndarray | None,
    detections: Detections,
    intr: CameraIntrinsics,
    ext: Extrinsics,
    mask: np.ndarray | None = None,
    cfg: FusionConfig | None = None,
) -> tuple[Objects3D, dict[str, float]]:
    """3D objects in base_link for the 2D ``detections`` of one image (pixel coordinates of ``intr``).

    ``points``: the LiDAR scan (N, 3 or 4) in its own frame, or None (camera only). ``mask``: the
    semantic segmentation (H, W) of the same image, any resolution, for point painting. Returns the
    objects and the seconds spent per stage (:data:`STAGES` and ``total``). Detections of classes
    without a :class:`ClassModel` in ``cfg.classes`` (traffic signs by default) give no object."""
    cfg = cfg or FusionConfig()
    t_start = time.perf_counter()
    timings = dict.fromkeys(STAGES, 0.0)
    cand = np.flatnonzero(np.isin(detections.class_ids, list(cfg.classes)))
    rows: list[_Row] = []
    if points is not None and len(cand):
        rows = _lidar_rows(check_points(points), detections, intr, ext, mask, cand, cfg, timings)
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
    rows.sort(key=lambda r: r.det)
    di = np.array([r.det for r in rows], np.int64)
    out = Objects3D(
        class_ids=detections.class_ids[di].astype(np.int64),
        scores=detections.scores[di].astype(np.float32),
        centers=np.array([r.center for r in rows], np.float64).reshape(-1, 3),
        sizes=np.array([r.size for r in rows], np.float64).reshape(-1, 3),
        yaws=np.array([r.yaw for r in rows], np.float64),
        covariances=np.array([r.cov for r in rows], np.float64).reshape(-1, 3, 3),
        sources=np.array([r.source for r in rows], "<U6"),
        detection_index=di,
    )
    timings["total"] = time.perf_counter() - t_start
    return out, timings
