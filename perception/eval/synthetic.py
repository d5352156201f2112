"""Evaluate checkpoints on synthetic drives whose seeds training never saw.

Every frame goes through the same ``Perceptor`` the ROS node uses (letterbox, backend, decode,
mapping back to input pixels, per-camera temporal state), so the figures describe the product.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perception.models.checkpoint import checkpoint_input_size
from perception.pipeline.perceptor import FrameInput, PerceptionResult, Perceptor, PerceptorConfig, network_input
from perception.pipeline.refine import RefineConfig, RefiningPerceptor
from perception.runtime.base import Backend
from perception.sim.sequences import Sequence, load_or_render


@dataclass(frozen=True)
class EvalConfig:
    seeds: tuple[int, int] = (1000, 1008)  # [first, last) — disjoint from training seeds (< 1000)
    frames_per_sequence: int = 40
    width: int = 448  # rendered image size (the network letterboxes to its own input size)
    height: int = 256
    score_thresh: float = 0.3  # for flicker / post-occlusion recall (mAP uses all scores)
    cache_dir: str | None = "cache/sim"
    sim: tuple[tuple[str, Any], ...] = ()  # SimConfig overrides
    # False: reset a temporal network's memory at every frame -- the temporal path ablated at inference
    # (the same weights see no past), which isolates what the memory contributes
    memory: bool = True
    refine: RefineConfig | None = None  # attention-guided refinement (perception.pipeline.refine); None: off

    def sim_config(self) -> dict[str, Any]:
        return {**dict(self.sim), "width": self.width, "height": self.height}


def load_eval_sequences(cfg: EvalConfig) -> list[Sequence]:
    return [load_or_render(s, cfg.frames_per_sequence, cfg.sim_config(), cfg.cache_dir) for s in range(*cfg.seeds)]


def run_sequence(
    perceptor: Perceptor,
    seq: Sequence,
    camera_id: str = "cam0",
    on_result: Callable[[int, PerceptionResult], None] | None = None,
    memory: bool = True,
) -> list[PerceptionResult]:
    """Stream a drive through the perceptor (memory reset at its start; at every frame if not ``memory``)."""
    perceptor.reset(camera_id)
    results = []
    for t in range(len(seq)):
        cut = t == 0 or not memory
        r = perceptor.process(FrameInput(camera_id, seq.rgb[t], float(seq.stamps[t]), scene_cut=cut))
        results.append(r)
        if on_result is not None:
            on_result(t, r)
    return results


def evaluate_perceptor(
    perceptor: Perceptor, sequences: list[Sequence], score_thresh: float = 0.3, progress: bool = True,
    memory: bool = True,
) -> dict[str, Any]:
    """All metrics of ``perception.eval.metrics`` over ``sequences`` plus latency figures."""
    from tqdm import tqdm

    from perception.eval.metrics import EvalAccumulator

    acc = EvalAccumulator(score_thresh=score_thresh)
    latencies: list[float] = []
    for seq in tqdm(sequences, desc="evaluating drives", disable=not progress, unit="drive"):
        def add(t: int, r: PerceptionResult, seq: Sequence = seq) -> None:
            latencies.append(r.total_ms)
            acc.add(
                sequence=seq.seed, gt=seq.gt[t], detections=r.detections, seg_pred=r.segmentation,
                seg_gt=seq.semantic[t], attention=r.attention, instance=seq.instance[t],
            )

        run_sequence(perceptor, seq, on_result=add, memory=memory)
    metrics = acc.compute()
    lat = np.asarray(latencies)
    metrics["latency_ms"] = {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
                             "frames": len(lat)}
    return metrics


def evaluate_checkpoint(
    checkpoint: str | Path, cfg: EvalConfig, sequences: list[Sequence] | None = None, progress: bool = True,
    precision: str = "fp32",
) -> dict[str, Any]:
    from perception.runtime.torch_backend import TorchBackend, TorchBackendConfig

    meta_input = checkpoint_input_size(checkpoint)
    backend = TorchBackend(checkpoint, meta_input, TorchBackendConfig(precision=precision))
    metrics = evaluate_backend(backend, cfg, sequences, progress)
    metrics["checkpoint"] = str(checkpoint)
    metrics["model"] = backend.meta.get("name", "?")
    return metrics


def evaluate_backend(
    backend: Backend, cfg: EvalConfig, sequences: list[Sequence] | None = None, progress: bool = True
) -> dict[str, Any]:
    """Metrics of any runtime (torch, ONNX Runtime fp32/INT8, TensorRT) on the evaluation drives.

    ``backend`` is loaded here and closed afterwards."""
    t0 = time.perf_counter()
    with backend:
        pcfg = PerceptorConfig(score_thresh=0.05)  # low: mAP needs the full PR curve
        perceptor = Perceptor(backend, pcfg) if cfg.refine is None else RefiningPerceptor(backend, pcfg, cfg.refine)
        seqs = sequences if sequences is not None else load_eval_sequences(cfg)
        metrics = evaluate_perceptor(perceptor, seqs, cfg.score_thresh, progress, memory=cfg.memory)
        if isinstance(perceptor, RefiningPerceptor):
            metrics["refine"] = {**perceptor.totals, "pixel_ratio": perceptor.pixel_ratio}
    metrics["backend"] = backend.name
    metrics["eval_seconds"] = time.perf_counter() - t0
    metrics["eval_config"] = {"seeds": list(cfg.seeds), "frames_per_sequence": cfg.frames_per_sequence,
                              "size": [cfg.height, cfg.width], "score_thresh": cfg.score_thresh,
                              "memory": cfg.memory,
                              "refine": None if cfg.refine is None else asdict(cfg.refine)}
    return metrics


def memory_usage(checkpoint: str | Path, sequences: list[Sequence]) -> dict[str, float]:
    """What a temporal checkpoint's memory contributes on ``sequences`` (the memory-use probe), averaged over
    every frame after each drive's first (fp32 torch, the network's own input size):

    - ``memory_mass``: share of the temporal attention that goes to past frames (vs the current one);
    - ``entropy``: attention entropy relative to uniform (1.0 = a global average, no correspondence);
    - ``residual``: mean |gate * attended| / mean |features| (how much the memory moves the features);
    - ``feature_abs``: mean |features| of the stage the memory attends on.
    """
    import torch

    from perception.models.checkpoint import load_checkpoint
    from perception.models.stan import STAN

    model, _ = load_checkpoint(checkpoint)
    if not isinstance(model, STAN) or not model.is_temporal:
        raise ValueError(f"memory_usage needs a temporal checkpoint; {checkpoint} has no memory")
    h, w = checkpoint_input_size(checkpoint)
    sums = {"memory_mass": 0.0, "entropy": 0.0, "residual": 0.0, "feature_abs": 0.0}
    count = 0
    with torch.no_grad():
        for seq in sequences:
            memory, valid = model.init_state(1, h, w)
            for t in range(len(seq)):
                image = torch.from_numpy(network_input(seq.rgb[t], h, w)[0])[None]
                stats, memory, valid = model.memory_usage(image, memory, valid)
                if t == 0:
                    continue
                sums["memory_mass"] += float(1.0 - stats["slot_weights"][0, 0])
                sums["entropy"] += float(stats["entropy"][0])
                sums["residual"] += float(stats["residual"][0])
                sums["feature_abs"] += float(stats["feature_abs"][0])
                count += 1
    return {k: v / max(1, count) for k, v in sums.items()}
