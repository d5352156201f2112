"""ONNX export of the stan networks, temporal memory as plain graph inputs and outputs.

``torch.onnx.export(dynamo=True)`` at opset 18 traces the network once; the batch axis stays
dynamic (1..max_batch) and the image size is fixed (TensorRT and ONNX Runtime plan better for a
fixed size, and the letterbox makes every camera fit it). Tensor names are the networks' own
(:mod:`perception.models.contract`; state outputs are ``memory_next`` / ``memory_valid_next``),
and the runtime's :class:`~perception.runtime.model_info.ModelInfo` record (class names, input
size, normalisation, weights hash, state shapes, batch range) is embedded so a runtime needs
nothing but the file.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from perception.core.classes import DETECTION_NAMES, SEMANTIC_NAMES
from perception.deploy.errors import ExportError
from perception.models.contract import head_outputs, state_output_name
from perception.models.stan import STAN, check_input_size
from perception.runtime.model_info import METADATA_KEY, ModelInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportConfig:
    input_size: tuple[int, int]  # (H, W), multiples of 32
    max_batch: int = 8
    opset: int = 18

    def __post_init__(self) -> None:
        check_input_size(*self.input_size)
        if not 1 <= self.max_batch <= 256:
            raise ExportError(f"max_batch must be in 1..256, not {self.max_batch}")
        if self.opset < 17:
            raise ExportError(f"opset {self.opset} is too old; use 17 or newer (18 is tested)")


class _GraphModule(nn.Module):
    """The network with positional inputs and a tuple of outputs in contract order."""

    def __init__(self, model: STAN) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(*inputs)
        return tuple(out[k] for k in self.model.output_names)


def model_info_for(model: STAN, cfg: ExportConfig, weights_sha256: str = "") -> ModelInfo:
    h, w = cfg.input_size
    states: dict[str, tuple[int, ...]] = {}
    if model.is_temporal:
        k = model.state_shape(h, w)
        states = {"memory": tuple(k), "memory_valid": (k[0],)}
    return ModelInfo(
        name=model.name,
        input_size=(h, w),
        max_batch=cfg.max_batch,
        det_classes=tuple(DETECTION_NAMES[: model.cfg.num_det_classes]),
        seg_classes=tuple(SEMANTIC_NAMES[: model.cfg.num_seg_classes]),
        state_shapes=states,
        weights_sha256=weights_sha256,
        mean=tuple(model.cfg.mean),  # type: ignore[arg-type]
        std=tuple(model.cfg.std),  # type: ignore[arg-type]
        opset=cfg.opset,
        exporter=f"torch {torch.__version__} (dynamo)",
        det_head=model.cfg.det_head,
        fine_level=model.cfg.fine_level,
    )


def export_onnx(model: STAN, out: str | Path, cfg: ExportConfig, weights_sha256: str = "") -> ModelInfo:
    """Export ``model`` (eval mode, CPU, fp32) to ``out``; returns the embedded :class:`ModelInfo`."""
    import onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().float().to("cpu")
    h, w = cfg.input_size
    # trace at batch 2: a batch of 1 would let the tracer specialise the batch axis to a constant
    # (max_batch 1 exports a static batch of 1)
    b = 1 if cfg.max_batch == 1 else 2
    example: list[torch.Tensor] = [torch.rand(b, 3, h, w)]
    if model.is_temporal:
        example += list(model.init_state(b, h, w))
    dynamic: dict[str, Any] | None = None
    if cfg.max_batch > 1:
        batch = torch.export.Dim("batch", min=1, max=cfg.max_batch)
        dynamic = {"inputs": tuple({0: batch} for _ in example)}
    output_names = [*head_outputs(model.cfg.det_head)] + [state_output_name(n) for n in model.input_names[1:]]
    info = model_info_for(model, cfg, weights_sha256)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # exporter chatter (missing torchvision ops, deprecations)
            program = torch.onnx.export(
                _GraphModule(model).eval(),
                tuple(example),
                dynamo=True,
                opset_version=cfg.opset,
                input_names=list(model.input_names),
                output_names=output_names,
                dynamic_shapes=dynamic,
                verbose=False,
            )
    except Exception as e:  # the exporter raises many types; all mean "this graph did not export"
        raise ExportError(f"exporting {model.name} at {h}x{w} failed: {e}") from e
    if program is None:
        raise ExportError(f"exporting {model.name}: the exporter returned no program")
    proto = program.model_proto
    del proto.metadata_props[:]
    for key, value in {
        METADATA_KEY: info.to_json(),
        "model_name": info.name,
        "input_size": f"{h}x{w}",
        "weights_sha256": weights_sha256,
    }.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "perception export"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:
        raise ExportError(f"the exported graph of {model.name} fails the ONNX checker: {e}") from e
    onnx.save(proto, str(out))
    log.info("exported %s (%dx%d, batch 1..%d) to %s in %.1f s", model.name, h, w, cfg.max_batch, out,
             time.perf_counter() - t0)
    return info


def export_checkpoint(checkpoint: str | Path, out: str | Path, cfg: ExportConfig | None = None,
                      max_batch: int = 8) -> ModelInfo:
    """Export a saved checkpoint; the input size defaults to the size it was trained at."""
    from perception.models.checkpoint import checkpoint_input_size, load_checkpoint

    model, meta = load_checkpoint(checkpoint)
    if cfg is None:
        cfg = ExportConfig(input_size=checkpoint_input_size(checkpoint), max_batch=max_batch)
    if not isinstance(model, STAN):
        raise ExportError(f"{checkpoint} holds a {type(model).__name__}, not a stan network")
    return export_onnx(model, out, cfg, weights_sha256=str(meta.get("sha256", "")))


def onnx_summary(info: ModelInfo, path: Path) -> dict[str, Any]:
    """A short JSON-able description for logs and CLI output."""
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "name": info.name,
        "input_size": list(info.input_size),
        "batch": [1, info.max_batch],
        "precision": info.precision,
        "temporal": info.is_temporal,
        "inputs": [s.name for s in info.input_specs],
        "outputs": [s.name for s in info.output_specs],
    }


def streamed_parity(model: STAN, onnx_path: str | Path, images: list[torch.Tensor]) -> dict[str, float]:
    """Max |torch - ONNX Runtime| per output over ``images`` (each (B, 3, H, W)) streamed in order, each
    runtime's own state fed back to it — the way the pipeline runs the network."""
    import numpy as np

    from perception.runtime.onnx_backend import OnnxRuntimeBackend

    model = model.eval().float()
    errors: dict[str, float] = {}
    with OnnxRuntimeBackend(onnx_path) as ort_backend:
        pairs = ort_backend.state_pairs
        b = images[0].shape[0]
        ort_state = ort_backend.initial_state(b)
        torch_state = {k: torch.from_numpy(v) for k, v in ort_state.items()}
        for image in images:
            with torch.inference_mode():
                ref = model(image, **torch_state)
            got = ort_backend.infer({"image": image.numpy(), **ort_state})
            for name in model.output_names:
                out_name = pairs.get(name, name)
                err = float(np.abs(got[out_name] - ref[name].numpy()).max())
                errors[out_name] = max(errors.get(out_name, 0.0), err)
            ort_state = {k: got[o] for k, o in pairs.items()}
            torch_state = {k: ref[k] for k in pairs}
    return errors
