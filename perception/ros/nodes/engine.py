"""Build (and release) the Perceptor a node runs, from its validated config. No rclpy here.

The backend is chosen by :mod:`perception.runtime.select` (``model.backend``: auto | tensorrt |
onnxruntime | torch, with fallback down that chain); each runtime is imported lazily, so a node
configured for one runtime never imports another. A checkpoint's ONNX model, INT8 copy and TensorRT
engine are made on first use (:func:`perception.deploy.ondemand.on_demand`) and cached.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from perception.deploy.ondemand import on_demand
from perception.ros.errors import RosError
from perception.ros.nodes.params import ModelConfig, PerceptionNodeConfig
from perception.runtime.select import ModelSource, RuntimeConfig, build_backend

if TYPE_CHECKING:
    from perception.pipeline.perceptor import Perceptor


def resolve_checkpoint(name_or_path: str) -> Path:
    """:func:`perception.weights.resolve_checkpoint`, failing with a RosError naming the parameter."""
    from perception.weights import resolve_checkpoint as resolve

    try:
        return resolve(name_or_path)
    except FileNotFoundError as e:
        raise RosError(f"model.checkpoint {name_or_path!r}: {e}") from e


def model_source(cfg: ModelConfig) -> tuple[Path | None, str]:
    """Which weights a node runs: (checkpoint stem, or None for an untrained network; a description).

    ``model.checkpoint`` wins; without it, the shipped checkpoint named ``model.name``; without that,
    a randomly initialised ``model.name`` network only if ``model.allow_untrained`` (plumbing tests
    and benchmarks), else a RosError saying which weights exist.
    """
    if cfg.checkpoint:
        path = resolve_checkpoint(cfg.checkpoint)
        return path, str(path)
    try:
        from perception.weights import weights_path

        path = weights_path(cfg.name)
        return path, f"{cfg.name} (shipped weights)"
    except FileNotFoundError as e:
        if not cfg.allow_untrained:
            raise RosError(f"model.checkpoint is empty and {e}") from e
        return None, f"{cfg.name} (UNTRAINED: random weights, model.allow_untrained is set)"


DEFAULT_INPUT_SIZE = (384, 640)  # (H, W) of an untrained network when no size is given


def runtime_config(cfg: ModelConfig) -> RuntimeConfig:
    """The node's model parameters as the runtime's :class:`RuntimeConfig`."""
    return RuntimeConfig(
        backend=cfg.backend, fallback=cfg.fallback, device=cfg.device, precision=cfg.precision, onnx=cfg.onnx,
        cache_dir=cfg.cache_dir, threads=cfg.threads, channels_last=cfg.channels_last, compile=cfg.compile,
        cuda_graph=cfg.cuda_graph,
    )


def model_source_for(cfg: ModelConfig) -> ModelSource:
    """Checkpoint (or an untrained network when allowed) and input size the node runs."""
    path, _ = model_source(cfg)
    size = cfg.input_size
    if path is not None:
        return on_demand(ModelSource(checkpoint=path, input_size=size))

    def untrained() -> object:
        import torch

        from perception.models.registry import build_model

        torch.manual_seed(cfg.seed)
        try:
            return build_model(cfg.name)
        except (KeyError, ValueError) as e:
            raise RosError(f"model.name {cfg.name!r}: {e}") from e

    return ModelSource(module_factory=untrained, input_size=DEFAULT_INPUT_SIZE if 0 in size else size)


def build_perceptor(cfg: PerceptionNodeConfig) -> Perceptor:
    """Load the backend (slow: weights, compilation) and wrap it in a Perceptor.

    Raises :class:`RosError` (bad checkpoint or model name) or the backend's ``BackendError``.
    """
    from perception.pipeline.perceptor import Perceptor, PerceptorConfig

    model, detection, out = cfg.model, cfg.detection, cfg.output
    backend = build_backend(model_source_for(model), runtime_config(model))
    pcfg = PerceptorConfig(
        score_thresh=detection.score_threshold, nms_iou=detection.nms_iou, max_det=detection.max_detections,
        vehicle_nms_iou=detection.vehicle_nms_iou,
        segmentation=out.segmentation or out.segmentation_color,
        attention=out.attention or out.object_attention,
        reset=cfg.temporal.policy,
    )
    if cfg.refine.enabled:
        from perception.pipeline.refine import RefiningPerceptor

        return RefiningPerceptor(backend, pcfg, replace(cfg.refine, batch=min(cfg.refine.batch, cfg.max_batch)))
    return Perceptor(backend, pcfg)


def release_perceptor(perceptor: Perceptor | None) -> None:
    """Free the backend's resources (model weights, GPU memory, engines)."""
    if perceptor is not None:
        perceptor.backend.close()


class ModelFileWatch:
    """Notices a model file replaced on disk while the node runs on the copy it loaded.

    Policy: keep running the loaded model (the runtimes hold it in memory, so inference is not
    affected) and warn, naming the file, until the node is re-activated (deactivate + activate, or a
    restart), which loads the new file. A reload behind the operator's back could swap in a
    half-copied or incompatible file mid-drive.
    """

    def __init__(self, paths: list[Path]) -> None:
        self._seen = {p: self._signature(p) for p in paths}

    @staticmethod
    def _signature(path: Path) -> tuple[int, int, int] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def changed(self) -> list[str]:
        """The watched files that changed (or vanished / appeared) since loading."""
        return [str(p) for p, sig in self._seen.items() if self._signature(p) != sig]


def model_files(checkpoint: Path | None, onnx: str) -> list[Path]:
    """The files a node's model was loaded from: the checkpoint's weights + metadata, the ONNX model."""
    paths = []
    if checkpoint is not None:
        stem = checkpoint.with_suffix("") if checkpoint.suffix in (".safetensors", ".json") else checkpoint
        paths += [p for p in (stem, stem.with_suffix(".safetensors"), stem.with_suffix(".json")) if p.is_file()]
    if onnx:
        paths.append(Path(onnx))
    return paths
