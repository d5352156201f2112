"""The work of one fleet task, inside a worker process: evaluate one bag, return a small JSON-able result.

The model is loaded once per worker process (:func:`perceptor_for` keeps it) and its temporal memory is
reset between bags. Offline mode scores the bag with :func:`perception.eval.bags.evaluate_bag_offline`
(its camera frames through the Perceptor in log-time order, each scored against the bag's ground truth as
soon as both are read); the ROS mode with :func:`perception.fleet.ros_mode.evaluate_bag_ros`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perception.fleet.config import BagTask, FleetConfig

if TYPE_CHECKING:
    from perception.pipeline.perceptor import Perceptor

# test-only fault injection: "NAME" makes a worker die (os._exit) on every bag whose name contains NAME;
# "NAME@MARKER" only on the first try (the marker file records that it died once)
CRASH_ENV = "PERCEPTION_FLEET_TEST_CRASH"
CRASH_EXIT_CODE = 86

_PERCEPTORS: dict[FleetConfig, Perceptor] = {}


def init_worker(threads: int) -> None:
    """Process-pool initializer: single-threaded numerics before torch is imported."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import cv2

    cv2.setNumThreads(threads)


def perceptor_for(cfg: FleetConfig) -> Perceptor:
    """The worker's Perceptor for ``cfg`` (built on first use, then reused for every bag)."""
    perceptor = _PERCEPTORS.get(cfg)
    if perceptor is None:
        perceptor = build_perceptor(cfg)
        _PERCEPTORS[cfg] = perceptor
    return perceptor


def build_perceptor(cfg: FleetConfig) -> Perceptor:
    """The Perceptor of ``cfg``; sets this process's torch and OpenCV threads to ``cfg.threads`` (a Dask
    worker runs no pool initializer)."""
    import cv2

    from perception.pipeline.perceptor import Perceptor, PerceptorConfig
    from perception.runtime.torch_backend import TorchBackend, TorchBackendConfig

    cv2.setNumThreads(cfg.threads)

    bcfg = TorchBackendConfig(precision="fp32", threads=cfg.threads)
    path = cfg.checkpoint_path()
    if path is not None:
        from perception.models.checkpoint import checkpoint_input_size

        backend = TorchBackend(path, checkpoint_input_size(path), bcfg)
    else:
        import torch

        from perception.models.registry import build_model

        torch.manual_seed(cfg.model_seed)
        backend = TorchBackend(build_model(cfg.untrained), cfg.input_size, bcfg)
    backend.load()
    # low threshold: mAP needs the full precision-recall curve; attention maps are not scored on bags
    return Perceptor(backend, PerceptorConfig(score_thresh=0.05, attention=False))


def _crash_hook(task: BagTask) -> None:
    spec = os.environ.get(CRASH_ENV, "")
    if not spec:
        return
    name, _, marker = spec.partition("@")
    if name and name in task.name:
        if marker:
            m = Path(marker)
            if m.exists():
                return
            m.write_text(task.name, encoding="utf-8")
        os._exit(CRASH_EXIT_CODE)


def run_task(task: BagTask, cfg: FleetConfig) -> dict[str, Any]:
    """Evaluate one bag (in a worker process); the result is small and JSON-able."""
    from perception.eval.metrics import to_jsonable

    _crash_hook(task)
    t0 = time.perf_counter()
    if cfg.mode == "offline":
        from perception.eval.bags import evaluate_bag_offline

        perceptor = perceptor_for(cfg)  # loaded by the worker's first bag only
        t1 = time.perf_counter()
        metrics = evaluate_bag_offline(task.path, perceptor, cfg.score_thresh)
    else:
        from perception.fleet.ros_mode import evaluate_bag_ros

        t1 = t0
        metrics = evaluate_bag_ros(task, cfg)
    # seconds: this bag's evaluation; setup_s: what the worker spent first (model load), 0 once warm
    return to_jsonable({"bag": task.name, "path": task.path, "bag_sha": task.bag_sha, "key": task.key,
                        "metrics": metrics, "seconds": time.perf_counter() - t1, "setup_s": t1 - t0,
                        "pid": os.getpid()})
