"""`perception bench runtime`: every available backend on the same inputs, in one run, vs torch eager fp32.

Variants (those that cannot run here are listed with the reason):

- CPU: torch eager fp32 (the baseline), torch bf16 + channels_last, torch.compile (``--compile``),
  ONNX Runtime fp32, the same without the segmentation (the graph pruned to the other outputs: what a node pays
  when nobody consumes it, and each refinement crop), ONNX Runtime INT8 QDQ with s8 activations (the
  TensorRT-compatible model) and with u8 activations (ONNX Runtime's x86 fast path, CPU only).
- CUDA (when present): torch fp32 / fp16 autocast / fp16 + CUDA graph / torch.compile fp16
  (``--compile``), ONNX Runtime CUDA EP (onnxruntime-gpu), TensorRT fp16 (+ CUDA graph) and INT8.

``--device cuda`` runs only the CUDA variants, against torch cuda eager fp32; ``--device cpu`` only
the CPU ones. ONNX models are exported (and quantised) once into ``--cache-dir`` when a variant needs
them (:mod:`perception.deploy.ondemand`).

Each call is one streamed frame through the ``Backend`` API (numpy in, numpy out, temporal state
fed back; on CUDA the host-device copies included), i.e. what the pipeline pays. Variants run
interleaved round-robin; speed-ups are medians of per-round paired ratios, so load from other
processes mostly cancels. ``max_score_diff`` / ``seg_label_agreement`` compare each variant's
first output with the baseline's on one identical input (a sanity check of each path).

A vehicle computer is never idle: after the idle pass every variant is timed again while ``--load``
other processes (default 1) run torch matmuls with default, spinning OpenMP on every usable CPU
(:func:`competing_load`); ``loaded_ms`` and ``x_slower_loaded`` show what that costs each backend.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perception.bench.model import paired_ratio
from perception.bench.report import Report, time_call
from perception.core.config import count_arg, warmup_arg
from perception.core.hardware import available_cpus
from perception.runtime.base import Backend, BackendError
from perception.weights import checkpoint_arg

CPU_BASELINE = "torch eager fp32"
# variants that ask their backend to leave outputs out (``Backend.infer``'s ``skip``): what a node pays when nobody
# consumes the segmentation, and what each refinement crop pays
NO_SEG = "onnxruntime fp32, no segmentation"
SKIPS = {NO_SEG: frozenset({"seg"})}
CUDA_BASELINE = "torch cuda fp32"
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class RuntimeBenchConfig:
    checkpoint: str = "stan_s_temporal"
    device: str = "auto"  # auto | cpu | cuda (see --device)
    input_size: tuple[int, int] = (0, 0)  # (H, W); 0: the checkpoint's training size
    batch: int = 1
    iters: int = 20
    warmup: int = 3
    threads: int = 2
    compile: bool = False
    int8: bool = True
    cache_dir: str = "cache/runtime"
    out: str = "bench_out"
    load: int = 1  # competing torch processes during the loaded pass (0: no loaded pass)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from perception.core.config import size_arg

    d = RuntimeBenchConfig()
    p.add_argument("--checkpoint", default=d.checkpoint, type=checkpoint_arg,
                   help="checkpoint path or shipped name (default %(default)s)")
    p.add_argument("--device", choices=DEVICES, default=d.device,
                   help="auto: the CPU variants, and the CUDA ones when a GPU is present (baseline: torch eager fp32 "
                        "on the CPU); cpu: CPU only; cuda: CUDA only (baseline: torch cuda eager fp32)")
    p.add_argument("--input-size", type=size_arg, default=None, help="HxW (default: the checkpoint's training size)")
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--iters", type=count_arg, default=d.iters, help="timed rounds (median)")
    p.add_argument("--warmup", type=warmup_arg, default=d.warmup)
    p.add_argument("--threads", type=int, default=d.threads, help="CPU threads of torch and onnxruntime")
    p.add_argument("--compile", action="store_true",
                   help="also time torch.compile (CPU: bf16, 15-30 s to compile; CUDA: fp16)")
    p.add_argument("--no-int8", dest="int8", action="store_false", help="skip the INT8 variants")
    p.add_argument("--cache-dir", default=d.cache_dir, help="exported / quantised models and engines")
    p.add_argument("--load", type=int, default=d.load, metavar="N",
                   help="after the idle pass, time every variant again while N other processes run torch matmuls "
                        "with default (spinning) OpenMP on all usable CPUs: the loaded_ms column (0: skip)")
    p.add_argument("--out", default=d.out, help="output directory for bench_runtime.md/.json")


Factories = dict[str, Callable[[], Backend]]


def _cpu_variants(cfg: RuntimeBenchConfig, ckpt: Path, size: tuple[int, int], onnx: Callable[[], Path]) -> Factories:
    from perception.deploy.quantize import QuantizeConfig, quantized_copy
    from perception.runtime.onnx_backend import OnnxRuntimeBackend, OnnxRuntimeConfig
    from perception.runtime.torch_backend import TorchBackend, TorchBackendConfig

    t = cfg.threads
    ort_cpu = OnnxRuntimeConfig(providers=("cpu",), threads=t)
    out: Factories = {
        CPU_BASELINE: lambda: TorchBackend(ckpt, size, TorchBackendConfig(threads=t)),
        "torch bf16+channels_last": lambda: TorchBackend(
            ckpt, size, TorchBackendConfig(precision="bf16", channels_last=True, threads=t)),
    }
    if cfg.compile:
        out["torch.compile bf16+channels_last"] = lambda: TorchBackend(
            ckpt, size, TorchBackendConfig(precision="bf16", channels_last=True, threads=t, compile=True))
    out["onnxruntime fp32"] = lambda: OnnxRuntimeBackend(onnx(), ort_cpu)
    out[NO_SEG] = lambda: OnnxRuntimeBackend(onnx(), ort_cpu)
    if cfg.int8:
        s8, u8 = (quantized_copy(onnx(), QuantizeConfig(activations=a)) for a in ("s8", "u8"))
        out["onnxruntime int8 (s8, TensorRT-compatible)"] = lambda: OnnxRuntimeBackend(s8, ort_cpu)
        out["onnxruntime int8 (u8, CPU only)"] = lambda: OnnxRuntimeBackend(u8, ort_cpu)
    return out


def _cuda_variants(cfg: RuntimeBenchConfig, ckpt: Path, size: tuple[int, int], onnx: Callable[[], Path],
                   skipped: dict[str, str]) -> Factories:
    import importlib.util

    import onnxruntime as ort

    from perception.deploy.ondemand import OnDemand
    from perception.deploy.quantize import QuantizeConfig, quantized_copy
    from perception.runtime.onnx_backend import OnnxRuntimeBackend, OnnxRuntimeConfig
    from perception.runtime.torch_backend import TorchBackend, TorchBackendConfig

    def torch_cuda(**kw: Any) -> Callable[[], Backend]:
        return lambda: TorchBackend(ckpt, size, TorchBackendConfig(device="cuda", **kw))

    out: Factories = {
        CUDA_BASELINE: torch_cuda(),
        "torch cuda fp16": torch_cuda(precision="fp16"),
        "torch cuda fp16 + CUDA graph": torch_cuda(precision="fp16", cuda_graph=True),
    }
    if cfg.compile:
        out["torch.compile cuda fp16"] = torch_cuda(precision="fp16", compile=True)
    if "CUDAExecutionProvider" in ort.get_available_providers():
        out["onnxruntime cuda fp32"] = lambda: OnnxRuntimeBackend(onnx(), OnnxRuntimeConfig(providers=("cuda",)))
    else:
        skipped["onnxruntime cuda"] = "onnxruntime has no CUDA provider (install onnxruntime-gpu)"
    if importlib.util.find_spec("tensorrt") is None:
        skipped["tensorrt"] = "TensorRT is not installed"
        return out
    from perception.runtime.tensorrt_backend import TensorRTBackend, TensorRTConfig
    from perception.runtime.tensorrt_engine import EngineConfig

    engines = str(Path(cfg.cache_dir) / "engines")
    variants = [("tensorrt fp16", "fp16", False), ("tensorrt fp16 + CUDA graph", "fp16", True)]
    if cfg.int8:
        variants.append(("tensorrt int8", "int8", False))
    for label, precision, graph in variants:
        def make(precision: str = precision, graph: bool = graph) -> Backend:
            model = quantized_copy(onnx(), QuantizeConfig()) if precision == "int8" else onnx()
            trt_cfg = TensorRTConfig(engine=EngineConfig(precision=precision, cache_dir=engines), cuda_graph=graph,
                                     builder=OnDemand().build_engine)
            return TensorRTBackend(model, trt_cfg)

        out[label] = make
    return out


def _variants(cfg: RuntimeBenchConfig, ckpt: Path, size: tuple[int, int]) -> tuple[Factories, dict[str, str]]:
    """label -> backend factory, and label -> why it is skipped."""
    import torch

    from perception.deploy.ondemand import cached_export

    onnx = functools.cache(lambda: cached_export(ckpt, size, max(cfg.batch, 4), Path(cfg.cache_dir) / "onnx"))
    skipped: dict[str, str] = {}
    out = _cpu_variants(cfg, ckpt, size, onnx) if cfg.device != "cuda" else {}
    if cfg.device == "cpu":
        pass
    elif torch.cuda.is_available():
        out.update(_cuda_variants(cfg, ckpt, size, onnx, skipped))
    else:
        skipped["torch cuda / tensorrt / onnxruntime cuda"] = "no CUDA device on this machine"
    return out, skipped


def run_benchmark(cfg: RuntimeBenchConfig) -> Report:
    import torch

    from perception.models.checkpoint import checkpoint_input_size
    from perception.weights import resolve_checkpoint

    torch.set_num_threads(cfg.threads)
    ckpt = resolve_checkpoint(cfg.checkpoint)
    size = cfg.input_size if 0 not in cfg.input_size else checkpoint_input_size(ckpt)
    factories, skipped = _variants(cfg, ckpt, size)
    baseline = CUDA_BASELINE if cfg.device == "cuda" else CPU_BASELINE
    where = "CUDA" if cfg.device == "cuda" else f"{cfg.threads} CPU threads"
    report = Report(f"Runtime backends: {ckpt.name}, {size[0]}x{size[1]}, batch {cfg.batch}, {where}")
    rng = np.random.default_rng(0)
    image = rng.random((cfg.batch, 3, *size), dtype=np.float32)
    backends: dict[str, Backend] = {}
    calls: dict[str, Callable[[], object]] = {}
    meta: dict[str, dict[str, Any]] = {}
    reference: dict[str, np.ndarray] = {}
    for label, make in factories.items():
        t0 = time.perf_counter()
        try:
            b = make()
            b.load()
            skip = SKIPS.get(label, frozenset())
            first = b.infer({"image": image, **b.initial_state(cfg.batch)}, skip)  # (compiles / builds when needed)
        except Exception as e:  # a variant that cannot run is reported, not fatal
            skipped[label] = f"{type(e).__name__}: {e}"[:300]
            continue
        if label == baseline:
            reference = first
        meta[label] = {"setup_s": round(time.perf_counter() - t0, 1), **_agreement(first, reference)}
        backends[label] = b
        calls[label] = _streaming_call(b, image, skip)
    loaded: dict[str, list[float]] = {}
    try:
        times = _interleaved_blocks(calls, cfg.warmup, cfg.iters)
        if cfg.load > 0:
            with competing_load(cfg.load):
                loaded = _interleaved_blocks(calls, 1, cfg.iters)
    finally:
        for b in backends.values():
            b.close()
    for label, ts in times.items():
        row = report.add_timing(label, ts, **meta[label])
        if label in loaded:
            row["loaded_ms"] = 1000.0 * float(np.median(loaded[label]))
            row["x_slower_loaded"] = row["loaded_ms"] / row["median_ms"]
    if baseline not in times:
        raise BackendError(f"the baseline {baseline} could not run: {skipped.get(baseline, 'unknown error')}")
    for r in report.rows:
        r["x_vs_torch_fp32"] = paired_ratio(times, baseline, r["name"])  # speed-up (>1: faster)
    cpu = [r for r in report.rows if not any(k in r["name"] for k in ("cuda", "tensorrt"))]
    if cpu:
        best = max(cpu, key=lambda r: r["x_vs_torch_fp32"])
        report.add_goal(f"best CPU backend ({best['name']}) speed-up over torch eager fp32", best["x_vs_torch_fp32"],
                        ">= 2.5", best["x_vs_torch_fp32"] >= 2.5)
    gpu = [r for r in report.rows if "tensorrt fp16" in r["name"]]
    if gpu and baseline == CPU_BASELINE:
        g = max(gpu, key=lambda r: r["x_vs_torch_fp32"])
        report.add_goal(f"compiled FP16 path ({g['name']}) speed-up over torch eager fp32", g["x_vs_torch_fp32"],
                        ">= 5", g["x_vs_torch_fp32"] >= 5.0)
    for label, why in skipped.items():
        report.notes.append(f"not run: {label}: {why}")
    report.notes.append("one call = one streamed frame through Backend.infer (numpy in/out, state fed back); "
                        "variants interleaved round-robin (per round: 1 untimed + 4 timed calls each, median); "
                        f"x_vs_torch_fp32 = median of per-round paired ratios against {baseline}")
    if cfg.load > 0:
        report.notes.append(
            f"loaded_ms: the same rounds again while {cfg.load} other process(es) ran torch matmuls with default "
            f"OpenMP settings (spinning) on {available_cpus()} CPU thread(s) each, as a vehicle computer is never "
            "idle; x_slower_loaded = loaded_ms / median_ms. This process runs with OMP_WAIT_POLICY="
            f"{os.environ.get('OMP_WAIT_POLICY') or 'unset (spinning)'}")
    report.notes.append("max_score_diff / seg_label_agreement: largest detection-score (sigmoid) difference and the "
                        f"fraction of equal segmentation labels vs {baseline}, same first input (zero state); "
                        "the input is random noise, harder on INT8 than real frames "
                        "(accuracy on real drives: `perception export --evaluate`)")
    return report


# a competing torch process: matmuls on every usable CPU with default OpenMP settings, until stdin closes
_LOAD_CODE = """
import sys, threading, time, torch
torch.set_num_threads(int(sys.argv[1]))
deadline = time.monotonic() + float(sys.argv[2])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
a = torch.randn(384, 384)
a @ a
print("ready", flush=True)
while not stop.is_set() and time.monotonic() < deadline:
    for _ in range(8):
        a = torch.tanh(a @ a)
