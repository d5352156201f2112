"""`perception bench model`: latency of the stan networks on the CPU, all variants in ONE run.

Measures, at one input size, batch 1, a fixed thread count, median of ``--iters`` calls with
the variants interleaved round-robin (so load from other processes hits all of them alike):

(a) CBAM attention vs the no-attention ablation (goal: overhead <= 10 %),
(b) spatio-temporal streaming (state fed back every frame) vs spatial-only (goal <= 1.25x),
(c) execution modes of the temporal network: eager fp32, bf16 autocast, channels_last,
    bf16 + channels_last and, with ``--compile``, torch.compile (bf16 + channels_last;
    inductor freezing stays OFF — it corrupts the temporal state output; the state is checked
    against eager here).
Optionally (default on) training throughput: forward + backward + loss images/s.

Writes ``<out>/bench_model.md`` and ``.json`` (see :class:`perception.bench.report.Report`).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from perception.bench.report import Report
from perception.core.config import count_arg, warmup_arg

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Mode:
    """How a network is executed."""

    bf16: bool = False
    channels_last: bool = False
    compiled: bool = False


MODES: dict[str, Mode] = {
    "fp32": Mode(),
    "bf16": Mode(bf16=True),
    "channels_last": Mode(channels_last=True),
    "bf16+cl": Mode(bf16=True, channels_last=True),
    "compile bf16+cl": Mode(bf16=True, channels_last=True, compiled=True),
}


@dataclass(frozen=True)
class BenchConfig:
    model: str = "stan_s"
    height: int = 384
    width: int = 640
    iters: int = 20
    warmup: int = 3
    threads: int = 2
    compile: bool = False
    train: bool = True
    train_height: int = 256
    train_width: int = 448
    train_batch: int = 8
    out: str = "bench_out"
    compare: tuple[str, ...] = ()  # other networks timed beside the family (e.g. stan_lite0_temporal)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BenchConfig:
        return cls(
            model=args.model,
            height=args.height,
            width=args.width,
            iters=args.iters,
            warmup=args.warmup,
            threads=args.threads,
            compile=args.compile,
            train=args.train,
            train_height=args.train_height,
            train_width=args.train_width,
            train_batch=args.train_batch,
            out=args.out,
            compare=tuple(args.compare),
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = BenchConfig()
    parser.add_argument(
        "--model",
        default=d.model,
        help="spatial base model; <model>_temporal and the "
        "no-attention ablation are derived from it (default %(default)s)",
    )
    parser.add_argument("--height", type=int, default=d.height, help="input height, multiple of 32")
    parser.add_argument("--width", type=int, default=d.width, help="input width, multiple of 32")
    parser.add_argument("--iters", type=count_arg, default=d.iters, help="timed calls per variant (median)")
    parser.add_argument("--warmup", type=warmup_arg, default=d.warmup, help="untimed calls per variant first")
    parser.add_argument("--threads", type=int, default=d.threads, help="torch intra-op threads")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (15-30 s to compile)")
    parser.add_argument("--no-train", dest="train", action="store_false", help="skip the training throughput")
    parser.add_argument("--train-height", type=int, default=d.train_height)
    parser.add_argument("--train-width", type=int, default=d.train_width)
    parser.add_argument("--train-batch", type=int, default=d.train_batch)
    parser.add_argument("--out", default=d.out, help="output directory for bench_model.md/.json")
    parser.add_argument("--compare", action="append", default=[], metavar="MODEL",
                        help="also time this registered network (fp32 and bf16+cl) against <model>_temporal, "
                             "e.g. stan_lite0_temporal; repeatable")


def _prepare(
    name: str, mode: Mode, height: int, width: int
) -> tuple[Callable[[], dict[str, torch.Tensor]], torch.nn.Module, int]:
    """A zero-argument callable running one streamed frame of ``name`` in ``mode``."""
    import torch

    from perception.models.registry import build_model

    torch.manual_seed(0)
    model = build_model(name).eval()
    params = sum(p.numel() for p in model.parameters())
    image = torch.rand(1, 3, height, width)
    if mode.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        image = image.contiguous(memory_format=torch.channels_last)
    fn: Callable[..., dict[str, torch.Tensor]] = model
    if mode.compiled:
        fn = torch.compile(model, dynamic=False)
    state = list(model.init_state(1, height, width)) if model.is_temporal else []

    def call() -> dict[str, torch.Tensor]:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode.bf16):
            out = fn(image, *state)
        if state:
            state[0], state[1] = out["memory"], out["memory_valid"]
        return out

    return call, model, params


def _interleaved(calls: dict[str, Callable[[], object]], warmup: int, iters: int) -> dict[str, list[float]]:
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(iters):
        for k, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def paired_ratio(times: dict[str, list[float]], name: str, baseline: str) -> float:
    """Median over rounds of ``time[name] / time[baseline]`` measured in the same round.

    The variants of one round run back to back, so load from other processes mostly cancels;
    this is steadier than the ratio of two medians on a shared machine.
    """
    return statistics.median(a / b for a, b in zip(times[name], times[baseline]))


def _state_drift(name: str, mode: Mode, height: int, width: int, frames: int = 4) -> float:
    """Max |compiled - eager| of the temporal state over ``frames`` streamed frames (same inputs)."""
    eager, _, _ = _prepare(name, Mode(mode.bf16, mode.channels_last, False), height, width)
    comp, _, _ = _prepare(name, mode, height, width)
    diff = 0.0
    for _ in range(frames):
        a, b = eager(), comp()
        diff = max(diff, float((a["memory"].float() - b["memory"].float()).abs().max()))
        diff = max(diff, float((a["memory_valid"] - b["memory_valid"]).abs().max()))
    return diff


def _train_throughput(name: str, cfg: BenchConfig) -> float:
    """Images/s of forward + loss + backward + AdamW step, bf16 autocast, channels_last."""
    import numpy as np
    import torch

    from perception.core import classes
    from perception.models.registry import build_model
    from perception.train.losses import DetSegLoss, stack_targets
    from perception.train.targets import encode_targets

    torch.manual_seed(0)
    H, W, B = cfg.train_height, cfg.train_width, cfg.train_batch
    model = build_model(name).train().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    items = [
        encode_targets(
            np.array([[20.0, 30.0, 120.0, 110.0], [200.0, 60.0, 240.0, 140.0]]),
            np.array([0, 2]),
            None,
            H,
            W,
            classes.NUM_DETECTION,
        )
        for _ in range(B)
    ]
    targets = stack_targets(items, rng.integers(0, classes.NUM_SEMANTIC, (B, H, W)))
    images = torch.rand(B, 3, H, W).contiguous(memory_format=torch.channels_last)
    loss_fn = DetSegLoss()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(images)
        total, _ = loss_fn(out, targets)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    times = _interleaved({"train": step}, warmup=2, iters=max(3, cfg.iters // 4))["train"]
    return B / statistics.median(times)


def run_benchmark(cfg: BenchConfig) -> Report:
    import torch

    torch.set_num_threads(cfg.threads)
    base = cfg.model
    temporal, noattn = f"{base}_temporal", f"{base}_noattn"
    report = Report(f"Model latency: {base} family, {cfg.height}x{cfg.width}, batch 1, {cfg.threads} threads")
    # (variant label, model, mode)
    variants: list[tuple[str, str, str]] = [
        (f"{base} fp32", base, "fp32"),
        (f"{noattn} fp32", noattn, "fp32"),
        (f"{temporal} fp32", temporal, "fp32"),
        (f"{base} bf16+cl", base, "bf16+cl"),
        (f"{noattn} bf16+cl", noattn, "bf16+cl"),
        (f"{temporal} bf16+cl", temporal, "bf16+cl"),
        (f"{temporal} bf16", temporal, "bf16"),
        (f"{temporal} channels_last", temporal, "channels_last"),
    ]
    if cfg.compile:
        variants.append((f"{temporal} compile bf16+cl", temporal, "compile bf16+cl"))
    for other in cfg.compare:
        variants += [(f"{other} fp32", other, "fp32"), (f"{other} bf16+cl", other, "bf16+cl")]
    calls: dict[str, Callable[[], object]] = {}
    meta: dict[str, dict[str, Any]] = {}
    for label, name, mode_name in variants:
        t0 = time.perf_counter()
        fn, _, params = _prepare(name, MODES[mode_name], cfg.height, cfg.width)
        fn()  # first call (compiles when compiled)
        meta[label] = {"model": name, "mode": mode_name, "params_m": params / 1e6, "setup_s": time.perf_counter() - t0}
        calls[label] = fn
    times = _interleaved(calls, cfg.warmup, cfg.iters)
    for label, ts in times.items():
        report.add_timing(label, ts, **meta[label])
    report.add_ratios(f"{base} fp32", column="x_spatial_fp32")

    for mode_name in ("fp32", "bf16+cl"):
        over = paired_ratio(times, f"{base} {mode_name}", f"{noattn} {mode_name}") - 1.0
        report.add_goal(f"CBAM overhead vs no attention ({mode_name})", over, "<= 0.10", over <= 0.10)
        tr = paired_ratio(times, f"{temporal} {mode_name}", f"{base} {mode_name}")
        report.add_goal(f"temporal streaming / spatial-only ({mode_name})", tr, "<= 1.25", tr <= 1.25)
    best = paired_ratio(times, f"{temporal} fp32", f"{temporal} bf16+cl")
    report.add_goal("speed-up of bf16+channels_last over eager fp32 (temporal)", best, "> 1", best > 1.0)
    if cfg.compile:
        label = f"{temporal} compile bf16+cl"
        drift = _state_drift(temporal, MODES["compile bf16+cl"], cfg.height, cfg.width)
        report.row(label)["state_max_diff"] = drift
        report.add_goal("compiled temporal state vs eager (max |diff|, bf16)", drift, "<= 0.05", drift <= 0.05)
        sp = paired_ratio(times, f"{temporal} bf16+cl", label)
        report.add_goal("speed-up of torch.compile over eager bf16+cl", sp, "> 1", sp > 1.0)
    for other in cfg.compare:
        for mode_name in ("fp32", "bf16+cl"):
            r = paired_ratio(times, f"{other} {mode_name}", f"{temporal} {mode_name}")
            report.notes.append(f"{other} / {temporal} latency ({mode_name}): {r:.2f}x")
    if cfg.train:
        ips = _train_throughput(base, cfg)
        report.add(
            name=f"{base} train step",
            mode="bf16+cl",
            images_per_s=ips,
            size=f"{cfg.train_height}x{cfg.train_width}",
            batch=cfg.train_batch,
        )
        report.notes.append(
            f"train step = forward + DetSegLoss + backward + AdamW, batch {cfg.train_batch} at "
            f"{cfg.train_height}x{cfg.train_width}: {ips:.1f} images/s"
        )
    report.notes.append(
        "variants run interleaved round-robin in one process; goal ratios are medians of per-round paired "
        "ratios (x_spatial_fp32 column: ratio of medians)"
    )
    report.notes.append("the temporal network streams: each call feeds back the memory of the previous one")
    return report


def run(args: argparse.Namespace) -> int:
    cfg = BenchConfig.from_args(args)
    report = run_benchmark(cfg)
    report.publish(cfg.out, "bench_model")
    return 0

