"""`perception sim`: render a synthetic drive to PNG/NPY files plus gt.jsonl and camera.json."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from perception.core.config import count_arg

from .config import SimConfig, SimError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="world / sequence seed (default 0)")
    parser.add_argument("--frames", type=count_arg, default=60, help="number of frames (default 60)")
    parser.add_argument("--start", type=int, default=0, help="index of the first frame (default 0)")
    parser.add_argument("--width", type=int, default=None, help="image width (default from config, 640)")
    parser.add_argument("--height", type=int, default=None, help="image height (default from config, 384)")
    parser.add_argument("--fps", type=float, default=None, help="frame rate (default 10)")
    parser.add_argument("--lidar", action="store_true", help="also simulate the spinning LiDAR")
    parser.add_argument("--degrade", action="store_true", help="motion blur, noise and JPEG artefacts")
    parser.add_argument("--randomize", action="store_true",
                        help="domain randomisation at full strength (textures, light, camera, sensor, flying "
                             "distractors); for chosen strengths use --config with a 'randomize:' mapping")
    parser.add_argument("--depth", action="store_true", help="also write depth/NNNNNN.npy (float32 metres)")
    parser.add_argument("--config", type=Path, default=None, help="YAML/JSON file with SimConfig fields")
    parser.add_argument("--out", type=Path, required=True, help="output directory (a rosbag2 bag with --bag)")
    parser.add_argument("--bag", action="store_true",
                        help="write the drive as a rosbag2 bag (camera, camera_info, LiDAR, ground truth topics)")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage (default mcap)")
    parser.add_argument("--image", choices=("raw", "compressed", "both"), default="raw",
                        help="bag image topics: sensor_msgs/Image, CompressedImage (JPEG) or both (default raw)")
    parser.add_argument("--compress", action="store_true", help="zstd-compress each bag message (smaller files)")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    base: dict[str, Any] = {}
    if args.config is not None:
        text = Path(args.config).read_text(encoding="utf-8")
        if str(args.config).endswith(".json"):
            base = json.loads(text)
        else:
            from perception.core.config import load_yaml

            base = load_yaml(text) or {}
        if not isinstance(base, dict):
            raise SimError(f"{args.config} must hold a mapping of SimConfig fields (optionally under 'sim')")
        base = base.get("sim", base)
    cfg = SimConfig.from_dict(base)
    changes = {k: getattr(args, k) for k in ("width", "height", "fps") if getattr(args, k) is not None}
    if args.lidar:
        changes["lidar"] = True
    if args.degrade:
        changes["degrade"] = True
    if getattr(args, "randomize", False):
        from .config import DomainRandomization

        changes["randomize"] = DomainRandomization.full()
    return cfg.replace(**changes)


def gt_record(frame: Any) -> dict[str, Any]:
    """One gt.jsonl line: the frame's identity, pose and every object's ground truth."""
    gt = frame.gt
    return {
        "sequence": frame.sequence,
        "index": frame.index,
        "stamp": round(frame.stamp, 6),
        "scene_cut": frame.scene_cut,
        "boxes": np.round(gt.boxes, 3).tolist(),
        "class_ids": gt.class_ids.tolist(),
        "track_ids": gt.track_ids.tolist(),
        "visibility": np.round(gt.visibility, 4).tolist(),
        "ignore": gt.ignore.tolist(),
        "amodal_boxes": np.round(gt.amodal_boxes, 3).tolist(),
        "boxes3d": np.round(gt.boxes3d, 4).tolist(),
        "world_T_cam": np.round(frame.world_T_cam, 6).tolist(),
    }


def write_sequence(cfg: SimConfig, seed: int, frames: int, out: Path, start: int = 0, depth: bool = False,
                   progress: bool = True) -> int:  # fmt: skip
    """Render and write frames; returns the number written."""
    import cv2
    from tqdm import tqdm

    from .drive import generate_sequence, get_world

    out = Path(out)
    dirs = ["rgb", "semantic", "instance"] + (["depth"] if depth else []) + (["lidar"] if cfg.lidar else [])
    for d in dirs:
        (out / d).mkdir(parents=True, exist_ok=True)
    world = get_world(seed, cfg)
    intr = world.intrinsics  # the drive's camera (randomised per drive with randomize.camera)
    camera = {"width": intr.width, "height": intr.height, "fx": intr.fx, "fy": intr.fy, "cx": intr.cx,
              "cy": intr.cy, "K": intr.K.tolist(), "seed": seed, "config": cfg.to_dict()}  # fmt: skip
    if cfg.randomize.enabled:
        camera["rig"] = {"height": world.camera.height, "pitch_deg": world.camera.pitch_deg,
                         "hfov_deg": world.camera.hfov_deg}  # fmt: skip
    (out / "camera.json").write_text(json.dumps(camera, indent=2) + "\n", encoding="utf-8")
    n = 0
    with open(out / "gt.jsonl", "w", encoding="utf-8") as f:
        for frame in tqdm(generate_sequence(seed, frames, cfg, start), total=frames, disable=not progress,
                          desc=f"sim seed {seed}", unit="frame"):  # fmt: skip
            name = f"{frame.index:06d}"
            cv2.imwrite(str(out / "rgb" / f"{name}.png"), frame.rgb[..., ::-1])
            cv2.imwrite(str(out / "semantic" / f"{name}.png"), frame.semantic)
            if frame.instance.max() > np.iinfo(np.uint16).max:
                raise SimError("track ids exceed 65535: render a shorter world (world_length_m)")
            cv2.imwrite(str(out / "instance" / f"{name}.png"), frame.instance.astype(np.uint16))
            if depth:
                np.save(out / "depth" / f"{name}.npy", frame.depth)
            if frame.lidar is not None:
                np.savez_compressed(out / "lidar" / f"{name}.npz", points=frame.lidar, labels=frame.lidar_labels,
                                    world_T_lidar=frame.world_T_lidar)  # fmt: skip
            f.write(json.dumps(gt_record(frame)) + "\n")
            n += 1
    return n


def main(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
        if getattr(args, "bag", False):
            return _write_bag(args, cfg)
        n = write_sequence(cfg, args.seed, args.frames, args.out, args.start, args.depth)
    except SimError as e:
        print(f"perception sim: {e}")
        return 2
    print(f"wrote {n} frames to {args.out}")
    return 0


def _write_bag(args: argparse.Namespace, cfg: SimConfig) -> int:
    from perception.bag import BagError

    from .drive import render_drive_bag

    try:
        counts = render_drive_bag(args.out, args.seed, args.frames, cfg, args.start, args.storage,
                                  raw=args.image in ("raw", "both"), compressed=args.image in ("compressed", "both"),
                                  compress=args.compress, progress=True)
    except BagError as e:
        print(f"perception sim: {e}")
        return 2
    print(f"wrote {args.storage} bag {args.out}: " + ", ".join(f"{t} ({n})" for t, n in counts.items()))
    return 0
