"""TensorRT backend (TensorRT 10 name-based tensor API): engines from the cache, torch CUDA buffers.

Give it an ONNX model (the engine is taken from the cache; a missing one is built once by the
``builder`` it was handed — :class:`perception.deploy.ondemand.OnDemand` — or prebuilt with
``perception build-engine``) or a prebuilt ``.engine`` with its sidecar. A CUDA device is checked
for BEFORE any TensorRT object is created: TensorRT runtimes crash without one. Device buffers are torch
tensors (no pycuda); inference is ``execute_async_v3`` on a torch CUDA stream, optionally
captured once per batch size into a CUDA graph and replayed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perception.runtime.base import BackendError
from perception.runtime.model_info import ModelInfo, ModelInfoBackend
from perception.runtime.tensorrt_engine import (
    EngineConfig,
    EngineError,
    EnginePaths,
    check_engine,
    check_engine_for_runtime,
    import_tensorrt,
    locate_engine,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorRTConfig:
    engine: EngineConfig = field(default_factory=EngineConfig)
    device_id: int = 0
    cuda_graph: bool = False
    # builds a missing engine into the cache (ArtifactMaker.build_engine); None: that is an error (deployments prebuild)
    builder: Callable[[Path, EngineConfig, int], None] | None = None


def _cuda_or_fail(device_id: int) -> Any:
    try:
        import torch
    except ImportError as e:
        raise BackendError("tensorrt backend: needs torch (CUDA build) for device buffers and streams") from e
    if not torch.cuda.is_available():
        raise BackendError("tensorrt backend: no CUDA device is available (TensorRT needs an NVIDIA GPU); "
                           "use backend onnxruntime or torch, or auto to fall back")
    if device_id >= torch.cuda.device_count():
        raise BackendError(f"tensorrt backend: CUDA device {device_id} does not exist "
                           f"({torch.cuda.device_count()} present)")
    return torch


class TensorRTBackend(ModelInfoBackend):
    name = "tensorrt"

    def __init__(self, model: str | Path, config: TensorRTConfig | None = None) -> None:
        self.source = Path(model)
        self.config = config or TensorRTConfig()
        self.info: ModelInfo | None = None
        self.engine_path: Path | None = None
        self._torch: Any = None
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._trt_dtypes: dict[str, Any] = {}
        self._buffers: dict[int, dict[str, Any]] = {}  # batch -> name -> device tensor
        self._graphs: dict[int, Any] = {}
        self._graph_batch = 0
        self._bound_batch = 0  # batch size whose buffers the context points at
        self._batch_range = (1, 1)

    def load(self) -> None:
        cfg = self.config
        torch = _cuda_or_fail(cfg.device_id)  # before ANY TensorRT object exists
        trt, flavour = import_tensorrt(allow_rtx=True)
        if self.source.suffix == ".engine":
            paths = EnginePaths.for_engine(self.source)
            info = check_engine_for_runtime(paths, trt, flavour, cfg.device_id)
        else:
            entry = locate_engine(self.source, cfg.engine, trt, flavour, cfg.device_id)
            paths = entry.paths
            if not paths.engine.is_file() and cfg.builder is not None:
                cfg.builder(self.source, cfg.engine, cfg.device_id)
            if not paths.engine.is_file():
                raise EngineError(f"no cached engine for {self.source} in {paths.engine.parent} (precision "
                                  f"{cfg.engine.precision}, this GPU and TensorRT): prebuild it with `perception "
                                  "build-engine`, or run the backend through perception.deploy, which builds it")
            info = check_engine(paths, entry.key)
        self._torch = torch
        torch.cuda.set_device(cfg.device_id)
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)
        self._engine = self._runtime.deserialize_cuda_engine(paths.engine.read_bytes())
        if self._engine is None:
            self.close()
            raise BackendError(f"tensorrt backend: {paths.engine} cannot be deserialised (corrupt, or built by "
                               "another TensorRT version); delete it and rebuild with `perception build-engine`")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            self.close()
            raise BackendError("tensorrt backend: could not create an execution context (GPU memory?)")
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        expected = {s.name for s in info.input_specs} | {s.name for s in info.output_specs}
        if set(names) != expected:
            self.close()
            raise BackendError(f"tensorrt backend: engine tensors {sorted(names)} do not match its model info "
                               f"{sorted(expected)}; rebuild the engine")
        for n in names:
            self._trt_dtypes[n] = self._engine.get_tensor_dtype(n)
        lo, _, hi = self._engine.get_tensor_profile_shape("image", 0)
        self._batch_range = (int(lo[0]), int(hi[0]))
        self._stream = torch.cuda.Stream(device=cfg.device_id)
        self.info, self.engine_path = info, paths.engine
        log.info("tensorrt: %s loaded (batch %d..%d)", paths.engine.name, *self._batch_range)

    def _require(self) -> ModelInfo:
        if self._context is None:
            raise BackendError("tensorrt backend: infer() before load()")
        return self._info()

    def _torch_dtype(self, name: str) -> Any:
        torch = self._torch
        s = str(self._trt_dtypes[name]).rsplit(".", 1)[-1]
        table = {"FLOAT": torch.float32, "HALF": torch.float16, "INT32": torch.int32, "INT8": torch.int8,
                 "BOOL": torch.bool, "BF16": torch.bfloat16, "INT64": torch.int64}
        if s not in table:
            raise BackendError(f"tensorrt backend: tensor {name!r} has unsupported dtype {s}")
        return table[s]

    def _bind(self, batch: int) -> dict[str, Any]:
        """Device buffers for ``batch`` (allocated once per batch size); shapes and addresses are set on the
        context only when the batch size differs from the previous call's."""
        torch, ctx, info = self._torch, self._context, self._require()
        if batch not in self._buffers:
            dev = torch.device("cuda", self.config.device_id)
            bufs = {}
            for spec in info.input_specs:
                shape = (batch, *(int(d) for d in spec.shape[1:]))
                bufs[spec.name] = torch.empty(shape, dtype=self._torch_dtype(spec.name), device=dev)
                ctx.set_input_shape(spec.name, shape)
            for spec in info.output_specs:
                shape = tuple(ctx.get_tensor_shape(spec.name))
                bufs[spec.name] = torch.empty(shape, dtype=self._torch_dtype(spec.name), device=dev)
            self._buffers[batch] = bufs
        bufs = self._buffers[batch]
        if self._bound_batch != batch:
            for spec in info.input_specs:
                ctx.set_input_shape(spec.name, tuple(bufs[spec.name].shape))
            for name, t in bufs.items():
                ctx.set_tensor_address(name, t.data_ptr())
            self._bound_batch = batch
        return bufs

    def infer(self, inputs: dict[str, np.ndarray], skip: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
        # ``skip`` is not used: an engine computes what it was built with (an engine per output set: not yet)
        info = self._require()
        torch = self._torch
        if "image" not in inputs:
            raise BackendError("tensorrt backend: input 'image' missing")
        batch = int(np.shape(inputs["image"])[0])
        lo, hi = self._batch_range
        if not lo <= batch <= hi:
            raise BackendError(f"tensorrt backend: batch {batch} is outside the engine's optimisation profile "
                               f"{lo}..{hi}; rebuild with a larger max_batch")
        bufs = self._bind(batch)
        with torch.cuda.stream(self._stream):
            for spec in info.input_specs:
                if spec.name not in inputs:
                    raise BackendError(f"tensorrt backend: input {spec.name!r} missing")
                src = torch.from_numpy(np.ascontiguousarray(inputs[spec.name], dtype=np.float32))
                bufs[spec.name].copy_(src, non_blocking=False)
            if self.config.cuda_graph:
                self._graph_launch(batch)
            elif not self._context.execute_async_v3(self._stream.cuda_stream):
                raise BackendError("tensorrt backend: execute_async_v3 failed (see the TensorRT log)")
            out = {s.name: bufs[s.name].float().cpu() for s in info.output_specs}
        self._stream.synchronize()
        return {k: v.numpy() for k, v in out.items()}

    def _graph_launch(self, batch: int) -> None:
        torch = self._torch
        if batch not in self._graphs or self._graph_batch != batch:
            # a graph is valid only for the shapes and addresses it was captured with: a new batch size
            # reconfigured the context, so capture again rather than replay a stale graph
            self._graphs.clear()
            # one plain run first (TensorRT allocates lazily), then capture the same launch
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise BackendError("tensorrt backend: execute_async_v3 failed (see the TensorRT log)")
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self._stream):
                self._context.execute_async_v3(self._stream.cuda_stream)
            self._graphs[batch] = graph
            self._graph_batch = batch
        self._graphs[batch].replay()

    def close(self) -> None:
        # release in reverse order of creation: graphs, buffers, context, engine, runtime
        self._graphs.clear()
        self._buffers.clear()
        self._bound_batch = 0
        self._context = None
        self._engine = None
        self._runtime = None
        self._stream = None
        self.info = None
