"""`perception demo`: the main job on built-in data, or on your footage.

Renders a short synthetic drive the networks never saw, runs the shipped spatio-temporal network
through the same Perceptor the ROS node uses, and writes to ``--out``:
``overlay.mp4`` and ``overlay.gif`` (detections | segmentation | attention, side by side),
``frame_XXXX.png`` stills, ``metrics.json`` / ``report.md`` / plots, and ``summary.json``.
With ``--video FILE`` or ``--images DIR`` it runs on real footage instead and writes the same
overlay video, GIF and stills (no ground truth, so no metrics) and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, cast

import numpy as np

from perception.core.classes import DETECTION_NAMES
from perception.core.config import ConfigError, crops_arg, frame_count
from perception.weights import checkpoint_arg


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("demo_out"))
    p.add_argument("--checkpoint", default=None, type=checkpoint_arg,
                   help="shipped checkpoint name or a checkpoint path (default: stan_s_temporal, the network trained "
                        "for the synthetic world; with --ros the node's default, model.name)")
    p.add_argument("--seed", type=int, default=2024, help="drive seed (training used seeds < 1000)")
    footage = p.add_mutually_exclusive_group()
    footage.add_argument("--video", type=Path, default=None, help="run on this video file instead of a synthetic drive")
    footage.add_argument("--images", type=Path, default=None, help="run on this folder of images (sorted by name)")
    p.add_argument("--fps", type=float, default=None, help="with --images: frame rate (default 10)")
    p.add_argument("--frames", default=None,
                   help="synthetic: number of frames (default 60); --video/--images: which frames, FIRST:LAST "
                        "(LAST exclusive, e.g. 600:795), FIRST: or a count N (default: all)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=384)
    p.add_argument("--stills", type=int, default=4, help="number of PNG stills")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="auto: bf16 where the CPU computes it natively (AVX512-bf16/AMX), else fp32")
    p.add_argument("--refine", type=crops_arg, default=None, metavar="K",
                   help="attention-guided refinement with up to K native-resolution crops per frame (drawn in cyan "
                        "on the attention panel; needs frames larger than the network input, e.g. --width 1280 "
                        "--height 720); 0: off; default: the node's (on, 2 crops)")
    p.add_argument("--ros", action="store_true",
                   help="run it over ROS 2: synthetic_camera and perception_node as processes on loopback DDS, "
                        "recorded to an MCAP bag (perception.ros.tools.demo)")


def panel(rgb: np.ndarray, result: Any, gt: Any = None) -> np.ndarray:
    """detections (with ground truth as thin white boxes, if given) | segmentation | attention."""
    from perception.core.viz import colorize_semantic, draw_detections, overlay_heatmap, side_by_side

    det = draw_detections(rgb, result.detections, gt=gt)
    seg = colorize_semantic(result.segmentation)
    seg = (0.55 * seg + 0.45 * rgb).astype(np.uint8)
    att = overlay_heatmap(rgb, result.attention)
    info = getattr(result, "refinement", None)
    if info is not None:
        from perception.pipeline.refine import draw_regions

        att = draw_regions(att, info.regions)
    return side_by_side([det, seg, att], ["detections (GT white)" if gt is not None else "detections",
                                          "segmentation", "attention"])


class OverlayWriter:
    """``overlay.mp4`` written panel by panel (nothing kept in memory), ``overlay.gif`` from at most
    ``gif_frames`` panels downscaled to at most ``gif_width`` pixels, and ``frame_XXXX.png`` stills of
    the frame numbers in ``stills``."""

    def __init__(self, out: Path, fps: float, total: int, stills: set[int], gif_width: int = 960,
                 gif_frames: int = 100) -> None:
        self.out, self.fps, self.stills = out, fps, stills
        self.gif_every = max(1, -(-total // gif_frames))
        self.gif_width = gif_width
        self.gif: list[np.ndarray] = []
        self.count = 0
        self._writer: Any = None

    def add(self, index: int, rgb_panel: np.ndarray) -> None:
        import cv2

        h, w = rgb_panel.shape[:2]
        bgr = cv2.cvtColor(rgb_panel, cv2.COLOR_RGB2BGR)
        if self._writer is None:
            self._writer = cv2.VideoWriter(str(self.out / "overlay.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), self.fps,
                                           (w, h))
        self._writer.write(bgr)
        if self.count % self.gif_every == 0:
            scale = min(0.5, self.gif_width / w)
            self.gif.append(cv2.resize(rgb_panel, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA))
        if index in self.stills:
            cv2.imwrite(str(self.out / f"frame_{index:04d}.png"), bgr)
        self.count += 1

    def close(self) -> None:
        import imageio.v2 as imageio

        if self._writer is not None:
            self._writer.release()
        if self.gif:
            imageio.mimsave(self.out / "overlay.gif", cast(list[Any], self.gif), duration=self.gif_every / self.fps,
                            loop=0)


def _perceptor(backend: Any, refine: int | None, score_thresh: float) -> Any:
    """The refining Perceptor taking up to ``refine`` crops a frame (None: the node's default refinement), or with
    ``refine`` 0 the one-pass Perceptor. No deadline: a recorded drive is processed frame by frame."""
    from dataclasses import replace

    from perception.pipeline.perceptor import Perceptor, PerceptorConfig
    from perception.pipeline.refine import NODE_REFINE, RefiningPerceptor

    cfg = replace(NODE_REFINE, deadline_ms=0.0, max_regions=NODE_REFINE.max_regions if refine is None else refine)
    if refine == 0 or not cfg.enabled:
        return Perceptor(backend, PerceptorConfig(score_thresh=score_thresh))
    return RefiningPerceptor(backend, PerceptorConfig(score_thresh=score_thresh), cfg)


def _stills(first: int, last: int, n: int) -> set[int]:
    return set(np.linspace(first, last, num=max(1, n)).astype(int).tolist())


def footage_demo(args: argparse.Namespace, ckpt: Path) -> int:
    """The shipped network on real footage: overlay video + stills, no metrics (no ground truth)."""
    from perception.footage import FootageError
    from perception.footage.source import Footage
    from perception.models.checkpoint import checkpoint_input_size
    from perception.pipeline.perceptor import FrameInput
    from perception.runtime.torch_backend import TorchBackend, TorchBackendConfig

    out: Path = args.out
    try:
        footage = Footage(args.video or args.images, args.frames, fps=args.fps)
    except FootageError as e:
        print(f"perception demo: error: {e}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    backend = TorchBackend(ckpt, checkpoint_input_size(ckpt), TorchBackendConfig(precision=args.precision))
    writer = OverlayWriter(out, footage.info.fps, len(footage), _stills(footage.start, footage.stop - 1, args.stills))
    latency: list[float] = []
    counts = np.zeros(len(DETECTION_NAMES), np.int64)
    t0 = time.perf_counter()
    with backend:
        perceptor = _perceptor(backend, args.refine, 0.35)
        name = backend.meta.get("name", ckpt)
        print(f"[demo] running {name} ({backend.name}, {backend.precision}) on {footage.info.path} frames "
              f"{footage.range} ({len(footage)} frames, {footage.info.width}x{footage.info.height})")
        try:
            for frame in footage:
                r = perceptor.process(FrameInput("footage", frame.rgb, frame.stamp, scene_cut=frame.scene_cut))
                latency.append(r.total_ms)
                counts += np.bincount(r.detections.class_ids, minlength=len(counts))[: len(counts)]
                writer.add(frame.index, panel(frame.rgb, r))
        except FootageError as e:
            print(f"perception demo: error: {e}", file=sys.stderr)
            return 2
        finally:
            writer.close()
    total = time.perf_counter() - t0
    summary = {
        "checkpoint": str(ckpt), "model": name, "source": footage.info.path, "kind": footage.info.kind,
        "range": str(footage.range), "frames": len(footage), "size": [footage.info.height, footage.info.width],
        "total_s": total, "perception_fps": len(footage) / max(total, 1e-9),
        "latency_ms": {"p50": float(np.percentile(latency, 50)), "p95": float(np.percentile(latency, 95)),
                       "frames": len(latency)},
        "detections_per_frame": {n: float(c) / len(footage) for n, c in zip(DETECTION_NAMES, counts)},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))
    print(f"[demo] wrote {out}/overlay.mp4, overlay.gif, frame_*.png, summary.json in {total:.1f} s")
    return 0


def main(args: argparse.Namespace) -> int:
    footage = args.video is not None or args.images is not None
    if not footage:
        try:
            args.frames = frame_count(args.frames, 60)
        except ConfigError as e:
            print(f"perception demo: error: {e}", file=sys.stderr)
            return 2
    if getattr(args, "ros", False):
        if footage:
            print("perception demo: error: --ros runs the synthetic camera node; use --video/--images without --ros",
                  file=sys.stderr)
            return 2
        from perception.ros.tools.demo import main as ros_main

        return ros_main(args)

    from perception.eval.report import write_eval_report
    from perception.eval.synthetic import evaluate_perceptor, run_sequence
    from perception.runtime.torch_backend import TorchBackend, TorchBackendConfig
    from perception.sim.sequences import render_sequence
    from perception.weights import resolve_checkpoint

    out: Path = args.out
    try:
        ckpt = resolve_checkpoint(args.checkpoint or "stan_s_temporal")
    except FileNotFoundError as e:
        print(f"perception demo: error: {e}", file=sys.stderr)
        return 2
    if footage:
        return footage_demo(args, ckpt)
    from perception.models.checkpoint import checkpoint_input_size

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(f"[demo] rendering {args.frames} frames of drive seed {args.seed} at {args.width}x{args.height}")
    seq = render_sequence(args.seed, args.frames, {"width": args.width, "height": args.height})
    t_render = time.perf_counter() - t0

    backend = TorchBackend(ckpt, checkpoint_input_size(ckpt), TorchBackendConfig(precision=args.precision))
    writer = OverlayWriter(out, 10.0, args.frames, _stills(0, args.frames - 1, args.stills))
    with backend:
        perceptor = _perceptor(backend, args.refine, 0.35)
        print(f"[demo] running {backend.meta.get('name', ckpt)} ({backend.name}, {backend.precision})")
        try:
            run_sequence(perceptor, seq, on_result=lambda t, r: writer.add(t, panel(seq.rgb[t], r, seq.gt[t])))
        finally:
            writer.close()
        t_infer = time.perf_counter() - t0 - t_render
        print("[demo] evaluating against ground truth")
        eval_perceptor = _perceptor(backend, args.refine, 0.05)
        metrics = evaluate_perceptor(eval_perceptor, [seq], progress=False)

    write_eval_report(metrics, out, title=f"Demo drive {args.seed}: {backend.meta.get('name', ckpt)}")

    total = time.perf_counter() - t0
    summary = {
        "checkpoint": str(ckpt), "seed": args.seed, "frames": args.frames, "size": [args.height, args.width],
        "render_s": t_render, "perception_s": t_infer, "total_s": total,
        "perception_fps": args.frames / max(t_infer, 1e-9),
        "latency_ms": metrics.get("latency_ms"),
        **metrics["summary"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2, default=float))
    print(f"[demo] wrote {out}/overlay.mp4, overlay.gif, frame_*.png, report.md in {total:.1f} s")
    return 0
