"""`perception bench attention`: does attention-guided refinement buy full-resolution accuracy at less compute?

On unseen drives rendered at ``--width x --height`` (default 1280x720), every frame goes through each
variant in turn (round robin, so load from other processes hits all alike), each variant a Perceptor
with its own temporal state:

(a) full-resolution single pass: the same weights run at the frame's size (fully convolutional; the
    height is rounded up to a multiple of 32 and letterboxed, 720 -> 736);
(b) low-resolution single pass: the network's own input size (256x448 for the shipped networks);
(c) (b) + attention-guided refinement (:class:`~perception.pipeline.refine.RefiningPerceptor`, policy
    ``attention``): up to ``--max-regions`` native-resolution crops where attention / small boxes point;
(d) (b) + uniform tiles: for each frame, as many native-resolution crops as (c) took on that frame, from a
    fixed tiling of the frame, round robin (content-blind, the same pixel budget as (c));
(e) (b) + the tiling's middle row (content-blind but with a driving prior: the horizon band), same count.

Reported per variant: small / medium / large AP (split at 16^2 and 48^2 frame pixels, AP@[.5:.95]), mAP,
mAP50, mIoU, median latency per frame, network-input pixels per frame and FLOPs per frame with ratios to
(a). FLOPs are COUNTED, not estimated: ``torch.utils.flop_counter.FlopCounterMode`` over one forward of the
network at each input size (convolutions, matmuls and attention products; element-wise ops are not
counted), times the number of inputs a variant ran for the frame (crops are batched, and FLOPs scale with
the batch).

Writes ``<out>/bench_attention.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from perception.bench.report import Report
from perception.core.config import count_arg
from perception.weights import checkpoint_arg

VARIANTS = ("a full-res", "b low-res", "c low-res + attention", "d low-res + uniform tiles", "e low-res + band tiles")


@dataclass(frozen=True)
class AttentionBenchConfig:
    checkpoint: str = "stan_s_temporal"
    seeds: tuple[int, int] = (1000, 1003)
    frames: int = 20
    width: int = 1280
    height: int = 720
    backend: str = "torch"  # torch | onnxruntime
    threads: int = 1
    max_regions: int = 3
    max_pixels: int = 0
    crop_scale: float = 1.0
    score_thresh: float = 0.05  # low: AP needs the whole precision-recall curve
    cache_dir: str = "cache/sim"
    out: str = "runs/bench_attention"
    progress: bool = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    from perception.core.config import seed_range

    d = AttentionBenchConfig()
    p.add_argument("--checkpoint", type=checkpoint_arg, default=d.checkpoint,
                   help="shipped name or checkpoint stem (default %(default)s)")
    p.add_argument("--seeds", type=seed_range, default=d.seeds, help="drive seeds FIRST:LAST (default 1000:1003)")
    p.add_argument("--frames", type=count_arg, default=d.frames, help="frames per drive (default %(default)s)")
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--height", type=int, default=d.height)
    p.add_argument("--backend", default=d.backend, choices=("torch", "onnxruntime"),
                   help="runtime of every variant (onnxruntime exports each input size once into the cache)")
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--max-regions", type=int, default=d.max_regions, help="refine.max_regions of (c)")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels, help="refine.max_pixels of (c) (0: no cap)")
    p.add_argument("--crop-scale", type=float, default=d.crop_scale, help="refine.crop_scale (1.0: native)")
    p.add_argument("--cache-dir", default=d.cache_dir, help="rendered-drive cache ('' disables)")
    p.add_argument("--out", default=d.out)
    p.add_argument("--no-progress", action="store_true")


def full_input_size(height: int, width: int) -> tuple[int, int]:
    """The frame's size rounded up to multiples of 32 (the network's stride)."""
    return -(-height // 32) * 32, -(-width // 32) * 32


def counted_flops(checkpoint: Path, sizes: list[tuple[int, int]]) -> dict[tuple[int, int], float]:
    """FLOPs of one forward (batch 1, fp32) at each input size, counted by torch's FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from perception.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(checkpoint)
    out: dict[tuple[int, int], float] = {}
    with torch.no_grad():
        for h, w in sizes:
            inputs: list[torch.Tensor] = [torch.zeros(1, 3, h, w)]
            if getattr(model, "is_temporal", False):
                inputs += list(model.init_state(1, h, w))  # type: ignore[operator]
            counter = FlopCounterMode(display=False)
            with counter:
                model(*inputs)
            out[(h, w)] = float(counter.get_total_flops())
    return out


