"""Drives through a world: frames as a deterministic function of (seed, cfg, index)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

from perception.core.types import Frame

from .config import SimConfig, SimError
from .degrade import degrade, sensor_effects
from .render import build_things, render_camera, select_things
from .world import World, build_world, camera_pose, ego_pose


@lru_cache(maxsize=4)
def get_world(seed: int, cfg: SimConfig) -> World:
    """``build_world`` with a small cache (worlds are immutable functions of seed and cfg)."""
    return build_world(seed, cfg)


def frame_at(world: World, index: int) -> tuple[Frame, dict[str, float]]:
    """Frame ``index`` of the drive through ``world`` and its timing breakdown (seconds)."""
    if index < 0:
        raise SimError(f"frame index must be >= 0, got {index}")
    cfg = world.cfg
    t = index / cfg.fps
    intr = world.intrinsics
    cam_pose = camera_pose(world, t)
    radius = cfg.lidar_range_m if cfg.lidar else None
    things = build_things(world, t, select_things(world, t, cam_pose, intr, radius))
    cam = render_camera(world, t, cam_pose, intr, things)
    rgb = degrade(cam.rgb, world.seed, index) if cfg.degrade else cam.rgb
    if cfg.randomize.sensor > 0:
        rgb = sensor_effects(rgb, world.seed, index, cfg.randomize.sensor)
    lidar = labels = lidar_T = None
    timings = dict(cam.timings)
    if cfg.lidar:
        import time

        from .lidar import scan

        t0 = time.perf_counter()
        lidar_T = ego_pose(world, t, cfg.lidar_height)
        lidar, labels = scan(world, lidar_T, things)
        timings["lidar"] = time.perf_counter() - t0
    frame = Frame(
        sequence=world.seed,
        index=index,
        stamp=float(t),
        rgb=rgb,
        intrinsics=intr,
        gt=cam.gt,
        semantic=cam.semantic,
        instance=cam.instance,
        depth=cam.depth,
        world_T_cam=cam_pose,
        lidar=lidar,
        lidar_labels=labels,
        world_T_lidar=lidar_T,
        scene_cut=index == 0,
    )
    return frame, timings


def generate_sequence(seed: int, num_frames: int, cfg: SimConfig | None = None, start_frame: int = 0) -> Iterator[
    Frame
]:
    """Frames start_frame .. start_frame + num_frames - 1 of the drive of ``seed``.

    Deterministic: the same (seed, cfg, index) always gives the same frame, whatever start_frame."""
    cfg = cfg or SimConfig()
    if num_frames < 0 or start_frame < 0:
        raise SimError(f"num_frames ({num_frames}) and start_frame ({start_frame}) must be >= 0")
    world = get_world(seed, cfg)
    last_t = (start_frame + num_frames - 1) / cfg.fps
    if num_frames and last_t > world.max_time:
        raise SimError(
            f"{start_frame + num_frames} frames at {cfg.fps} fps exceed world {seed}'s drive of "
            f"{world.max_time:.0f} s: raise SimConfig.world_length_m (now {cfg.world_length_m:.0f} m)"
        )
    for i in range(start_frame, start_frame + num_frames):
        yield frame_at(world, i)[0]


def render_drive_bag(
    out: str | Path, seed: int, num_frames: int, cfg: SimConfig | None = None, start_frame: int = 0,
    storage: str = "mcap", raw: bool = True, compressed: bool = False, compress: bool = False,
    start_ns: int | None = None, progress: bool = False,
) -> dict[str, int]:
    """Render the drive of ``seed`` into a new rosbag2 bag at ``out`` (written by
    :func:`perception.bag.drive.write_drive_bag`); returns messages per topic."""
    from tqdm import tqdm

    from perception.bag.drive import DEFAULT_START_NS, write_drive_bag

    frames = generate_sequence(seed, num_frames, cfg, start_frame)
    return write_drive_bag(out, tqdm(frames, total=num_frames, disable=not progress, desc=f"bag seed {seed}",
                                     unit="frame"), storage, raw, compressed, compress,
                           DEFAULT_START_NS if start_ns is None else start_ns)


def render_frame(seed: int, index: int, cfg: SimConfig | None = None) -> Frame:
    """One frame (convenience; the world is cached between calls)."""
    return frame_at(get_world(seed, cfg or SimConfig()), index)[0]


def max_frames(seed: int, cfg: SimConfig | None = None) -> int:
    """How many frames the drive of ``seed`` lasts."""
    cfg = cfg or SimConfig()
    return int(np.floor(get_world(seed, cfg).max_time * cfg.fps)) + 1
