"""`perception track-eval` (``python -m perception.eval.track_cli``): the tracker on synthetic drives --
IDF1, MOTA, ID switches, velocity error and milliseconds per frame against the world's ground truth.

Ground truth comes from rendered frames (``GroundTruth.boxes3d`` + ``world_T_cam``: only objects with
visible pixels, small/occluded ones marked ignore) or, with ``--analytic``, straight from the world's
agent states in the camera's view (no rendering, no occlusion: fast). Detections are played from it
with :class:`perception.eval.track_groundtruth.DetectionNoise` and a fixed seed. The ego pose is the
world's: odom = world, base_link = the ego's ground point (x forward, z up).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from perception.core.classes import DETECTION_NAMES, SEMANTIC_TO_DETECTION
from perception.core.config import count_arg
from perception.core.types import Frame
from perception.eval.track_groundtruth import (
    DetectionNoise,
    GroundTruthFrame,
    noisy_detections,
    objects_from_boxes3d,
    predicted_frame,
    with_velocities,
)
from perception.eval.tracking import TrackFrame, TrackingMetrics, evaluate_tracking
from perception.tracking.config import TrackerConfig
from perception.tracking.tracker import MultiObjectTracker

TRACKED = (0, 1, 2, 3)  # car, truck, pedestrian, cyclist


def drive_ground_truth(seed: int, num_frames: int, start: int = 0, analytic: bool = False, width: int = 320,
                       height: int = 192, eval_range: float = 70.0) -> list[GroundTruthFrame]:  # fmt: skip
    """Ground-truth objects (odom = world) of frames start .. start + num_frames - 1 of drive ``seed``,
    with velocities (:func:`frame_ground_truth` per frame, rendered unless ``analytic``)."""
    from perception.sim.config import SimConfig
    from perception.sim.drive import frame_at, get_world

    world = get_world(seed, SimConfig(width=width, height=height))
    frames = [frame_ground_truth(world, i, None if analytic else frame_at(world, i)[0], eval_range)
              for i in range(start, start + num_frames)]  # fmt: skip
    return with_velocities(frames)


def frame_ground_truth(world: Any, index: int, frame: Frame | None = None, eval_range: float = 70.0
                       ) -> GroundTruthFrame:  # fmt: skip
    """Ground-truth objects (odom = world) of frame ``index`` of the drive through ``world``.

    Rendered (``frame``: that frame as ``perception.sim`` rendered it): the frame's boxes3d, its small
    or occluded objects marked ignore, plus every object of the camera's view that the render hides
    completely, also marked ignore (a track that coasts behind an occluder is neither a hit nor a
    false positive). None (analytic): every object of the camera's view from the world state, none
    hidden. Objects farther than ``eval_range`` from the ego are marked ignore. No velocities: pass
    the drive's frames through :func:`~perception.eval.track_groundtruth.with_velocities`."""
    from perception.sim.render import select_things, to_cam
    from perception.sim.world import agent_states, camera_pose, ego_pose

    intr = world.intrinsics
    t = index / world.cfg.fps
    odom_T_base = ego_pose(world, t, 0.0)
    cam = camera_pose(world, t)
    idx = select_things(world, t, cam, intr, None)
    st = agent_states(world, t, idx)
    tpl = [world.agents.templates[k] for k in idx]
    sizes = np.array([tp.size for tp in tpl], np.float64).reshape(-1, 3)
    centers = st.xyz + np.column_stack([np.zeros((len(idx), 2)), sizes[:, 2] / 2])
    pc = to_cam(centers, cam)
    u = intr.fx * pc[:, 0] / np.maximum(pc[:, 2], 1e-3) + intr.cx
    ignore = (pc[:, 2] < 1.0) | (u < 0) | (u > intr.width)
    ids = idx.astype(np.int64) + 1
    classes = np.array([SEMANTIC_TO_DETECTION[tp.semantic] for tp in tpl], np.int64)
    yaws = np.asarray(st.yaw, np.float64)
    if frame is not None:
        assert frame.world_T_cam is not None
        hidden = ~np.isin(ids, frame.gt.track_ids)
        c, sz, y = objects_from_boxes3d(frame.gt.boxes3d, frame.world_T_cam)
        ids, classes = np.r_[frame.gt.track_ids, ids[hidden]], np.r_[frame.gt.class_ids, classes[hidden]]
        centers, sizes, yaws = np.r_[c, centers[hidden]], np.r_[sz, sizes[hidden]], np.r_[y, yaws[hidden]]
        ignore = np.r_[frame.gt.ignore, np.ones(int(hidden.sum()), bool)]
    far = np.linalg.norm(centers[:, :2] - odom_T_base[:2, 3], axis=1) > eval_range
    return GroundTruthFrame(t, odom_T_base, ids, classes, centers, sizes, yaws, ignore | far)


def run_tracker(gt: Sequence[GroundTruthFrame], noise: DetectionNoise, seed: int,
                config: TrackerConfig | None = None) -> tuple[list[TrackFrame], np.ndarray, np.ndarray]:  # fmt: skip
    """The tracker over noisy detections of ``gt``: predicted frames, milliseconds per update and
    detections per frame."""
    rng = np.random.default_rng(seed)
    tracker = MultiObjectTracker(config, session=f"eval-{seed}")
    preds, ms, ndet = [], [], []
    for n, g in enumerate(gt):
        dets = noisy_detections(g, n, rng, noise)
        t0 = time.process_time()
        objs = tracker.update(g.stamp, g.odom_T_base, dets)
        ms.append((time.process_time() - t0) * 1e3)
        ndet.append(len(dets))
        preds.append(predicted_frame(objs))
    return preds, np.asarray(ms), np.asarray(ndet)


