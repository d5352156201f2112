"""`perception bench fusion`: the LiDAR-camera fusion step on synthetic scans, per stage and side by side.

Each frame of a synthetic drive (camera + spinning LiDAR, ~57k points at the default 32 beams x
0.2 deg) is fused with its ground-truth 2D boxes as detections and its ground-truth segmentation as
the mask, so the figures measure the fusion, not a detector. Variants run on the same frames
interleaved: the default chain, without the mask, open3d's ``segment_plane`` / ``cluster_dbscan``
in place of the numpy / scipy stages, and the naive open3d chain on the whole scan that issue 11
measured at ~105 ms. Accuracy: centre errors of LiDAR objects by class and range band, vehicle
heading errors (modulo pi), and the camera-only fallback's range error by band (every object ranged
from the camera alone). A synthetic partial L at 34 deg compares the L-shape search with
``cv2.minAreaRect``.

The helpers :func:`sim_case`, :func:`match_errors` and :func:`partial_l` serve the tests too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from perception.bench.report import Report
from perception.core.boxes3d import Boxes3D
from perception.core.config import count_arg, warmup_arg
from perception.core.types import Detections, Frame, GroundTruth
from perception.fusion.config import FusionConfig
from perception.fusion.fuser import STAGES, fuse
from perception.fusion.geometry import Extrinsics
from perception.fusion.shape import l_shape_heading, min_area_rect_heading, wrap_half_pi

BANDS: tuple[tuple[float, float], ...] = ((0.0, 20.0), (20.0, 40.0), (40.0, 80.0))
VEHICLES = (0, 1)  # car, truck detection ids: the classes whose heading is scored


@dataclass(frozen=True)
class SimCase:
    """One synthetic frame ready to fuse: the frame, its extrinsics, the ground-truth boxes of the
    fused classes as detections, and the ground truth of each detection row in base_link."""

    frame: Frame
    ext: Extrinsics
    detections: Detections
    centers: np.ndarray  # (N, 3) base_link box centres
    sizes: np.ndarray  # (N, 3) l, w, h
    yaws: np.ndarray  # (N,) heading in base_link


def gt_in_base(gt: GroundTruth, base_T_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # noqa: N803
    """Centres, sizes and headings of ``gt.boxes3d`` (optical frame, KITTI rotation_y) in base_link."""
    b = gt.boxes3d.astype(np.float64)
    R, t = base_T_cam[:3, :3], base_T_cam[:3, 3]
    centers = b[:, :3] @ R.T + t
    fwd = np.stack([np.cos(b[:, 6]), np.zeros(len(b)), -np.sin(b[:, 6])], 1) @ R.T
    return centers, b[:, 3:6].copy(), np.arctan2(fwd[:, 1], fwd[:, 0])


def sim_case(world: Any, index: int, classes: FusionConfig | None = None) -> SimCase:
    """Frame ``index`` of ``world`` (a perception.sim World with ``cfg.lidar`` on) as a :class:`SimCase`."""
    from perception.sim.drive import frame_at
    from perception.sim.world import ego_pose

    frame, _ = frame_at(world, index)
    if frame.lidar is None or frame.world_T_lidar is None or frame.world_T_cam is None:
        raise ValueError("the world renders no LiDAR: build it from SimConfig(lidar=True)")
    ext = Extrinsics.from_frames(ego_pose(world, frame.stamp, 0.0), frame.world_T_lidar, frame.world_T_cam)
    gt = frame.gt
    fused = list((classes or FusionConfig()).classes)
    keep = ~gt.ignore & np.isin(gt.class_ids, fused)
    det = Detections(gt.boxes[keep], np.ones(int(keep.sum()), np.float32), gt.class_ids[keep])
    centers, sizes, yaws = gt_in_base(gt, ext.base_T_cam)
    return SimCase(frame, ext, det, centers[keep], sizes[keep], yaws[keep])


def match_errors(objects: Boxes3D, case: SimCase) -> list[dict[str, Any]]:
    """One row per fused object: class, source, ground-truth range from the camera (m), BEV centre
    error (m), signed range error (m, positive = too far) and heading error (deg, modulo 180)."""
    cam_xy = case.ext.base_T_cam[:2, 3]
    rows = []
    for k in np.flatnonzero(objects.detection_index >= 0):  # LiDAR-only objects (-1) have no ground-truth row
        d = int(objects.detection_index[k])
        gt_xy, est_xy = case.centers[d, :2], objects.centers[k, :2]
        rng = float(np.linalg.norm(gt_xy - cam_xy))
        rows.append({
            "class_id": int(objects.class_ids[k]),
            "source": str(objects.sources[k]),
            "range": rng,
            "center_error": float(np.linalg.norm(est_xy - gt_xy)),
            "range_error": float(np.linalg.norm(est_xy - cam_xy)) - rng,
            "yaw_error": float(np.rad2deg(abs(wrap_half_pi(objects.yaws[k] - case.yaws[d])))),
        })  # fmt: skip
    return rows


def partial_l(heading_deg: float = 34.0, size: tuple[float, float] = (4.5, 1.8), side_share: float = 0.6,
              spacing: float = 0.05, noise: float = 0.02, seed: int = 0) -> np.ndarray:  # fmt: skip
    """BEV points (N, 2) of a car at ``heading_deg`` seen as a partial L: the near end whole and
    ``side_share`` of the near side (the rest occluded), with Gaussian noise."""
    rng = np.random.default_rng(seed)
    ln, wd = size
    xs = np.arange(-ln / 2, -ln / 2 + side_share * ln, spacing)
    side = np.column_stack([xs, np.full(len(xs), -wd / 2)])
    ys = np.arange(-wd / 2, wd / 2, spacing)
    end = np.column_stack([np.full(len(ys), -ln / 2), ys])
    p = np.concatenate([side, end]) + rng.normal(0.0, noise, (len(xs) + len(ys), 2))
    a = np.deg2rad(heading_deg)
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    out: np.ndarray = p @ R.T + np.array([15.0, 5.0])
    return out


def naive_open3d(points: np.ndarray) -> dict[str, float]:
    """Seconds per stage of the naive chain on the whole scan (issue 11's ~105 ms baseline):
    ``segment_plane``, ``voxel_down_sample`` (0.3 m), ``cluster_dbscan`` (0.7 m)."""
    import open3d as o3d

    out: dict[str, float] = {}
    t0 = time.perf_counter()
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points[:, :3].astype(np.float64)))
    _, inl = pc.segment_plane(0.2, 3, 100)
    rest = pc.select_by_index(inl, invert=True)
    out["plane"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    down = rest.voxel_down_sample(0.3)
    out["voxel"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    down.cluster_dbscan(0.7, 3, print_progress=False)
    out["dbscan"] = time.perf_counter() - t0
    out["total"] = sum(out.values())
    return out


@dataclass(frozen=True)
class FusionBenchConfig:
    seed: int = 0
    frames: int = 10
    warmup: int = 2
    width: int = 640
    height: int = 384
    beams: int = 32
    az_step_deg: float = 0.2
    out: str = "bench_out"
    budget_ms: float = 50.0
    naive: bool = True

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> FusionBenchConfig:
        return cls(seed=args.seed, frames=args.frames, warmup=args.warmup, width=args.width, height=args.height,
                   beams=args.beams, az_step_deg=args.az_step, out=args.out, naive=args.naive)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = FusionBenchConfig()
    parser.add_argument("--seed", type=int, default=d.seed, help="world seed (default %(default)s)")
    parser.add_argument("--frames", type=count_arg, default=d.frames, help="timed frames (default %(default)s)")
    parser.add_argument("--warmup", type=warmup_arg, default=d.warmup, help="untimed frames first")
    parser.add_argument("--width", type=int, default=d.width)
    parser.add_argument("--height", type=int, default=d.height)
    parser.add_argument("--beams", type=int, default=d.beams, help="LiDAR beams (32 x 0.2 deg: ~57k points)")
    parser.add_argument("--az-step", type=float, default=d.az_step_deg, help="LiDAR azimuth step, degrees")
    parser.add_argument(
        "--no-naive",
        dest="naive",
        action="store_false",
        help="skip the naive whole-scan open3d chain (~100 ms a frame)",
    )
    parser.add_argument("--out", default=d.out, help="output directory for bench_fusion.md/.json")


def _band(r: float) -> str:
    for lo, hi in BANDS:
        if lo <= r < hi:
            return f"{lo:g}-{hi:g} m"
    return f">= {BANDS[-1][1]:g} m"


def _accuracy_rows(report: Report, errors: list[dict[str, Any]], camera: list[dict[str, Any]],
                   n_gt: dict[str, int]) -> None:  # fmt: skip
    from perception.core.classes import DETECTION_NAMES

    lidar = [e for e in errors if e["source"] == "lidar"]
    for cid in sorted({e["class_id"] for e in lidar}):
        for lo, hi in BANDS:
            sel = [e for e in lidar if e["class_id"] == cid and lo <= e["range"] < hi]
            if not sel:
                continue
            ce = [e["center_error"] for e in sel]
            row: dict[str, Any] = {
                "name": f"lidar centre error: {DETECTION_NAMES[cid]} {_band(lo)}",
                "n": len(sel),
                "median_m": statistics.median(ce),
                "p90_m": float(np.percentile(ce, 90)),
            }
            if cid in VEHICLES:
                row["yaw_median_deg"] = statistics.median(e["yaw_error"] for e in sel)
                row["yaw_p90_deg"] = float(np.percentile([e["yaw_error"] for e in sel], 90))
            report.add(**row)
    for lo, hi in BANDS:
        sel = [e for e in camera if lo <= e["range"] < hi]
        if sel:
            ae = [abs(e["range_error"]) for e in sel]
            rel = [abs(e["range_error"]) / max(e["range"], 1e-6) for e in sel]
            report.add(name=f"camera-only range error {_band(lo)}", n=len(sel), median_m=statistics.median(ae),
                       p90_m=float(np.percentile(ae, 90)), median_rel=statistics.median(rel))  # fmt: skip
    for band, n in n_gt.items():
        got = sum(1 for e in lidar if _band(e["range"]) == band)
        report.notes.append(f"objects {band}: {got} of {n} ground-truth detections fused from LiDAR")


def run_benchmark(cfg: FusionBenchConfig) -> Report:
    from perception.sim.config import SimConfig
    from perception.sim.drive import get_world

    sim_cfg = SimConfig(width=cfg.width, height=cfg.height, lidar=True, lidar_beams=cfg.beams,
                        lidar_az_step_deg=cfg.az_step_deg)  # fmt: skip
    world = get_world(cfg.seed, sim_cfg)
    base = FusionConfig()
    variants = {
        "fuse (mask)": (base, True),
        "fuse (no mask)": (base, False),
        "fuse, open3d segment_plane": (replace(base, ground_method="open3d"), True),
        "fuse, open3d cluster_dbscan": (replace(base, cluster_method="open3d"), True),
        "fuse, flat ground band": (replace(base, ground_method="band"), True),
    }
    totals: dict[str, list[float]] = {n: [] for n in variants}
    stages: dict[str, list[float]] = {s: [] for s in STAGES}
    naive: dict[str, list[float]] = {}
    errors: list[dict[str, Any]] = []
    camera: list[dict[str, Any]] = []
    n_gt: dict[str, int] = {}
    n_points: list[int] = []
    load_before = os.getloadavg()[0]
    for i in range(cfg.warmup + cfg.frames):
        case = sim_case(world, i)
        f = case.frame
        assert f.lidar is not None
        for name, (fc, use_mask) in variants.items():
            objs, tm = fuse(f.lidar, case.detections, f.intrinsics, case.ext, f.semantic if use_mask else None, fc)
            if i < cfg.warmup:
                continue
            totals[name].append(tm["total"])
            if name == "fuse (mask)":
                for s in STAGES:
                    stages[s].append(tm[s])
                errors += match_errors(objs, case)
        if cfg.naive:
            tn = naive_open3d(f.lidar)
            if i >= cfg.warmup:
                for k, v in tn.items():
                    naive.setdefault(k, []).append(v)
        if i < cfg.warmup:
            continue
        n_points.append(len(f.lidar))
        cam_objs, _ = fuse(None, case.detections, f.intrinsics, case.ext, None, base)
        camera += match_errors(cam_objs, case)
        cam_xy = case.ext.base_T_cam[:2, 3]
        for c in case.centers:
            band = _band(float(np.linalg.norm(c[:2] - cam_xy)))
            n_gt[band] = n_gt.get(band, 0) + 1
    load_after = os.getloadavg()[0]

    pts = statistics.mean(n_points) if n_points else 0.0
    report = Report(f"LiDAR-camera fusion, {cfg.width}x{cfg.height}, {cfg.beams} beams ({pts / 1000:.1f}k points), "
                    f"seed {cfg.seed}")  # fmt: skip
    for name in variants:
        report.add_timing(name, totals[name])
    for s in STAGES:
        report.add_timing(f"fuse (mask): {s}", stages[s])
    if naive:
        report.add_timing("naive open3d, whole scan", naive["total"])
        for k in ("plane", "voxel", "dbscan"):
            report.add_timing(f"naive open3d: {k}", naive[k])
    report.add_ratios("fuse (mask)")
    _accuracy_rows(report, errors, camera, n_gt)

    med = 1000.0 * statistics.median(totals["fuse (mask)"])
    report.add_goal("fusion step, median ms per scan", med, f"<= {cfg.budget_ms:g}", med <= cfg.budget_ms)
    near = [e["center_error"] for e in errors if e["source"] == "lidar" and e["range"] < 30.0]
    if near:
        v = statistics.median(near)
        report.add_goal("LiDAR centre error < 30 m, median m", v, "<= 0.3", v <= 0.3)
    lh = l_shape_bench()
    report.notes.append(
        f"partial L at 34 deg (60% of the side seen): L-shape {lh['l_shape_deg']:.1f} deg in "
        f"{lh['l_shape_ms']:.2f} ms, cv2.minAreaRect {lh['min_area_rect_deg']:.1f} deg in "
        f"{lh['min_area_rect_ms']:.2f} ms"
    )
    report.notes.append("detections = ground-truth 2D boxes, mask = ground-truth segmentation (the fusion alone)")
    report.notes.append(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
                        f"load average {load_before:.2f} before, {load_after:.2f} after (machine shared)")  # fmt: skip
    report.notes.append("variants interleaved on the same frames; stage rows are medians of the default variant")
    return report


def l_shape_bench(heading_deg: float = 34.0, iters: int = 20) -> dict[str, float]:
    """Headings (deg, in [0, 90)) and ms of the L-shape search and cv2.minAreaRect on :func:`partial_l`."""
    xy = partial_l(heading_deg)
    out: dict[str, float] = {}
    for key, fn in (("l_shape", l_shape_heading), ("min_area_rect", min_area_rect_heading)):
        t0 = time.perf_counter()
        for _ in range(iters):
            h = fn(xy)
        out[f"{key}_ms"] = 1000.0 * (time.perf_counter() - t0) / iters
        out[f"{key}_deg"] = float(np.rad2deg(h))
    return out


def run(args: argparse.Namespace) -> int:
    cfg = FusionBenchConfig.from_args(args)
    report = run_benchmark(cfg)
    report.publish(cfg.out, "bench_fusion")
    return 0
