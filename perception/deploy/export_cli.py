"""`perception export`: checkpoint -> ONNX (fp32, optionally INT8 QDQ), checked and described.

    perception export --checkpoint stan_s_temporal --out exports/stan_s_temporal.onnx \\
        [--int8] [--check] [--evaluate] [--trt-build]

Writes ``OUT`` (fp32), with ``--int8`` also ``OUT-int8.onnx``, and ``OUT.export.json``: what was
exported, the torch-vs-ONNX-Runtime parity over a streamed drive, the FP32 -> INT8 accuracy change
(``--evaluate``) and the TensorRT(-RTX) build result (``--trt-build``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    from perception.core.config import input_size_arg, seed_range
    from perception.weights import checkpoint_arg

    p.add_argument("--checkpoint", required=True, type=checkpoint_arg,
                   help="checkpoint path stem or shipped name (stan_s_temporal, ...)")
    p.add_argument("--out", type=Path, required=True, help="ONNX file to write (the INT8 model goes next to it)")
    p.add_argument("--input-size", type=input_size_arg, default=None,
                   help="HxW, multiples of 32 (default: the training size)")
    p.add_argument("--max-batch", type=int, default=8, help="dynamic batch range 1..N (default 8)")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--int8", action="store_true", help="also write an INT8 QDQ model calibrated on synthetic drives")
    p.add_argument("--int8-activations", choices=("s8", "u8"), default="s8",
                   help="s8: symmetric, runs in TensorRT and ONNX Runtime (default); u8: ONNX Runtime CPU only")
    p.add_argument("--calib-seeds", type=seed_range, default=(900, 904), help="calibration drives FIRST:LAST")
    p.add_argument("--calib-frames", type=int, default=24, help="frames per calibration drive")
    p.add_argument("--calib-method", choices=("minmax", "percentile", "entropy"), default="percentile")
    p.add_argument("--calib-bag", type=Path, default=None,
                   help="calibrate on this rosbag2 bag's camera frames instead of synthetic drives")
    p.add_argument("--calib-topic", default="", help="camera topic of --calib-bag (default: its only image topic)")
    p.add_argument("--calib-images", type=Path, default=None,
                   help="calibrate on this folder of real photos instead (e.g. data/real_unlabelled; at most "
                        "4 x --calib-frames images)")
    p.add_argument("--check", action="store_true", help="torch vs ONNX Runtime parity over a streamed drive")
    p.add_argument("--evaluate", action="store_true",
                   help="mAP / mIoU of torch fp32, ONNX fp32 (and INT8) on the evaluation drives")
    p.add_argument("--eval-seeds", type=seed_range, default=(1000, 1008))
    p.add_argument("--eval-frames", type=int, default=40)
    p.add_argument("--trt-build", action="store_true",
                   help="build each model with TensorRT (or TensorRT-RTX without a GPU) to prove it compiles")
    p.add_argument("--sim-cache", default="cache/sim", help="rendered-drive cache ('' disables)")


def _parity(checkpoint: Path, onnx_path: Path, size: tuple[int, int], frames: int = 8) -> dict[str, float]:
    import torch

    from perception.deploy.export import streamed_parity
    from perception.models.checkpoint import load_checkpoint
    from perception.pipeline.perceptor import network_input
    from perception.sim.sequences import load_or_render

    model, _ = load_checkpoint(checkpoint)
    seq = load_or_render(1000, frames, {"width": size[1], "height": size[0]}, None)
    images = [torch.from_numpy(network_input(rgb, *size)[0][None]) for rgb in seq.rgb]
    return streamed_parity(model, onnx_path, images)  # type: ignore[arg-type]


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="[export] %(message)s")
    from perception.bag import BagError
    from perception.deploy.errors import DeployError
    from perception.deploy.export import ExportConfig, export_checkpoint, onnx_summary
    from perception.deploy.quantize import (
        QuantizeConfig,
        bag_calibration_drives,
        calibration_inputs,
        image_calibration_drives,
        quantize_int8,
        synthetic_calibration_drives,
    )
    from perception.footage import FootageError
    from perception.models.errors import ModelError
    from perception.runtime.base import BackendError
    from perception.weights import resolve_checkpoint

    try:
        ckpt = resolve_checkpoint(args.checkpoint)
    except FileNotFoundError as e:
        print(f"perception export: error: {e}", file=sys.stderr)
        return 2
    for source in (args.calib_images, args.calib_bag):
        if args.int8 and source and not Path(source).exists():  # before the export, not after it
            print(f"perception export: error: no calibration source at {source}", file=sys.stderr)
            return 2
    out: Path = args.out
    report: dict[str, Any] = {"checkpoint": str(ckpt), "command": "perception " + " ".join(sys.argv[1:])}
    try:
        from perception.models.checkpoint import checkpoint_input_size

        size = args.input_size or checkpoint_input_size(ckpt)
        t0 = time.perf_counter()
        info = export_checkpoint(ckpt, out, ExportConfig(input_size=size, max_batch=args.max_batch, opset=args.opset))
        report["fp32"] = {**onnx_summary(info, out), "export_s": round(time.perf_counter() - t0, 1)}
        models = {"fp32": out}
        if args.int8:
            qcfg = QuantizeConfig(calibration_seeds=args.calib_seeds, frames_per_seed=args.calib_frames,
                                  method=args.calib_method, activations=args.int8_activations,
                                  sim_cache=args.sim_cache or None)
            t0 = time.perf_counter()
            if args.calib_images:
                drives = image_calibration_drives(args.calib_images, args.calib_frames * 4)
            elif args.calib_bag:
                drives = bag_calibration_drives(args.calib_bag, args.calib_topic, args.calib_frames * 4)
            else:
                drives = synthetic_calibration_drives(qcfg, size)
            samples = calibration_inputs(out, drives)
            qpath = out.with_name(out.stem + ("-int8.onnx" if args.int8_activations == "s8" else "-int8u8.onnx"))
            qinfo = quantize_int8(out, qpath, samples, qcfg)
            report["int8"] = {**onnx_summary(qinfo, qpath), **qinfo.extra["quantization"],
                              "quantize_s": round(time.perf_counter() - t0, 1)}
            models["int8"] = qpath
        if args.check:
            report["parity_max_abs_err"] = _parity(ckpt, out, size)
            print(f"[export] torch vs onnxruntime (fp32), 8 streamed frames, state fed back: max |err| "
                  f"{max(report['parity_max_abs_err'].values()):.2e}")
        if args.trt_build:
            report["trt_build"] = _trt_build(models)
        if args.evaluate:
            report["accuracy"] = _evaluate(ckpt, models, args)
    except (DeployError, ModelError, BackendError, BagError, FootageError, OSError) as e:
        print(f"perception export: error: {e}", file=sys.stderr)
        return 1
    path = out.with_name(out.name + ".export.json")
    path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2, default=str))
    print(f"[export] wrote {', '.join(str(p) for p in models.values())} and {path}")
    return 0


def _trt_build(models: dict[str, Path]) -> dict[str, Any]:
    import tempfile

    from perception.deploy.engine import build_engine
    from perception.runtime.tensorrt_engine import EngineConfig, EngineError

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision, path in models.items():
            try:
                r = build_engine(path, EngineConfig(precision=precision, cache_dir=tmp, timing_cache=False))
                results[precision] = {"ok": True, "flavour": r.key.trt_flavour, "version": r.key.trt_version,
                                      "engine_bytes": r.paths.engine.stat().st_size, "build_s": round(r.seconds, 1)}
            except EngineError as e:
                results[precision] = {"ok": False, "error": str(e)}
            print(f"[export] TensorRT build of {path.name}: {results[precision]}")
    return results


def _evaluate(ckpt: Path, models: dict[str, Path], args: argparse.Namespace) -> dict[str, Any]:
    from perception.eval.synthetic import EvalConfig, evaluate_backend, load_eval_sequences
    from perception.runtime.onnx_backend import OnnxRuntimeBackend
    from perception.runtime.torch_backend import TorchBackend

    cfg = EvalConfig(seeds=args.eval_seeds, frames_per_sequence=args.eval_frames,
                     cache_dir=args.sim_cache or None)
    seqs = load_eval_sequences(cfg)
    from perception.models.checkpoint import checkpoint_input_size

    runs: dict[str, Any] = {"torch fp32": TorchBackend(ckpt, checkpoint_input_size(ckpt))}
    runs.update({f"onnxruntime {p}": OnnxRuntimeBackend(path) for p, path in models.items()})
    table: dict[str, Any] = {}
    for label, backend in runs.items():
        m = evaluate_backend(backend, cfg, seqs, progress=False)
        table[label] = {k: m["summary"][k] for k in ("mAP50", "mAP", "mIoU", "flicker")}
        table[label]["latency_ms_p50"] = m["latency_ms"]["p50"]
        print(f"[export] {label}: {table[label]}")
    if "onnxruntime int8" in table:
        a, b = table["onnxruntime fp32"], table["onnxruntime int8"]
        table["int8 - fp32"] = {k: b[k] - a[k] for k in ("mAP50", "mAP", "mIoU")}
    table["eval"] = {"seeds": list(cfg.seeds), "frames_per_drive": cfg.frames_per_sequence,
                     "size": [cfg.height, cfg.width]}
    return table
