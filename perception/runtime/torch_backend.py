"""PyTorch backend: CPU or CUDA; bf16/fp16 autocast, channels_last, optional torch.compile, CUDA graphs.

On the CPU it does not spin against other processes: intra-op threads are sized to the CPUs this
process gets (:func:`perception.core.hardware.available_cpus`), and importing ``perception`` sets a
passive OpenMP wait policy before torch loads OpenMP (:func:`perception.core.hardware.apply_passive_openmp`).

torch.compile runs with inductor freezing OFF: freezing returns a wrong temporal state output
(measured max |diff| ~0.7 against eager). CUDA graphs (``cuda_graph=True``, CUDA only) capture one
graph per batch size on first use and replay it; inputs are copied into static buffers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perception.models.contract import IMAGE_INPUT, STATE_INPUTS, state_output_name
from perception.runtime.base import Backend, BackendError, TensorSpec
from perception.runtime.model_info import head_output_specs

if TYPE_CHECKING:
    import torch


def torch_precision(precision: str, device: str) -> str:
    """``precision`` (auto | fp32 | bf16 | fp16) made concrete for ``device`` with torch's view of the
    GPU (bf16 support); :func:`perception.core.hardware.resolve_precision` decides. ValueError if invalid."""
    import torch

    from perception.core.hardware import resolve_precision

    on_cuda = device.startswith("cuda") and torch.cuda.is_available()
    return resolve_precision(precision, device, cuda_bf16=on_cuda and torch.cuda.is_bf16_supported())


@dataclass(frozen=True)
class TorchBackendConfig:
    device: str = "cpu"  # "cpu" | "cuda" | "cuda:N"
    precision: str = "fp32"  # "auto" (by CPU/GPU capability, perception.core.hardware) | "fp32" | "bf16" | "fp16"
    channels_last: bool = False
    threads: int = 0  # intra-op CPU threads; 0: torch's default capped at the CPUs this process may use
    compile: bool = False  # torch.compile (inductor, freezing off); first call compiles (15-30 s on CPU)
    cuda_graph: bool = False  # capture/replay CUDA graphs per batch size (CUDA only)

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, not {self.precision!r}")
        if self.cuda_graph and not self.device.startswith("cuda"):
            raise ValueError("cuda_graph needs device=cuda")


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
        self._run: Any = None  # the callable infer() uses: the model, or its compiled form
        self._graphs: dict[int, tuple[Any, list[Any], dict[str, Any]]] = {}  # batch -> (graph, static in, static out)
        self.precision = self.config.precision  # the concrete precision once loaded ("auto" resolved)
        self.threads = self.config.threads  # the intra-op threads once loaded (0 resolved)

    def load(self) -> None:
        import torch

        from perception.core.hardware import available_cpus

        cfg = self.config
        # 0: torch's setting (OMP_NUM_THREADS, or the cores it saw at start), but never more threads than the
        # CPUs this process gets now (affinity, cgroup quota): surplus OpenMP threads only wait on the others
        self.threads = cfg.threads if cfg.threads > 0 else min(torch.get_num_threads(), available_cpus())
        if self.threads != torch.get_num_threads():
            torch.set_num_threads(self.threads)
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(
                f"torch backend: device {cfg.device!r} requested but CUDA is not available; use device=cpu"
            )
        try:
            self.precision = torch_precision(cfg.precision, cfg.device)
        except ValueError as e:
            raise BackendError(f"torch backend: {e}") from e
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
        self._run = model
        if cfg.compile:
            import torch._inductor.config as inductor_config

            inductor_config.freezing = False  # freezing corrupts the temporal state output
            self._run = torch.compile(model, dynamic=False)

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
        cfg = model.cfg
        specs = head_output_specs(cfg.det_head, self.height, self.width, cfg.num_det_classes, cfg.num_seg_classes,
                                  cfg.fine_level)
        if model.is_temporal:
            specs += [TensorSpec(state_output_name(s.name), s.shape) for s in self.input_specs if s.name != IMAGE_INPUT]
        return tuple(specs)

    @property
    def state_pairs(self) -> dict[str, str]:
        if not self._require().is_temporal:
            return {}
        return {name: state_output_name(name) for name in STATE_INPUTS}

    def infer(self, inputs: dict[str, np.ndarray], skip: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
        import torch

        # ``skip`` is not used: the segmentation head is 0.2 % of the network, and the neck before it also makes
        # the maps the attention and detection decoders are sized by

        self._require()
        dev = torch.device(self.config.device)
        try:
            image = torch.from_numpy(np.ascontiguousarray(inputs["image"], dtype=np.float32)).to(dev)
        except KeyError as e:
            raise BackendError("torch backend: input 'image' missing") from e
        tensors = {"image": image}
        for k in self.state_pairs:
            tensors[k] = torch.from_numpy(np.asarray(inputs[k], dtype=np.float32)).to(dev)
        return {k: v.float().cpu().numpy() for k, v in self.infer_tensors(tensors).items()}

    @property
    def torch_device(self) -> str:
        """The device the network runs on; :meth:`infer_tensors` takes and returns tensors there."""
        return self.config.device

    def device_prepost(self, input_h: int, input_w: int) -> Any:
        """Pre/post-processing for this backend's device (:class:`perception.models.prepost.DevicePrePost`)."""
        from perception.models.prepost import DevicePrePost

        return DevicePrePost(input_h, input_w, self.config.device)

    def infer_tensors(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """:meth:`infer` on tensors already on :attr:`torch_device` (pre/post-processing on the device,
        ``models.prepost``): same names, outputs stay on the device (state under its output names)."""
        import torch

        model = self._require()
        cfg = self.config
        image = inputs["image"]
        if cfg.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        kwargs = {k: inputs[k] for k in self.state_pairs} if model.is_temporal else {}
        if cfg.cuda_graph:
            out = self._graph_run(image, kwargs)
        else:
            with torch.inference_mode(), self._autocast(torch.device(cfg.device).type):
                out = self._run(image, **kwargs)
        pairs = self.state_pairs
        return {pairs.get(k, k): v for k, v in out.items()}

    def _autocast(self, device_type: str) -> Any:
        import torch

        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        return torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def _graph_run(self, image: torch.Tensor, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Replay the CUDA graph captured for this batch size (capturing it on first use)."""
        import torch

        values = [image, *state.values()]
        batch = int(image.shape[0])
        if batch not in self._graphs:
            static_in = [v.clone() for v in values]
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream), torch.inference_mode(), self._autocast("cuda"):
                for _ in range(3):  # warm-up on a side stream, as CUDA graph capture requires
                    self._run(*static_in)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), torch.inference_mode(), self._autocast("cuda"):
                out = self._run(*static_in)
            self._graphs[batch] = (graph, static_in, out)
        graph, static_in, static_out = self._graphs[batch]
        for dst, src in zip(static_in, values, strict=True):
            dst.copy_(src)
        graph.replay()
        return {k: v.clone() for k, v in static_out.items()}

    def close(self) -> None:
        self._graphs.clear()
        self._run = None
        self.model = None