def evaluate_drive(gt: Sequence[GroundTruthFrame], preds: Sequence[TrackFrame], classes: Sequence[int],
                   threshold: float = 2.0) -> TrackingMetrics:  # fmt: skip
    """Metrics of the predictions of ``classes`` against the ground truth of ``classes``."""
    return evaluate_tracking([g.track_frame().of_class(classes) for g in gt], [p.of_class(classes) for p in preds],
                             threshold)  # fmt: skip


def crowd_timing(num_objects: int = 30, frames: int = 50, seed: int = 0) -> np.ndarray:
    """Milliseconds per update with ``num_objects`` moving objects (cars and pedestrians around the
    ego) detected every frame with noise, plus the false positives of the default noise."""
    rng = np.random.default_rng(seed)
    n = num_objects
    cls = np.where(np.arange(n) % 3 == 0, 2, 0)
    p0 = np.column_stack([rng.uniform(-40, 60, n), rng.uniform(-20, 20, n), np.where(cls == 2, 0.9, 0.75)])
    v = rng.normal(0, 1, (n, 2)) * np.where(cls == 2, 1.0, 6.0)[:, None]
    sizes = np.where((cls == 2)[:, None], [0.6, 0.6, 1.8], [4.5, 1.9, 1.5])
    noise = DetectionNoise(max_range=200.0)
    tracker = MultiObjectTracker(session="crowd")
    ms = []
    for k in range(frames):
        t = 0.1 * k
        ego = np.eye(4)
        ego[0, 3] = 8.0 * t
        c = p0.copy()
        c[:, :2] += v * t
        c[:, 0] += ego[0, 3]
        g = GroundTruthFrame(t, ego, np.arange(1, n + 1), cls, c, sizes, np.arctan2(v[:, 1], v[:, 0]),
                             np.zeros(n, bool))  # fmt: skip
        dets = noisy_detections(g, k, rng, noise)
        t0 = time.process_time()
        tracker.update(t, ego, dets)
        ms.append((time.process_time() - t0) * 1e3)
    return np.asarray(ms)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103], help="drives (default 101 102 103)")
    parser.add_argument("--frames", type=count_arg, default=100, help="frames per drive (default 100 = 10 s)")
    parser.add_argument("--start", type=int, default=0, help="first frame (default 0)")
    parser.add_argument("--analytic", action="store_true",
                        help="ground truth from the world's agent states (no rendering, no occlusion)")
    parser.add_argument("--width", type=int, default=320, help="render width for the ground truth (default 320)")
    parser.add_argument("--height", type=int, default=192, help="render height (default 192)")
    parser.add_argument("--noise-seed", type=int, default=0, help="seed of the simulated detector (default 0)")
    parser.add_argument("--threshold", type=float, default=2.0, help="match distance in metres (default 2)")
    parser.add_argument("--crowd", type=int, default=30, help="objects in the timing scene (default 30)")


def main(args: argparse.Namespace) -> int:
    noise = DetectionNoise()
    rows: list[tuple[str, TrackingMetrics]] = []
    all_ms = []
    for seed in args.seeds:
        gt = drive_ground_truth(seed, args.frames, args.start, args.analytic, args.width, args.height,
                                noise.max_range)  # fmt: skip
        preds, ms, ndet = run_tracker(gt, noise, seed * 1000 + args.noise_seed)
        all_ms.append(ms)
        print(f"drive {seed}: {len(gt)} frames, {ndet.mean():.1f} detections/frame, tracker {np.median(ms):.2f} ms "
              f"median, {ms.max():.2f} ms max")  # fmt: skip
        rows.append((f"{seed} all", evaluate_drive(gt, preds, TRACKED, args.threshold)))
        for c in TRACKED:
            m = evaluate_drive(gt, preds, [c], args.threshold)
            if m.num_gt:
                rows.append((f"{seed} {DETECTION_NAMES[c]}", m))
    for name, m in rows:
        print(f"  {name:16s} {m.summary()}")
    for group in ("all", "car"):
        sel = [m for name, m in rows if name.endswith(" " + group)]
        gt_n = sum(m.num_gt for m in sel)
        idtp = sum(m.idtp for m in sel)
        pred_n = sum(m.num_pred for m in sel)
        errs = sum(m.fp + m.fn + m.id_switches for m in sel)
        vel = sum(m.velocity_error * m.velocity_count for m in sel) / max(sum(m.velocity_count for m in sel), 1)
        print(f"pooled {group}: IDF1 {2 * idtp / max(gt_n + pred_n, 1):.3f}  MOTA {1 - errs / max(gt_n, 1):.3f}  "
              f"IDSW {sum(m.id_switches for m in sel)}  velocity error {vel:.2f} m/s")  # fmt: skip
    crowd = crowd_timing(args.crowd)
    drive_ms = np.concatenate(all_ms)
    print(f"timing: drives {np.median(drive_ms):.2f} ms median / {np.percentile(drive_ms, 95):.2f} ms p95 per frame;"
          f" {args.crowd} moving objects {np.median(crowd):.2f} ms median / {np.percentile(crowd, 95):.2f} ms p95")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_arguments(p)
    sys.exit(main(p.parse_args()))

