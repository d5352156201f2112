"""The work of one fleet task, inside a worker process: evaluate one bag, return a small JSON-able result.

The model is loaded once per worker process (:func:`perceptor_for` keeps it) and its temporal memory is
reset between bags. Offline mode reads the bag's camera frames (raw Image, or CompressedImage when the
bag has no raw images), runs them through the Perceptor in log-time order and scores them with
:class:`perception.train.metrics.EvalAccumulator` against the bag's ``<cam>/ground_truth`` (and
``<cam>/ground_truth/semantic``), streaming: a frame is scored as soon as its result and ground truth
are both read, so memory does not grow with the bag's length.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perception.fleet import FleetError
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


def _camera(topic: str, suffix: str) -> str:
    return topic[: -len(suffix)].rstrip("/") or "/"


def _latency(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"frames": 0}
    lat = np.asarray(values)
    return {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
            "p99": float(np.percentile(lat, 99)), "max": float(lat.max()), "frames": int(lat.size)}


def evaluate_bag_offline(path: str | Path, perceptor: Perceptor, score_thresh: float) -> dict[str, Any]:
    """Metrics of the Perceptor on one drive bag's camera frames against its ground truth."""
    from perception.bag import messages as m
    from perception.bag.cdr import header_stamp_ns
    from perception.bag.io import deserialize, open_bag, read_messages
    from perception.pipeline.perceptor import FrameInput
    from perception.train.metrics import EvalAccumulator

    info = open_bag(path)
    raw = [t for t, ty in info.topics.items() if t.endswith("/image_raw") and ty == "sensor_msgs/msg/Image"]
    comp = [t for t, ty in info.topics.items() if t.endswith("/image_raw/compressed")
            and ty == "sensor_msgs/msg/CompressedImage"]
    images = raw or comp
    gts = [t for t, ty in info.topics.items()
           if t.endswith("/ground_truth") and ty == "vision_msgs/msg/Detection2DArray"]
    sems = [t for t in info.topics if t.endswith("/ground_truth/semantic")]
    if not images or not gts:
        raise FleetError(f"bag {path} needs <camera>/image_raw[/compressed] and <camera>/ground_truth topics "
                         f"(record drives with `perception sim --bag`); it has {', '.join(sorted(info.topics))}")
    has_sem = {_camera(t, "ground_truth/semantic") for t in sems}
    acc = EvalAccumulator(score_thresh=score_thresh)
    perceptor.reset()
    results: dict[tuple[str, int], Any] = {}
    gt: dict[tuple[str, int], Any] = {}
    sem: dict[tuple[str, int], np.ndarray] = {}
    latencies: list[float] = []
    counts = {"images": 0, "scored": 0, "segmentation": 0}

    def score(key: tuple[str, int], final: bool = False) -> None:
        if key not in results or key not in gt or (key[0] in has_sem and key not in sem and not final):
            return
        r, g, s = results.pop(key), gt.pop(key), sem.pop(key, None)
        pred = r.segmentation
        both = pred is not None and s is not None and pred.shape == s.shape
        acc.add(sequence=key[0], gt=g, detections=r.detections, seg_pred=pred if both else None,
                seg_gt=s if both else None)
        counts["scored"] += 1
        counts["segmentation"] += int(both)

    for topic, msgtype, _, data in read_messages(path, images + gts + sems, check_order=False):
        if topic in images:
            cam = _camera(topic, "image_raw/compressed" if topic.endswith("/compressed") else "image_raw")
            msg = deserialize(data, msgtype)
            stamp = m.stamp_ns(msg.header)
            res = perceptor.process(FrameInput(cam, m.rgb_of(msg, msgtype), stamp * 1e-9))
            latencies.append(res.total_ms)
            counts["images"] += 1
            key = (cam, stamp)
            results[key] = res
        elif topic in gts:
            key = (_camera(topic, "ground_truth"), header_stamp_ns(data))
            gt[key] = m.ground_truth_from_msg(deserialize(data, msgtype))
        else:
            key = (_camera(topic, "ground_truth/semantic"), header_stamp_ns(data))
            sem[key] = np.array(m.image_array(deserialize(data, msgtype)))
        score(key)
    for key in sorted(set(results) & set(gt)):
        score(key, final=True)
    metrics = acc.compute()
    metrics["latency_ms"] = _latency(latencies)
    metrics["coverage"] = {"images": counts["images"], "scored": counts["scored"],
                           "with_segmentation": counts["segmentation"], "unscored_images": len(results)}
    return metrics


def run_task(task: BagTask, cfg: FleetConfig) -> dict[str, Any]:
    """Evaluate one bag (in a worker process); the result is small and JSON-able."""
    from perception.train.metrics import to_jsonable

    _crash_hook(task)
    t0 = time.perf_counter()
    if cfg.mode == "offline":
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
