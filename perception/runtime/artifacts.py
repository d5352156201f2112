"""The files the ONNX Runtime and TensorRT backends run, and who makes them when they are missing.

The runtime *runs* files: ONNX models (fp32, or INT8 QDQ) and TensorRT engines from the engine
cache. *Making* them — exporting a checkpoint, quantising it, building an engine — is the deploy
layer's job (:mod:`perception.deploy`), which sits above the runtime: it imports the runtime, never
the other way round. So that a backend can still be asked for a checkpoint it has no ONNX model or
engine of yet, whoever builds the backend hands in an :class:`ArtifactMaker` (dependency inversion):
:class:`perception.deploy.ondemand.OnDemand` exports, quantises and builds once into the cache.

Without a maker the runtime runs only what exists (an ``onnx=`` file, a prebuilt engine) and says
which command makes the rest (``perception export``, ``perception build-engine``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from perception.runtime.tensorrt_engine import EngineConfig


class ArtifactMaker(Protocol):
    """Makes the deployable files of a checkpoint on demand; each call returns at once when they exist."""

    def export(self, checkpoint: Path, input_size: tuple[int, int], max_batch: int, cache_dir: Path) -> Path:
        """The fp32 ONNX model of ``checkpoint`` at ``input_size`` (H, W), batch 1..``max_batch``, in
        ``cache_dir`` (exported once, keyed by the weights)."""
        ...

    def quantise(self, fp32_onnx: Path, activations: str) -> Path:
        """The INT8 QDQ copy of ``fp32_onnx`` (``activations`` "s8": TensorRT-compatible, "u8": CPU only)."""
        ...

    def build_engine(self, onnx: Path, cfg: EngineConfig, device_id: int) -> None:
        """Build the TensorRT engine of ``onnx`` under ``cfg`` into the engine cache (where
        :func:`perception.runtime.tensorrt_engine.locate_engine` finds it)."""
        ...