def _backend(cfg: AttentionBenchConfig, checkpoint: Path, size: tuple[int, int]) -> Any:
    if cfg.backend == "torch":
        from perception.runtime.torch_backend import TorchBackend, TorchBackendConfig

        return TorchBackend(checkpoint, size, TorchBackendConfig(threads=cfg.threads))
    from perception.deploy.ondemand import on_demand
    from perception.runtime.select import ModelSource, RuntimeConfig, build_backend

    return build_backend(on_demand(ModelSource(checkpoint=checkpoint, input_size=size)),
                         RuntimeConfig(backend="onnxruntime", fallback=False, threads=cfg.threads, max_batch=8))


def run_benchmark(cfg: AttentionBenchConfig) -> Report:
    from tqdm import tqdm

    from perception.eval.metrics import EvalAccumulator
    from perception.models.checkpoint import checkpoint_input_size
    from perception.pipeline.perceptor import FrameInput, Perceptor, PerceptorConfig
    from perception.pipeline.refine import RefineConfig, RefiningPerceptor
    from perception.sim.sequences import load_or_render
    from perception.weights import resolve_checkpoint

    ckpt = resolve_checkpoint(cfg.checkpoint)
    low = checkpoint_input_size(ckpt)
    full = full_input_size(cfg.height, cfg.width)
    sim = {"width": cfg.width, "height": cfg.height}
    seqs = [load_or_render(s, cfg.frames, sim, cfg.cache_dir or None) for s in range(*cfg.seeds)]
    pcfg = PerceptorConfig(score_thresh=cfg.score_thresh)
    # crops only (no zoom-out pass): the bench compares where the crops go, at one budget of network inputs
    rcfg = RefineConfig(max_regions=cfg.max_regions, max_pixels=cfg.max_pixels, crop_scale=cfg.crop_scale,
                        zoom_out=0.0)
    full_backend, low_backend = _backend(cfg, ckpt, full), _backend(cfg, ckpt, low)
    for b in (full_backend, low_backend):
        if cfg.backend == "torch":
            b.load()
    perceptors: dict[str, Perceptor] = {
        VARIANTS[0]: Perceptor(full_backend, pcfg),
        VARIANTS[1]: Perceptor(low_backend, pcfg),
        VARIANTS[2]: RefiningPerceptor(low_backend, pcfg, rcfg),
        VARIANTS[3]: RefiningPerceptor(low_backend, pcfg, replace(rcfg, policy="uniform")),
        VARIANTS[4]: RefiningPerceptor(low_backend, pcfg, replace(rcfg, policy="band")),
    }
    accs = {v: EvalAccumulator(score_thresh=0.3) for v in VARIANTS}
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    inputs: dict[str, list[int]] = {v: [] for v in VARIANTS}  # network inputs run per frame
    total = len(seqs) * cfg.frames
    bar = tqdm(total=total, desc="frames x 5 variants", disable=not cfg.progress, unit="frame")
    try:
        for seq in seqs:
            for p in perceptors.values():
                p.reset()
            for t in range(len(seq)):
                regions_c = 0
                for v, p in perceptors.items():
                    if v in VARIANTS[3:]:  # the content-blind tilings get (c)'s pixel budget on this frame
                        assert isinstance(p, RefiningPerceptor)
                        p.refine = replace(p.refine, max_regions=regions_c)
                    frame = FrameInput("cam0", seq.rgb[t], float(seq.stamps[t]), scene_cut=t == 0)
                    t0 = time.perf_counter()
                    r = p.process(frame)
                    times[v].append(time.perf_counter() - t0)
                    info = getattr(r, "refinement", None)
                    n = 1 + (len(info.regions) if info is not None else 0)
                    if v == VARIANTS[2]:
                        regions_c = n - 1
                    inputs[v].append(n)
                    accs[v].add(sequence=seq.seed, gt=seq.gt[t], detections=r.detections, seg_pred=r.segmentation,
                                seg_gt=seq.semantic[t])
                bar.update(1)
    finally:
        bar.close()
        full_backend.close()
        low_backend.close()
    flops = counted_flops(ckpt, [full, low])
    report = Report(f"Attention-guided refinement at {cfg.width}x{cfg.height} ({Path(str(ckpt)).name}, "
                    f"{cfg.backend}, {cfg.threads} thread(s))")
    frame_px = cfg.width * cfg.height
    for v in VARIANTS:
        m = accs[v].compute()
        det = m["detection"]
        size = full if v == VARIANTS[0] else low
        per_frame_inputs = float(np.mean(inputs[v]))
        report.add(
            name=v, input=f"{size[0]}x{size[1]}", inputs_per_frame=per_frame_inputs,
            AP_small=det["mAP_small"], AP_medium=det["mAP_medium"], AP_large=det["mAP_large"], mAP=det["mAP"],
            mAP50=det["mAP50"], mIoU=m["segmentation"]["mIoU"],
            median_ms=1e3 * statistics.median(times[v]),
            pixels_ratio=per_frame_inputs * size[0] * size[1] / frame_px,
            GFLOPs=per_frame_inputs * flops[size] / 1e9,
        )
    a = report.row(VARIANTS[0])
    for row in report.rows:
        row["AP_small_x_a"] = row["AP_small"] / a["AP_small"] if a["AP_small"] else float("nan")
        row["ms_x_a"] = row["median_ms"] / a["median_ms"]
        row["GFLOPs_x_a"] = row["GFLOPs"] / a["GFLOPs"]
    c, d = report.row(VARIANTS[2]), report.row(VARIANTS[3])
    report.add_goal("(c) small AP / (a) small AP", c["AP_small_x_a"], ">= 0.95", c["AP_small_x_a"] >= 0.95)
    report.add_goal("(c) FLOPs / (a) FLOPs", c["GFLOPs_x_a"], "<= 0.50", c["GFLOPs_x_a"] <= 0.5)
    report.add_goal("(c) small AP - (d) small AP", c["AP_small"] - d["AP_small"], "> 0",
                    c["AP_small"] > d["AP_small"])
    nframes = sum(len(s) for s in seqs)
    report.notes += [
        f"{len(seqs)} unseen drives (seeds {cfg.seeds[0]}..{cfg.seeds[1] - 1}) x {cfg.frames} frames = {nframes} "
        f"frames at {cfg.width}x{cfg.height}; every variant sees every frame, interleaved; AP = COCO AP@[.5:.95] "
        "(pycocotools), small < 16^2 <= medium < 48^2 <= large frame pixels",
        f"refinement: max_regions {cfg.max_regions}, max_pixels {cfg.max_pixels or 'none'}, crop_scale "
        f"{cfg.crop_scale} (crops of {low[0]}x{low[1]} network pixels); (d) and (e) take (c)'s crop count per frame",
        "GFLOPs: counted by torch.utils.flop_counter.FlopCounterMode (conv / matmul / attention; element-wise ops "
        f"not counted), {flops[low] / 1e9:.2f} per {low[0]}x{low[1]} input, {flops[full] / 1e9:.2f} per "
        f"{full[0]}x{full[1]} input; pixels_ratio = network-input pixels / frame pixels",
        "segmentation (mIoU) of (c)-(e) is pass 1's: refinement changes the detections only",
        "latency: median wall time of Perceptor.process per frame (pre- and post-processing included), measured "
        "side by side on a shared machine: compare the ratios",
    ]
    return report


def config_from_args(args: argparse.Namespace) -> AttentionBenchConfig:
    return AttentionBenchConfig(
        checkpoint=args.checkpoint, seeds=(args.seeds[0], args.seeds[1]), frames=args.frames, width=args.width,
        height=args.height, backend=args.backend, threads=args.threads, max_regions=args.max_regions,
        max_pixels=args.max_pixels, crop_scale=args.crop_scale, cache_dir=args.cache_dir, out=args.out,
        progress=not args.no_progress,
    )


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    report = run_benchmark(cfg)
    report.publish(cfg.out, "bench_attention")
    return 0
