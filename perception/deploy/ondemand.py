"""Deployable files made on first use: the :class:`~perception.runtime.artifacts.ArtifactMaker` the runtime is handed.

The runtime runs ONNX models and engines but never makes them (it must not import this layer).
A node or a tool that wants ``backend: auto`` to work from a bare checkpoint wraps its model source
with :func:`on_demand`; the first run then exports the checkpoint into the cache
(``<cache>/onnx/<name>-<weights sha>-<H>x<W>-b<max batch>.onnx``), quantises it to INT8 next to it
when INT8 is asked for, and builds a missing TensorRT engine into the engine cache. Later runs find
the files and make nothing. Each file is written under a temporary name and renamed into place, so a
crash never leaves half a model under the real name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from perception.deploy.engine import build_engine
from perception.deploy.quantize import QuantizeConfig, quantized_copy
from perception.runtime.select import ModelSource
from perception.runtime.tensorrt_engine import EngineConfig

log = logging.getLogger(__name__)


def cached_export(checkpoint: Path, input_size: tuple[int, int], max_batch: int, cache_dir: Path) -> Path:
    """The fp32 ONNX model of ``checkpoint`` in ``cache_dir``, exported once (keyed by the weights' hash,
    input size and batch range)."""
    from perception.deploy.export import ExportConfig, export_checkpoint  # torch: imported on first export only
    from perception.models.checkpoint import read_checkpoint_info

    h, w = input_size
    sha = str(read_checkpoint_info(checkpoint)["sha256"])[:12]
    out = Path(cache_dir) / f"{Path(checkpoint).name}-{sha}-{h}x{w}-b{max_batch}.onnx"
    if not out.is_file():
        log.warning("exporting %s to %s (once; later runs reuse it)", checkpoint, out)
        tmp = out.with_suffix(".tmp.onnx")
        export_checkpoint(checkpoint, tmp, ExportConfig(input_size=(h, w), max_batch=max_batch))
        tmp.replace(out)
    return out


@dataclass(frozen=True)
class OnDemand:
    """Exports, quantises and builds engines once, into the runtime's cache (an ``ArtifactMaker``)."""

    def export(self, checkpoint: Path, input_size: tuple[int, int], max_batch: int, cache_dir: Path) -> Path:
        return cached_export(checkpoint, input_size, max_batch, cache_dir)

    def quantise(self, fp32_onnx: Path, activations: str) -> Path:
        return quantized_copy(fp32_onnx, QuantizeConfig(activations=activations))

    def build_engine(self, onnx: Path, cfg: EngineConfig, device_id: int) -> None:
        build_engine(onnx, cfg, device_id=device_id, progress=lambda m: log.info("tensorrt build: %s", m))


def on_demand(source: ModelSource) -> ModelSource:
    """``source`` whose missing ONNX models and engines are made on first use (see the module doc)."""
    return replace(source, artifacts=OnDemand())
