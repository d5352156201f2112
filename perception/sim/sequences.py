"""Rendered drives held in arrays and cached on disk: what training, evaluation, calibration and the
benchmarks read.

A sequence is rendered once per (sim config, seed, frame count) and stored as one ``.npz`` under
the cache directory; later runs load it back (memory-mapped reads are fast).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perception.core.types import CameraIntrinsics, Frame, GroundTruth


@dataclass(frozen=True)
class Sequence:
    """A rendered drive held in arrays (T frames)."""

    seed: int
    rgb: np.ndarray  # (T, H, W, 3) uint8
    semantic: np.ndarray  # (T, H, W) uint8
    instance: np.ndarray  # (T, H, W) uint16 track ids
    stamps: np.ndarray  # (T,) float64
    gt: tuple[GroundTruth, ...]
    intrinsics: CameraIntrinsics

    def __len__(self) -> int:
        return len(self.rgb)

    def frame(self, t: int) -> Frame:
        return Frame(
            sequence=self.seed, index=t, stamp=float(self.stamps[t]), rgb=self.rgb[t], intrinsics=self.intrinsics,
            gt=self.gt[t], semantic=self.semantic[t], instance=self.instance[t].astype(np.int32), scene_cut=t == 0,
        )

    def frames(self) -> Iterator[Frame]:
        return (self.frame(t) for t in range(len(self)))


def _gt_to_arrays(gts: Iterable[GroundTruth]) -> dict[str, np.ndarray]:
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("frame", "boxes", "class_ids", "track_ids", "visibility",
                                                         "ignore", "amodal_boxes", "boxes3d")}
    for t, g in enumerate(gts):
        rows["frame"].append(np.full(len(g), t, dtype=np.int32))
        for k in ("boxes", "class_ids", "track_ids", "visibility", "ignore", "amodal_boxes", "boxes3d"):
            rows[k].append(np.asarray(getattr(g, k)))
    return {f"gt_{k}": np.concatenate(v) if v else np.zeros((0,)) for k, v in rows.items()}


def _gt_from_arrays(data: Any, num_frames: int) -> tuple[GroundTruth, ...]:
    frame = data["gt_frame"]
    out = []
    for t in range(num_frames):
        m = frame == t
        out.append(GroundTruth(
            boxes=data["gt_boxes"][m].astype(np.float32).reshape(-1, 4),
            class_ids=data["gt_class_ids"][m].astype(np.int64),
            track_ids=data["gt_track_ids"][m].astype(np.int64),
            visibility=data["gt_visibility"][m].astype(np.float32),
            amodal_boxes=data["gt_amodal_boxes"][m].astype(np.float32).reshape(-1, 4),
            boxes3d=data["gt_boxes3d"][m].astype(np.float32).reshape(-1, 7),
            ignore=data["gt_ignore"][m].astype(bool),
        ))
    return tuple(out)


def sequence_key(sim_config: dict[str, Any], seed: int, num_frames: int) -> str:
    blob = json.dumps({"sim": sim_config, "seed": seed, "frames": num_frames, "v": 1}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def render_sequence(seed: int, num_frames: int, sim_config: dict[str, Any] | None = None) -> Sequence:
    from perception.sim.config import SimConfig
    from perception.sim.drive import generate_sequence

    cfg = SimConfig.from_dict(sim_config or {})
    frames = list(generate_sequence(seed, num_frames, cfg))
    return Sequence(
        seed=seed,
        rgb=np.stack([f.rgb for f in frames]),
        semantic=np.stack([_require(f.semantic, "semantic") for f in frames]),
        instance=np.stack([_require(f.instance, "instance") for f in frames]).astype(np.uint16),
        stamps=np.array([f.stamp for f in frames], dtype=np.float64),
        gt=tuple(f.gt for f in frames),
        intrinsics=frames[0].intrinsics,
    )


def _require(a: np.ndarray | None, what: str) -> np.ndarray:
    if a is None:
        raise ValueError(f"synthetic frame has no {what} mask")
    return a


def load_or_render(
    seed: int, num_frames: int, sim_config: dict[str, Any] | None = None, cache_dir: str | Path | None = None
) -> Sequence:
    """The rendered sequence, from ``cache_dir`` when present (rendering and storing it otherwise)."""
    sim_config = sim_config or {}
    if cache_dir is None:
        return render_sequence(seed, num_frames, sim_config)
    path = Path(cache_dir) / f"seq_{seed}_{num_frames}_{sequence_key(sim_config, seed, num_frames)}.npz"
    if path.exists():
        try:
            with np.load(path) as data:
                k = data["intrinsics"]
                return Sequence(
                    seed=seed, rgb=data["rgb"], semantic=data["semantic"], instance=data["instance"],
                    stamps=data["stamps"], gt=_gt_from_arrays(data, len(data["rgb"])),
                    intrinsics=CameraIntrinsics(int(k[0]), int(k[1]), *map(float, k[2:])),
                )
        except (OSError, KeyError, ValueError):
            path.unlink(missing_ok=True)  # a half-written cache entry: render it again
    seq = render_sequence(seed, num_frames, sim_config)
    path.parent.mkdir(parents=True, exist_ok=True)
    k = seq.intrinsics
    tmp = path.with_suffix(".tmp.npz")
    arrays: dict[str, Any] = {
        "rgb": seq.rgb, "semantic": seq.semantic, "instance": seq.instance, "stamps": seq.stamps,
        "intrinsics": np.array([k.width, k.height, k.fx, k.fy, k.cx, k.cy]), **_gt_to_arrays(seq.gt),
    }
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return seq
