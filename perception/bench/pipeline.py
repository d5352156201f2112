"""`perception bench pipeline`: where a frame's time goes in ``Perceptor`` (pre-, post-processing vs the network).

For each input size (default 640x384, 1280x720, 1920x1080) and backend the shipped network runs on
frames of the golden drive (scaled to the size), streamed with its temporal state, and reports per stage
(medians over ``--frames`` frames). Backends (``--backends``, comma-separated): ``onnxruntime`` (default),
``torch`` (CPU), ``torch-device`` (CPU, pre/post-processing as torch ops: ``PerceptorConfig.device_prepost``),
``torch-cuda`` (pre/post on the GPU) and ``torch-cuda-host`` (the same network, pre/post in numpy).

- preprocess: ``letterbox`` (resize into the network input), ``normalise`` (uint8 HWC -> float CHW),
  ``signature`` (the scene-cut thumbnail, ``core.temporal``);
- ``infer``: the backend call;
- postprocess: ``decode`` (boxes, NMS), ``seg`` / ``attention`` (the maps the result carries),
  ``scores`` (per-object attention); with pre/post on the device, ``device`` (peaks and low-resolution
  maps on the device, the frame's share) and ``decode`` (boxes, NMS, per-object attention on the host);
- ``fullres``: what a consumer pays on top to get segmentation AND attention at input resolution
  (``PerceptionResult.segmentation`` / ``.attention``; computed on first access);
- ``total / infer`` (without ``fullres``) and ``total+fullres / infer``.

4 cameras: ``process_batch`` of one frame per camera vs the same frames one ``process`` call each,
interleaved, as images/s and their ratio (``batched / unbatched``).

Rows of the same backend run in one process side by side; absolute times on a shared machine are
noisy, ratios less so. The command line printed under the table reproduces the run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.bench.report import Report
from perception.core.config import count_arg, warmup_arg
from perception.weights import checkpoint_arg

DEFAULT_SIZES = ((640, 384), (1280, 720), (1920, 1080))  # (W, H) camera images
GOLDEN_DRIVE = Path(__file__).resolve().parents[2] / "test" / "data" / "golden" / "drive"
PRE = ("letterbox", "normalise", "signature")
POST = ("decode", "seg", "attention", "scores", "device")


@dataclass(frozen=True)
class PipelineBenchConfig:
    checkpoint: str = "stan_s_temporal"
    backends: tuple[str, ...] = ("onnxruntime",)
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
    cameras: int = 4
    frames: int = 20
    warmup: int = 3
    threads: int = 2
    bag: str = str(GOLDEN_DRIVE)
    cache_dir: str = "cache/runtime"
    out: str = "bench_out"


def _size_wh(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"size must be WxH (e.g. 1280x720), not {text!r}") from e
    if w < 8 or h < 8:
        raise argparse.ArgumentTypeError(f"size {text!r} is too small (at least 8x8)")
    return w, h


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = PipelineBenchConfig()
    p.add_argument("--checkpoint", default=d.checkpoint, type=checkpoint_arg,
                   help="checkpoint path or shipped name (default %(default)s)")
    p.add_argument("--backends", default=",".join(d.backends),
                   help=f"comma-separated, of {', '.join(BACKENDS)} (default %(default)s)")
    p.add_argument("--sizes", nargs="+", type=_size_wh, default=list(d.sizes), metavar="WxH",
                   help="camera image sizes (default 640x384 1280x720 1920x1080)")
    p.add_argument("--cameras", type=count_arg, default=d.cameras,
                   help="cameras of the batched rows (default %(default)s)")
    p.add_argument("--frames", type=count_arg, default=d.frames,
                   help="timed frames (batches) per row (default %(default)s)")
    p.add_argument("--warmup", type=warmup_arg, default=d.warmup)
    p.add_argument("--threads", type=int, default=d.threads, help="CPU threads of the backend (default %(default)s)")
    p.add_argument("--bag", default=d.bag, help="frames come from this bag (default: the golden drive)")
    p.add_argument("--cache-dir", default=d.cache_dir, help="exported ONNX models (made once)")
    p.add_argument("--out", default=d.out)


def _frames(bag: str, n: int) -> tuple[list[np.ndarray], str]:
    """Source frames and where they came from: the bag's images, or drawn road-like scenes when the bag
    (or a bag reader) is not there."""
    if Path(bag).exists():
        try:
            from perception.bag.io import rgb_frames

            frames = list(rgb_frames(bag, max_frames=n))
        except ImportError:  # no bag reader (e.g. a GPU machine without rosbags): drawn scenes
            frames = []
        if frames:
            return frames, bag
    rng = np.random.default_rng(0)
    out = []
    for k in range(max(n, 1)):
        img = np.zeros((192, 320, 3), np.uint8)
        img[:96] = (120, 160, 220)
        img[96:] = (90, 90, 90)
        for _ in range(6):
            x, y = int(rng.integers(0, 280)), int(rng.integers(80, 160)) + k
            cv2.rectangle(img, (x, y), (x + 30, min(191, y + 24)), tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
        out.append(img)
    return out, "drawn scenes"


BACKENDS = {  # name -> (runtime, torch device, PerceptorConfig.device_prepost)
    "onnxruntime": ("onnxruntime", "cpu", "off"),
    "torch": ("torch", "cpu", "off"),
    "torch-device": ("torch", "cpu", "on"),
    "torch-cuda": ("torch", "cuda", "on"),
    "torch-cuda-host": ("torch", "cuda", "off"),
}


def _backend(name: str, cfg: PipelineBenchConfig, ckpt: Path, size: tuple[int, int]) -> Any:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: use {', '.join(BACKENDS)}")
    runtime, device, _ = BACKENDS[name]
    if runtime == "onnxruntime":
        from perception.deploy.ondemand import cached_export
        from perception.runtime.onnx_backend import OnnxRuntimeBackend, OnnxRuntimeConfig

        onnx = cached_export(ckpt, size, max(cfg.cameras, 1), Path(cfg.cache_dir) / "onnx")
        return OnnxRuntimeBackend(onnx, OnnxRuntimeConfig(providers=("cpu",), threads=cfg.threads))
    from perception.runtime.torch_backend import TorchBackend, TorchBackendConfig

    return TorchBackend(ckpt, size, TorchBackendConfig(device=device, threads=cfg.threads))


def _stage_medians(timings: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for t in timings for k in t}
    return {k: statistics.median(t.get(k, 0.0) for t in timings) for k in keys}


def _single_row(perceptor: Any, images: list[np.ndarray], cfg: PipelineBenchConfig) -> dict[str, float]:
    from perception.pipeline.perceptor import FrameInput

    timings: list[dict[str, float]] = []
    fullres: list[float] = []
    for k in range(cfg.warmup + cfg.frames):
        r = perceptor.process(FrameInput("cam0", images[k % len(images)], 0.1 * k))
        t0 = time.perf_counter()
        seg, att = r.segmentation, r.attention  # full-resolution maps (lazy after the zero-waste change)
        t1 = time.perf_counter()
        assert seg is not None and att is not None
        if k >= cfg.warmup:
            timings.append(dict(r.timings_ms))
            fullres.append(1e3 * (t1 - t0))
    med = _stage_medians(timings)
    med["fullres"] = statistics.median(fullres)
    return med


def _images_per_s(perceptor_batched: Any, perceptor_single: Any, images: list[np.ndarray],
                  cfg: PipelineBenchConfig) -> tuple[float, float, float, float]:
    """4 cameras, batched (one process_batch) vs unbatched (one process per frame), interleaved per round:
    (batched images/s, unbatched images/s, median of the per-round speed-ups, median of the per-round
    speed-ups of the backend call alone -- what batching gains inside the network, the ceiling for the rest)."""
    from perception.pipeline.perceptor import FrameInput

    cams = [f"cam{c}" for c in range(cfg.cameras)]

    def batch(k: int) -> list[FrameInput]:
        return [FrameInput(c, images[(k + j) % len(images)], 0.1 * k) for j, c in enumerate(cams)]

    tb: list[float] = []
    tu: list[float] = []
    gain: list[float] = []
    for k in range(cfg.warmup + cfg.frames):
        frames = batch(k)
        t0 = time.perf_counter()
        rb = perceptor_batched.process_batch(frames)
        t1 = time.perf_counter()
        ru = [perceptor_single.process(f) for f in frames]
        t2 = time.perf_counter()
        if k >= cfg.warmup:
            tb.append(t1 - t0)
            tu.append(t2 - t1)
            gain.append(sum(r.timings_ms["infer"] for r in ru) / rb[0].timings_ms["infer"])
    n = len(cams)
    paired = statistics.median(u / b for u, b in zip(tu, tb, strict=True))
    return n / statistics.median(tb), n / statistics.median(tu), paired, statistics.median(gain)


def run_benchmark(cfg: PipelineBenchConfig) -> Report:
    import torch

    from perception.models.checkpoint import checkpoint_input_size
    from perception.pipeline.perceptor import Perceptor, PerceptorConfig
    from perception.weights import resolve_checkpoint

    torch.set_num_threads(cfg.threads)
    ckpt = resolve_checkpoint(cfg.checkpoint)
    net = checkpoint_input_size(ckpt)
    report = Report(f"Perceptor stages: {ckpt.name}, network input {net[0]}x{net[1]}, {cfg.threads} threads")
    source, origin = _frames(cfg.bag, 12)
    for name in cfg.backends:
        backend = _backend(name, cfg, ckpt, net)
        backend.load()
        pcfg = PerceptorConfig(device_prepost=BACKENDS[name][2])
        try:
            for w, h in cfg.sizes:
                images = [np.ascontiguousarray(cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR))
                          for f in source]
                med = _single_row(Perceptor(backend, pcfg), images, cfg)
                pre = med.get("preprocess", float("nan"))
                post = med.get("postprocess", float("nan"))
                infer = med["infer"]
                row: dict[str, Any] = {"name": f"{name} {w}x{h}", "infer_ms": infer, "pre_ms": pre}
                row.update({f"pre.{k}": med.get(f"preprocess.{k}", float("nan")) for k in PRE})
                row["post_ms"] = post
                row.update({f"post.{k}": med.get(f"postprocess.{k}", float("nan")) for k in POST})
                row["fullres_ms"] = med["fullres"]
                row["total/infer"] = (pre + infer + post) / infer
                row["total+fullres/infer"] = (pre + infer + post + med["fullres"]) / infer
                if cfg.cameras > 1:
                    b, u, paired, gain = _images_per_s(Perceptor(backend, pcfg), Perceptor(backend, pcfg), images,
                                                       cfg)
                    row[f"{cfg.cameras}cam_batched_img/s"] = b
                    row[f"{cfg.cameras}cam_unbatched_img/s"] = u
                    row["batched/unbatched"] = paired
                    row["infer_only_batched/unbatched"] = gain
                report.rows.append(row)
        finally:
            backend.close()
    _goals(report, cfg)
    report.notes += [
        "ms are medians per frame over the timed frames (Perceptor.timings_ms); a batch's pre-processing is "
        "shared out equally among its frames; `-`: the stage is not timed separately",
        "fullres_ms: reading PerceptionResult.segmentation and .attention (input resolution) once more after "
        "process(); total/infer leaves it out (consumers of the low-resolution maps never pay it)",
        f"{cfg.cameras}cam: process_batch of {cfg.cameras} cameras vs {cfg.cameras} process() calls, interleaved "
        "per round; images/s of the medians; batched/unbatched: median of the per-round speed-ups; "
        "infer_only_batched/unbatched: the same for the backend call alone (what batching gains in the network: "
        "the ceiling for the whole frame path)",
        f"frames: {origin} scaled to each size; "
        f"{cfg.frames} timed frames after {cfg.warmup} warm-up",
    ]
    return report


def _goals(report: Report, cfg: PipelineBenchConfig) -> None:
    for r in report.rows:
        if r["name"] == "torch-cuda 1280x720":
            report.add_goal("torch-cuda 1280x720 total / infer", r["total/infer"], "<= 1.1", r["total/infer"] <= 1.1)
        if r["name"] == "onnxruntime 1280x720":
            report.add_goal("onnxruntime 1280x720 total / infer", r["total/infer"], "<= 1.25", r["total/infer"] <= 1.25)
            if "batched/unbatched" in r:
                report.add_goal(f"onnxruntime 1280x720 {cfg.cameras}-camera batched / unbatched images/s",
                                r["batched/unbatched"], ">= 1.3", r["batched/unbatched"] >= 1.3)


def run(args: argparse.Namespace) -> int:
    import sys

    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        print(f"perception bench pipeline: error: unknown backends {unknown}; use {', '.join(BACKENDS)}",
              file=sys.stderr)
        return 2
    if any(BACKENDS[b][1] == "cuda" for b in backends):
        import torch

        if not torch.cuda.is_available():
            print("perception bench pipeline: error: a torch-cuda backend was asked for, but torch sees no CUDA "
                  "device; use onnxruntime, torch or torch-device", file=sys.stderr)
            return 2
    cfg = PipelineBenchConfig(
        checkpoint=args.checkpoint, backends=backends,
        sizes=tuple(args.sizes), cameras=args.cameras, frames=args.frames, warmup=args.warmup,
        threads=args.threads, bag=args.bag, cache_dir=args.cache_dir, out=args.out)
    report = run_benchmark(cfg)
    report.publish(cfg.out, "bench_pipeline")
    return 0
