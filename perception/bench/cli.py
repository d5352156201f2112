"""`perception bench <what>`: benchmarks that report ratios measured side by side in one run."""

from __future__ import annotations

import argparse
import importlib

# benchmark -> (module with add_arguments(parser) and run(args) -> int, help)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "model": ("perception.bench.model", "network latency: attention overhead, temporal vs spatial, precisions"),
    "sim": ("perception.bench.sim", "synthetic world rendering frames/s (camera, LiDAR) with a breakdown"),
    "fusion": ("perception.bench.fusion", "LiDAR-camera fusion per stage (ms per 57k-point scan), 3D errors by range"),
    "pipeline": ("perception.bench.pipeline", "Perceptor per stage (pre/infer/post) at 640x384, 1280x720, 1920x1080; "
                 "total/infer, 4 cameras batched vs unbatched"),
    "attention": ("perception.bench.attention", "attention-guided refinement at 1280x720: full-res vs low-res vs "
                  "low-res + attention crops vs uniform tiles (small/medium/large AP, mIoU, latency, FLOPs)"),
    "runtime": ("perception.bench.runtime", "backends side by side (torch, onnxruntime fp32/INT8, tensorrt)"),
    "ros": ("perception.ros.tools.bench",
            "ROS 2 end-to-end latency vs model only (1280x720), message conversion throughput"),
    "throughput": ("perception.ros.tools.bench_throughput",
                   "bag replay (ros2_benchmark method): peak rate, 30 Hz latency, 4 cameras batched, bag read GB/s"),
    "fuzz": ("perception.ros.tools.bench_fuzz", "malformed Image/CompressedImage/CameraInfo into running nodes: alive, "
             "valid frames answered, malformed ones counted"),
    "soak": ("perception.ros.tools.bench_soak", "N cameras for M minutes: RSS growth, crashes, answered share, drops, "
             "diagnostics levels"),
    "recorder": ("perception.ros.tools.bench_recorder", "incident recorder under 4 cameras x 30 Hz JPEG + outputs: "
                 "three triggers, each snapshot's window and gaps, RSS vs budget, CPU share of a core, kill -9"),
    "fleet": ("perception.fleet.bench", "many bags: bags/s with 1 and 2 workers (process pool, Dask), start-up, "
              "per-bag overhead vs a plain loop, result size per bag"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    sub.required = True
    for name, (module, help_text) in BENCHMARKS.items():
        bp = sub.add_parser(name, help=help_text, description=help_text)
        bp.set_defaults(_bench_module=module)
        importlib.import_module(module).add_arguments(bp)


def main(args: argparse.Namespace) -> int:
    return int(importlib.import_module(args._bench_module).run(args))