"""


@contextlib.contextmanager
def competing_load(processes: int, max_seconds: float = 900.0) -> Iterator[list[int]]:
    """``processes`` other torch processes busy on every CPU this one may use, for the ``with`` block
    (bounded: each ends when the block ends, when this process dies (stdin closes), or after
    ``max_seconds``). They run with OpenMP's default wait policy, as an unrelated torch job would.
    Yields their pids."""
    from perception.core.hardware import PASSIVE_OPENMP_ENV, available_cpus

    env = {k: v for k, v in os.environ.items() if k not in PASSIVE_OPENMP_ENV}
    cmd = [sys.executable, "-c", _LOAD_CODE, str(available_cpus()), str(max_seconds)]
    procs = [subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(processes)]
    try:
        for p in procs:
            assert p.stdout is not None
            if p.stdout.readline().strip() != "ready":
                raise BackendError(f"competing load process {p.pid} did not start (exit code {p.poll()})")
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            if p.stdin is not None:
                p.stdin.close()  # the process's stdin reader sees EOF and the loop ends
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _interleaved_blocks(calls: dict[str, Callable[[], object]], warmup: int, rounds: int,
                        block: int = 4) -> dict[str, list[float]]:
    """Round-robin over the variants; in each round a variant runs one untimed call and then ``block``
    timed ones (their median is its time for the round). The untimed call absorbs the previous variant's
    thread pools still spinning on the cores, so each variant is measured in its steady state, while all
    variants still share each round's machine load (paired ratios stay meaningful on a busy machine)."""
    import statistics

    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(rounds):
        for k, fn in calls.items():
            times[k].append(statistics.median(time_call(fn, warmup=1, iters=block)))
    return times


