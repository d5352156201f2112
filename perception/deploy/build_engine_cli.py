"""`perception build-engine`: prebuild the TensorRT engine of an exported model for deployment.

    perception build-engine --onnx exports/stan_s_temporal.onnx --precision fp16 [--max-batch 4]

Engines land in the cache (``--cache-dir``, default ``$PERCEPTION_CACHE/engines``) under a name
keyed by the ONNX hash, TensorRT version, GPU and shapes, so the node finds and reuses them and
refuses stale ones. ``--out`` also copies the engine (+ sidecar) to a path of your choice.
Without a GPU, TensorRT-RTX builds the engine (a real parse + build: proves the graph compiles).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--onnx", type=Path, required=True, help="model written by `perception export`")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16",
                   help="fp16 (default), fp32, or int8 (needs the QDQ model from `perception export --int8`)")
    p.add_argument("--opt-batch", type=int, default=1, help="batch size TensorRT tunes for")
    p.add_argument("--max-batch", type=int, default=0, help="largest batch (0: the model's exported maximum)")
    p.add_argument("--workspace-mb", type=int, default=2048)
    p.add_argument("--opt-level", type=int, default=3, choices=range(6), help="builder optimisation level")
    p.add_argument("--cache-dir", default="", help="engine cache (default $PERCEPTION_CACHE/engines)")
    p.add_argument("--out", type=Path, default=None, help="also copy the engine (and its .json sidecar) here")
    p.add_argument("--force", action="store_true", help="rebuild even if the cache holds a matching engine")
    p.add_argument("--device-id", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    from perception.deploy.engine import build_engine
    from perception.runtime.base import BackendError
    from perception.runtime.tensorrt_engine import EngineConfig, EnginePaths

    try:
        cfg = EngineConfig(precision=args.precision, opt_batch=args.opt_batch, max_batch=args.max_batch,
                           workspace_mb=args.workspace_mb, optimization_level=args.opt_level,
                           cache_dir=args.cache_dir)
        result = build_engine(args.onnx, cfg, force=args.force, device_id=args.device_id,
                              progress=lambda m: print(f"[build-engine] {m}", flush=True))
    except BackendError as e:
        print(f"perception build-engine: error: {e}", file=sys.stderr)
        return 1
    paths = result.paths
    if args.out is not None:
        dest = EnginePaths.for_engine(args.out)
        dest.engine.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(paths.engine, dest.engine)
        shutil.copyfile(paths.sidecar, dest.sidecar)
        paths = dest
    summary = {"engine": str(paths.engine), "sidecar": str(paths.sidecar), "built": result.built,
               "seconds": round(result.seconds, 2), "bytes": paths.engine.stat().st_size,
               "key": json.loads(json.dumps(result.key.__dict__, default=list))}
    print(json.dumps(summary, indent=2))
    if not result.built:
        print("[build-engine] reused the cached engine (same ONNX, TensorRT, GPU, precision and shapes); "
              "--force rebuilds", flush=True)
    return 0
