"""``perception bench fleet``: fleet evaluation throughput, measured side by side in one run.

On N synthetic drive bags (rendered once into ``--out/bags``): a plain in-process loop (model loaded once,
the reference), then ``perception eval --bags`` with 1 and 2 single-threaded workers on the local process
pool and, when installed, on Dask. Per run: wall bags/s, steady bags/s (after every worker finished its
first bag, so start-up is left out), start-up (first result minus that bag's own time), per-bag overhead
against the plain loop, and the JSON result size per bag: the inputs of the scaling model in docs/fleet.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from perception.core.config import count_arg
from perception.fleet.config import FleetConfig
from perception.weights import checkpoint_arg


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bags", type=int, default=8, help="synthetic drive bags (default 8)")
    p.add_argument("--frames", type=count_arg, default=8, help="frames per bag (default 8)")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=192)
    p.add_argument("--checkpoint", type=checkpoint_arg, default="stan_s_temporal",
                   help="shipped name or path (default stan_s_temporal)")
    p.add_argument("--untrained", default="", help="a registry network with random weights instead (plumbing)")
    p.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    p.add_argument("--engines", default="local,dask", help="local and/or dask (dask: skipped when not installed)")
    p.add_argument("--out", type=Path, default=Path("runs/bench/fleet"))


@dataclass
class Timing:
    name: str
    workers: int
    wall_s: float
    done_at: list[float] = field(default_factory=list)  # completion times since start, sorted
    task_s: list[float] = field(default_factory=list)  # each bag's time inside its worker, completion order
    sizes: list[int] = field(default_factory=list)  # JSON bytes of each bag's result
    engine_start_s: float = 0.0

    def bags_per_s(self) -> float:
        return len(self.done_at) / self.wall_s

    def steady_bags_per_s(self) -> float | None:
        k = self.workers
        if len(self.done_at) <= k:
            return None
        return (len(self.done_at) - k) / max(1e-9, self.done_at[-1] - self.done_at[k - 1])

    def startup_s(self) -> float:
        return self.engine_start_s + (self.done_at[0] - self.task_s[0] if self.done_at else 0.0)


def make_bags(out: Path, count: int, frames: int, width: int, height: int) -> list[Path]:
    from perception.fleet.bags import synthetic_bags

    return synthetic_bags(f"synthetic:5000:{5000 + count}", out, frames, width, height)


def plain_loop(bags: list[Path], cfg: FleetConfig) -> tuple[Timing, float]:
    """The reference: one process, model loaded once (not timed), bags one after another."""
    import cv2
    import torch

    from perception.eval.bags import evaluate_bag_offline
    from perception.fleet.worker import build_perceptor

    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    try:
        t0 = time.perf_counter()
        perceptor = build_perceptor(cfg)
        load_s = time.perf_counter() - t0
        timing = Timing("plain loop (in-process)", 1, 0.0)
        t0 = time.perf_counter()
        for bag in bags:
            t1 = time.perf_counter()
            evaluate_bag_offline(bag, perceptor, cfg.score_thresh)
            timing.task_s.append(time.perf_counter() - t1)
            timing.done_at.append(time.perf_counter() - t0)
        timing.wall_s = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)
    return timing, load_s


def fleet_run(bags: list[Path], cfg: FleetConfig, engine: str, workers: int) -> Timing:
    from perception.fleet.executors import Outcome
    from perception.fleet.run import RunOptions, run_fleet

    timing = Timing(f"{engine} pool" if engine == "local" else engine, workers, 0.0)
    t0 = time.perf_counter()

    def done(out: Outcome) -> None:
        timing.done_at.append(time.perf_counter() - t0)
        if out.result is not None:
            timing.task_s.append(float(out.result["seconds"]))
            timing.sizes.append(len(json.dumps(out.result)))

    result = run_fleet(bags, cfg, RunOptions(engine, workers, "", ""), done)
    timing.wall_s = time.perf_counter() - t0
    timing.engine_start_s = float(result["run"]["engine_start_s"])
    if result["fleet"]["failed"]:
        raise RuntimeError(f"{result['fleet']['failed']} bag(s) failed in the {engine} run: {result['bags'][0]}")
    return timing


def _f(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def table(rows: list[Timing], loop: Timing) -> str:
    per_bag_loop = loop.wall_s / len(loop.done_at)
    base = {}  # steady bags/s of 1 worker per engine
    lines = ["| run | workers | wall s | bags/s | steady bags/s | speed-up vs 1 worker (steady) | start-up s | "
             "overhead ms/bag vs loop | result bytes/bag |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in [loop, *rows]:
        steady = t.steady_bags_per_s() if t is not loop else t.bags_per_s()
        if t is not loop and t.workers == 1:
            base[t.name] = steady
        ref = base.get(t.name)
        speedup = steady / ref if (t is not loop and ref and steady) else None
        overhead = None
        if t is not loop:  # time per bag a worker-second costs beyond the loop's, start-up excluded
            overhead = 1e3 * ((t.wall_s - t.startup_s()) * t.workers / len(t.done_at) - per_bag_loop)
        size = sum(t.sizes) / len(t.sizes) if t.sizes else None
        lines.append(f"| {t.name} | {t.workers} | {t.wall_s:.2f} | {t.bags_per_s():.3f} | {_f(steady, 3)} | "
                     f"{_f(speedup)} | {_f(t.startup_s() if t is not loop else None)} | {_f(overhead, 0)} | "
                     f"{_f(size, 0)} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from perception.fleet import FleetError

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        cfg = FleetConfig(checkpoint="" if args.untrained else args.checkpoint, untrained=args.untrained,
                          input_size=(args.height, args.width), retries=0)
    except FleetError as e:
        print(f"perception bench fleet: error: {e}")
        return 2
    bags = make_bags(args.out / "bags", args.bags, args.frames, args.width, args.height)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if "dask" in engines:
        try:
            import distributed  # noqa: F401
        except ImportError:
            print("dask: not installed (pip install '.[fleet]'), skipped")
            engines.remove("dask")
    loop, load_s = plain_loop(bags, cfg)
    rows = [fleet_run(bags, cfg, engine, int(w)) for engine in engines for w in args.workers.split(",")]
    text = table(rows, loop)
    load = os.getloadavg()
    header = (f"{len(bags)} bags x {args.frames} frames {args.width}x{args.height}, model "
              f"{args.untrained or args.checkpoint} (loaded in {load_s:.2f} s), single-threaded workers, "
              f"load average {load[0]:.2f} on {os.cpu_count()} CPUs")
    print(header)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fleet_bench.md").write_text(header + "\n\n" + text + "\n", encoding="utf-8")
    raw = [{"name": t.name, "workers": t.workers, "wall_s": t.wall_s, "done_at": t.done_at, "task_s": t.task_s,
            "result_bytes": t.sizes, "engine_start_s": t.engine_start_s} for t in [loop, *rows]]
    (args.out / "fleet_bench.json").write_text(json.dumps({"header": header, "runs": raw}, indent=1) + "\n",
                                               encoding="utf-8")
    print(f"wrote {args.out / 'fleet_bench.md'}")
    return 0
