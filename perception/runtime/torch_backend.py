"""PyTorch backend: eager (optionally bf16/fp16 autocast and channels_last) on CPU or CUDA."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perception.runtime.base import Backend, BackendError, TensorSpec

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class TorchBackendConfig:
    device: str = "cpu"  # "cpu" | "cuda" | "cuda:N"
    precision: str = "fp32"  # "fp32" | "bf16" | "fp16"
    channels_last: bool = False
    threads: int = 0  # 0: leave torch's default

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be fp32, bf16 or fp16, not {self.precision!r}")


class TorchBackend(Backend):
    """Runs a ``perception.models`` network. Give a checkpoint path or an ``nn.Module``."""

    name = "torch"

    def __init__(
        self,
        model: str | Path | torch.nn.Module,
        input_size: tuple[int, int],
        config: TorchBackendConfig | None = None,
    ) -> None:
        self._source = model
        self.height, self.width = input_size
        self.config = config or TorchBackendConfig()
        self.model: Any = None
        self.meta: dict[str, Any] = {}

    def load(self) -> None:
        import torch

        cfg = self.config
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(
                f"torch backend: device {cfg.device!r} requested but CUDA is not available; use device=cpu"
            )
        if isinstance(self._source, (str, Path)):
            from perception.models.checkpoint import CheckpointError, load_checkpoint

            try:
                model, self.meta = load_checkpoint(self._source, map_location="cpu")
            except CheckpointError as e:
                raise BackendError(f"torch backend: {e}") from e
        else:
            model = self._source
        if self.height % 32 or self.width % 32:
            raise BackendError(f"torch backend: input size {self.height}x{self.width} must be multiples of 32")
        model = model.eval().to(cfg.device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model = model

    def _require(self) -> Any:
        if self.model is None:
            raise BackendError("torch backend: infer() before load()")
        return self.model

    @property
    def input_specs(self) -> tuple[TensorSpec, ...]:
        model = self._require()
        specs = [TensorSpec("image", ("batch", 3, self.height, self.width))]
        if model.is_temporal:
            mem_shape = tuple(model.state_shape(self.height, self.width))  # (K, Cm, h, w) per sample
            specs.append(TensorSpec("memory", ("batch", *mem_shape)))
            specs.append(TensorSpec("memory_valid", ("batch", mem_shape[0])))
        return tuple(specs)

    @property
    def output_specs(self) -> tuple[TensorSpec, ...]:
        model = self._require()
        h8, w8, h4, w4 = self.height // 8, self.width // 8, self.height // 4, self.width // 4
        cfg = model.cfg
        specs = [
            TensorSpec("heatmap", ("batch", cfg.num_det_classes, h8, w8)),
            TensorSpec("box", ("batch", 4, h8, w8)),
            TensorSpec("seg", ("batch", cfg.num_seg_classes, h4, w4)),
            TensorSpec("attention", ("batch", 1, h8, w8)),
        ]
        if model.is_temporal:
            specs += [s for s in self.input_specs if s.name != "image"]
        return tuple(specs)

    @property
    def state_pairs(self) -> dict[str, str]:
        return {"memory": "memory", "memory_valid": "memory_valid"} if self._require().is_temporal else {}

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        model = self._require()
        cfg = self.config
        dev = torch.device(cfg.device)
        try:
            image = torch.from_numpy(np.ascontiguousarray(inputs["image"], dtype=np.float32)).to(dev)
        except KeyError as e:
            raise BackendError("torch backend: input 'image' missing") from e
        if cfg.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        kwargs = {}
        if model.is_temporal:
            kwargs = {k: torch.from_numpy(np.asarray(inputs[k], dtype=np.float32)).to(dev) for k in self.state_pairs}
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
        with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = model(image, **kwargs)
        return {k: v.float().cpu().numpy() for k, v in out.items()}

    def close(self) -> None:
        self.model = None
