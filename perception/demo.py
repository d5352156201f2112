"""`perception demo`: the main job on built-in data.

Renders a short synthetic drive the networks never saw, runs the shipped spatio-temporal network
through the same Perceptor the ROS node uses, and writes to ``--out``:
``overlay.mp4`` and ``overlay.gif`` (detections | segmentation | attention, side by side),
``frame_XXXX.png`` stills, ``metrics.json`` / ``report.md`` / plots, and ``summary.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, cast

import numpy as np


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("demo_out"))
    p.add_argument("--checkpoint", default="stan_s_temporal",
                   help="shipped checkpoint name or a checkpoint path (default: stan_s_temporal)")
    p.add_argument("--seed", type=int, default=2024, help="drive seed (training used seeds < 1000)")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=384)
    p.add_argument("--stills", type=int, default=4, help="number of PNG stills")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--ros", action="store_true",
                   help="run it over ROS 2: synthetic_camera and perception_node as processes on loopback DDS, "
                        "recorded to an MCAP bag (perception.ros.demo)")


def panel(rgb: np.ndarray, result: Any, gt: Any) -> np.ndarray:
    from perception.core.viz import colorize_semantic, draw_detections, overlay_heatmap, side_by_side

    det = draw_detections(rgb, result.detections, gt=gt)
    seg = colorize_semantic(result.segmentation)
    seg = (0.55 * seg + 0.45 * rgb).astype(np.uint8)
    att = overlay_heatmap(rgb, result.attention)
    return side_by_side([det, seg, att], ["detections (GT dashed)", "segmentation", "attention"])


def main(args: argparse.Namespace) -> int:
    if getattr(args, "ros", False):
        from perception.ros.demo import main as ros_main

        return ros_main(args)
    import cv2
    import imageio.v2 as imageio

    from perception.models.checkpoint import checkpoint_input_size
    from perception.pipeline.perceptor import Perceptor, PerceptorConfig
    from perception.runtime.torch_backend import TorchBackend, TorchBackendConfig
    from perception.train.evaluate import evaluate_perceptor, run_sequence
    from perception.train.report import write_eval_report
    from perception.train.synthetic import render_sequence
    from perception.weights import resolve_checkpoint

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    try:
        ckpt = resolve_checkpoint(args.checkpoint)
    except FileNotFoundError as e:
        print(f"perception demo: error: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    print(f"[demo] rendering {args.frames} frames of drive seed {args.seed} at {args.width}x{args.height}")
    seq = render_sequence(args.seed, args.frames, {"width": args.width, "height": args.height})
    t_render = time.perf_counter() - t0

    backend = TorchBackend(ckpt, checkpoint_input_size(ckpt), TorchBackendConfig(precision=args.precision))
    with backend:
        perceptor = Perceptor(backend, PerceptorConfig(score_thresh=0.35))
        print(f"[demo] running {backend.meta.get('name', ckpt)} ({backend.name}, {args.precision})")
        panels: list[np.ndarray] = []
        run_sequence(perceptor, seq, on_result=lambda t, r: panels.append(panel(seq.rgb[t], r, seq.gt[t])))
        t_infer = time.perf_counter() - t0 - t_render
        print("[demo] evaluating against ground truth")
        eval_perceptor = Perceptor(backend, PerceptorConfig(score_thresh=0.05))
        metrics = evaluate_perceptor(eval_perceptor, [seq], progress=False)

    h, w = panels[0].shape[:2]
    writer = cv2.VideoWriter(str(out / "overlay.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (w, h))
    for p in panels:
        writer.write(cv2.cvtColor(p, cv2.COLOR_RGB2BGR))
    writer.release()
    small = [cv2.resize(p, (w // 2, h // 2), interpolation=cv2.INTER_AREA) for p in panels]
    imageio.mimsave(out / "overlay.gif", cast(list[Any], small), duration=0.1, loop=0)
    for i in np.linspace(0, len(panels) - 1, num=max(1, args.stills)).astype(int):
        cv2.imwrite(str(out / f"frame_{i:04d}.png"), cv2.cvtColor(panels[i], cv2.COLOR_RGB2BGR))
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
