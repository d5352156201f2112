"""`perception bench sim`: frames/s of the synthetic world, camera-only, with LiDAR, degraded and
domain-randomised, with a per-stage breakdown (world update, raycast, shading, ground truth, LiDAR).

Variants render the same frame indices interleaved round-robin, so their ratios are fair on
a shared machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass

from perception.bench.report import Report
from perception.core.config import count_arg, warmup_arg

STAGES = ("world_update", "raycast", "shading", "gt", "lidar")


@dataclass(frozen=True)
class SimBenchConfig:
    seed: int = 0
    frames: int = 30
    warmup: int = 3
    width: int = 640
    height: int = 384
    lidar: bool = True
    degrade: bool = True
    randomize: bool = True
    out: str = "bench_out"
    goal_fps: float = 20.0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SimBenchConfig:
        return cls(seed=args.seed, frames=args.frames, warmup=args.warmup, width=args.width, height=args.height,
                   lidar=args.lidar, degrade=args.degrade, randomize=args.randomize, out=args.out)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SimBenchConfig()
    parser.add_argument("--seed", type=int, default=d.seed, help="world seed (default %(default)s)")
    parser.add_argument("--frames", type=count_arg, default=d.frames, help="timed frames per variant")
    parser.add_argument("--warmup", type=warmup_arg, default=d.warmup, help="untimed frames per variant first")
    parser.add_argument("--width", type=int, default=d.width)
    parser.add_argument("--height", type=int, default=d.height)
    parser.add_argument("--no-lidar", dest="lidar", action="store_false", help="skip the camera+LiDAR variant")
    parser.add_argument("--no-degrade", dest="degrade", action="store_false", help="skip the degraded variant")
    parser.add_argument("--no-randomize", dest="randomize", action="store_false",
                        help="skip the domain-randomised variant (every effect at full strength)")
    parser.add_argument("--out", default=d.out, help="output directory for bench_sim.md/.json")


def run_benchmark(cfg: SimBenchConfig) -> Report:
    from perception.sim.config import DomainRandomization, SimConfig
    from perception.sim.drive import frame_at
    from perception.sim.world import build_world

    base = SimConfig(width=cfg.width, height=cfg.height)
    variants = {"camera": base}
    if cfg.lidar:
        variants["camera+lidar"] = base.replace(lidar=True)
    if cfg.degrade:
        variants["camera+degrade"] = base.replace(degrade=True)
    if cfg.randomize:
        variants["camera+randomize"] = base.replace(randomize=DomainRandomization.full())
    report = Report(f"Synthetic world rendering, {cfg.width}x{cfg.height}, seed {cfg.seed}")
    t0 = time.perf_counter()
    worlds = {name: build_world(cfg.seed, c) for name, c in variants.items()}
    build_s = (time.perf_counter() - t0) / len(worlds)
    t0 = time.perf_counter()
    for w in worlds.values():
        w.static_scene()
    scene_s = (time.perf_counter() - t0) / len(worlds)

    totals: dict[str, list[float]] = {n: [] for n in variants}
    stages: dict[str, dict[str, list[float]]] = {n: {s: [] for s in STAGES} for n in variants}
    objects: list[int] = []
    load_before = os.getloadavg()[0]
    for i in range(cfg.warmup + cfg.frames):
        for name, w in worlds.items():
            t = time.perf_counter()
            frame, tm = frame_at(w, i)
            dt = time.perf_counter() - t
            if i < cfg.warmup:
                continue
            totals[name].append(dt)
            for s in STAGES:
                if s in tm:
                    stages[name][s].append(tm[s])
            if name == "camera":
                objects.append(int((~frame.gt.ignore).sum()))
    load_after = os.getloadavg()[0]

    for name in variants:
        med = statistics.median(totals[name])
        report.add_timing(name, totals[name], fps=1.0 / med)
    for name in variants:
        for s in STAGES:
            if stages[name][s]:
                report.add_timing(f"{name}: {s}", stages[name][s])
    report.add_ratios("camera")
    cam_fps = 1.0 / statistics.median(totals["camera"])
    report.add_goal(f"camera-only frames/s at {cfg.width}x{cfg.height} incl. GT", cam_fps, f">= {cfg.goal_fps:g}",
                    cam_fps >= cfg.goal_fps)  # fmt: skip
    report.notes.append(
        f"world build {build_s * 1000:.0f} ms + static scene (BVH) {scene_s * 1000:.0f} ms, once per seed"
    )
    report.notes.append(f"{statistics.mean(objects):.1f} scored (non-ignored) objects per frame on average")
    report.notes.append(f"load average {load_before:.2f} before, {load_after:.2f} after (machine shared)")
    report.notes.append("variants interleaved round-robin over the same frame indices; stage rows are medians")
    return report


def run(args: argparse.Namespace) -> int:
    cfg = SimBenchConfig.from_args(args)
    report = run_benchmark(cfg)
    report.publish(cfg.out, "bench_sim")
    return 0