def _agreement(out: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, float]:
    """How close a variant's outputs are to the baseline's: detection scores and segmentation labels."""
    from perception.core.decode import sigmoid

    if "scores" in out:  # anchor head: scores are probabilities already
        score = float(np.abs(out["scores"] - ref["scores"]).max())
    else:
        score = float(np.abs(sigmoid(out["heatmap"]) - sigmoid(ref["heatmap"])).max())
    if "seg" not in out:  # a variant that skips it
        return {"max_score_diff": score}
    seg = float((out["seg"].argmax(1) == ref["seg"].argmax(1)).mean())
    return {"max_score_diff": score, "seg_label_agreement": seg}


def _streaming_call(backend: Backend, image: np.ndarray, skip: frozenset[str] = frozenset()) -> Callable[[], object]:
    state = backend.initial_state(image.shape[0])

    def call() -> object:
        nonlocal state
        out = backend.infer({"image": image, **state}, skip)
        state = {k: out[o] for k, o in backend.state_pairs.items()}
        return out

    return call


def run(args: argparse.Namespace) -> int:
    import torch

    d = RuntimeBenchConfig()
    cfg = RuntimeBenchConfig(checkpoint=args.checkpoint, device=args.device,
                             input_size=args.input_size or d.input_size, batch=args.batch, iters=args.iters,
                             warmup=args.warmup, threads=args.threads, compile=args.compile, int8=args.int8,
                             cache_dir=args.cache_dir, out=args.out, load=args.load)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        print("perception bench runtime: error: --device cuda, but torch sees no CUDA device "
              f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use --device cpu or auto",
              file=sys.stderr)
        return 2
    try:
        report = run_benchmark(cfg)
    except BackendError as e:
        print(f"perception bench runtime: error: {e}", file=sys.stderr)
        return 1
    report.publish(cfg.out, "bench_runtime")
    return 0
