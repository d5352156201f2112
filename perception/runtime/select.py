"""Choosing a runtime, and falling back down the chain when it fails.

    backend: auto | tensorrt | onnxruntime | torch

``BACKENDS`` is the table (name -> availability check + factory); runtimes are imported only by
the factory that needs them. ``auto`` tries the fastest available first: on a CUDA device
TensorRT, then ONNX Runtime, then torch; on the CPU ONNX Runtime, then torch (measured:
``perception bench runtime``). With ``fallback`` on, a backend that fails to load, or faults while
running, is closed, logged, recorded in :attr:`FallbackBackend.events` (the node publishes them in
its diagnostics) and the next one in the chain takes over — the same frame is re-run on it, and the
temporal state carries over because every backend shares one I/O contract.

The runtime runs files; it does not make them. A checkpoint with no ONNX model (or INT8 model, or
engine) yet runs on ONNX Runtime / TensorRT only when :class:`ModelSource` carries an
:class:`~perception.runtime.artifacts.ArtifactMaker` — :func:`perception.deploy.ondemand.on_demand`
attaches one that exports, quantises and builds once into the cache directory, keyed by the weights'
hash, input size and batch range. Without one, those backends need ``onnx=`` (an exported model)
and prebuilt engines, and say so; torch runs the checkpoint either way.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perception.runtime.artifacts import ArtifactMaker
from perception.runtime.base import Backend, BackendError, TensorSpec, WrappingBackend

log = logging.getLogger(__name__)

BACKEND_NAMES = ("auto", "tensorrt", "onnxruntime", "torch")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


def default_cache() -> Path:
    """``$PERCEPTION_CACHE`` or ``~/.cache/perception``: on-demand exports (onnx/) and engines (engines/)."""
    return Path(os.environ.get("PERCEPTION_CACHE", "~/.cache/perception")).expanduser()


@dataclass(frozen=True)
class RuntimeConfig:
    backend: str = "auto"
    fallback: bool = True  # on a load failure or run-time fault, continue with the next backend of the chain
    device: str = "cpu"  # cpu | cuda | cuda:N
    precision: str = "fp32"  # auto | fp32 | bf16 | fp16 | int8 (each backend maps it to what it supports; auto:
    # tensorrt fp16, onnxruntime fp32, torch by CPU/GPU capability -- perception.core.hardware)
    onnx: str = ""  # an exported model (fp32 or QDQ int8); empty: export the checkpoint on demand
    cache_dir: str = ""  # exports and engines; empty: $PERCEPTION_CACHE or ~/.cache/perception
    max_batch: int = 8  # batch range of on-demand exports and engines
    threads: int = 0  # CPU threads for torch / onnxruntime; 0: the runtime's default
    channels_last: bool = False  # torch
    compile: bool = False  # torch.compile (torch)
    cuda_graph: bool = False  # torch / tensorrt on CUDA

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_NAMES:
            raise BackendError(f"backend must be one of {BACKEND_NAMES}, not {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise BackendError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise BackendError(f"device must be cpu, cuda or cuda:N, not {self.device!r}")

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def device_id(self) -> int:
        return int(self.device.split(":", 1)[1]) if ":" in self.device else 0

    def cache_path(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache()


@dataclass(frozen=True)
class ModelSource:
    """What to run: a checkpoint (torch; ONNX / engines through ``artifacts``) or an in-memory network.
    An exported ONNX model is given as :attr:`RuntimeConfig.onnx`."""

    checkpoint: Path | None = None
    input_size: tuple[int, int] = (0, 0)  # (H, W) for torch and exports; 0: the checkpoint's / ONNX's
    module_factory: Callable[[], Any] | None = None  # untrained networks (plumbing, benchmarks): torch only
    artifacts: ArtifactMaker | None = None  # makes missing ONNX models / engines (perception.deploy.ondemand)


@dataclass(frozen=True)
class FallbackEvent:
    backend: str
    phase: str  # "load" | "infer"
    error: str


# -- which ONNX model ------------------------------------------------------------------------------
def _maker(source: ModelSource, what: str, command: str) -> ArtifactMaker:
    if source.artifacts is None:
        raise BackendError(f"{what} is needed and the runtime only runs existing files: make it with `{command}` "
                           "and pass it as onnx=, or build the backend through perception.deploy (on_demand), "
                           "which makes it once into the cache")
    return source.artifacts


def onnx_model(source: ModelSource, cfg: RuntimeConfig, int8: bool, activations: str = "s8") -> Path:
    """The ONNX model the ONNX Runtime / TensorRT backends run: ``cfg.onnx``, else the checkpoint's export
    (made by ``source.artifacts``); with ``int8``, its INT8 QDQ copy when ``cfg.onnx`` is not one already.

    ``activations`` of an on-demand INT8 model: "s8" (TensorRT-compatible) or "u8" (ONNX Runtime's x86
    fast path, 1.85x the s8 model's speed here)."""
    if cfg.onnx:
        path = Path(cfg.onnx)
        if int8:
            from perception.runtime.model_info import read_model_info

            if read_model_info(path).precision != "int8":
                maker = _maker(source, f"an INT8 model of {path}", "perception export --int8")
                return maker.quantise(path, activations)
        return path
    if source.checkpoint is None:
        raise BackendError("this backend runs ONNX models: give runtime onnx= (an exported model) or a checkpoint "
                           "to export; an untrained in-memory network runs on torch only")
    from perception.models.checkpoint import checkpoint_input_size

    ckpt = source.checkpoint
    maker = _maker(source, f"an ONNX model of {ckpt}", f"perception export --checkpoint {ckpt}")
    size = source.input_size if 0 not in source.input_size else checkpoint_input_size(ckpt)
    out = maker.export(Path(ckpt), size, cfg.max_batch, cfg.cache_path() / "onnx")
    return maker.quantise(out, activations) if int8 else out


def _runs_onnx(source: ModelSource, cfg: RuntimeConfig) -> str | None:
    """Why an ONNX backend cannot get a model (None: it can)."""
    if cfg.onnx:
        return None
    if source.checkpoint is None:
        return "needs an ONNX model or a checkpoint"
    if source.artifacts is None:
        return "needs an exported ONNX model (onnx=; `perception export`) or on-demand export (perception.deploy)"
    return None


# -- the table -----------------------------------------------------------------------------------
def _module_available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def _tensorrt_unavailable(source: ModelSource, cfg: RuntimeConfig) -> str | None:
    if not cfg.cuda:
        return "needs device=cuda"
    if not _cuda_available():
        return "no CUDA device"
    if not (_module_available("tensorrt") or _module_available("tensorrt_rtx")):
        return "TensorRT is not installed"
    return _runs_onnx(source, cfg)


def _make_tensorrt(source: ModelSource, cfg: RuntimeConfig) -> Backend:
    from perception.runtime.tensorrt_backend import TensorRTBackend, TensorRTConfig
    from perception.runtime.tensorrt_engine import EngineConfig

    precision = {"bf16": "fp16", "auto": "fp16"}.get(cfg.precision, cfg.precision)
    onnx = onnx_model(source, cfg, int8=precision == "int8")
    engine = EngineConfig(precision=precision, max_batch=0, cache_dir=str(cfg.cache_path() / "engines"))
    builder = source.artifacts.build_engine if source.artifacts is not None else None
    return TensorRTBackend(onnx, TensorRTConfig(engine=engine, device_id=cfg.device_id, cuda_graph=cfg.cuda_graph,
                                                builder=builder))


def _onnxruntime_unavailable(source: ModelSource, cfg: RuntimeConfig) -> str | None:
    if not _module_available("onnxruntime"):
        return "onnxruntime is not installed"
    if (why := _runs_onnx(source, cfg)) is not None:
        return why
    if cfg.cuda:
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return "device=cuda but this onnxruntime has no CUDA provider (install onnxruntime-gpu)"
    return None


def _make_onnxruntime(source: ModelSource, cfg: RuntimeConfig) -> Backend:
    from perception.runtime.onnx_backend import OnnxRuntimeBackend, OnnxRuntimeConfig

    providers = ("cuda", "cpu") if cfg.cuda else ("cpu",)
    # on a CPU, an on-demand INT8 model uses u8 activations: ONNX Runtime's x86 fast path
    onnx = onnx_model(source, cfg, int8=cfg.precision == "int8", activations="s8" if cfg.cuda else "u8")
    # engines optimised for this machine by `perception vehicle install` (checked before use: ort_engine)
    return OnnxRuntimeBackend(onnx, OnnxRuntimeConfig(providers=providers, threads=cfg.threads,
                                                      device_id=cfg.device_id,
                                                      engine_cache=str(cfg.cache_path() / "ort")))


def _torch_unavailable(source: ModelSource, cfg: RuntimeConfig) -> str | None:
    if not _module_available("torch"):
        return "torch is not installed"
    if source.checkpoint is None and source.module_factory is None:
        return "needs a checkpoint (an ONNX model alone runs on onnxruntime / tensorrt)"
    if cfg.cuda and not _cuda_available():
        return "no CUDA device"
    return None


def _make_torch(source: ModelSource, cfg: RuntimeConfig) -> Backend:
    from perception.runtime.torch_backend import TorchBackend, TorchBackendConfig

    model: Any = source.checkpoint
    if model is None and source.module_factory is not None:
        model = source.module_factory()
    size = source.input_size
    if 0 in size:
        if source.checkpoint is None:
            raise BackendError("torch backend: an in-memory network needs an input size")
        from perception.models.checkpoint import checkpoint_input_size

        size = checkpoint_input_size(source.checkpoint)
    precision = {"int8": "fp32"}.get(cfg.precision, cfg.precision)  # torch has no int8 path here
    if precision == "fp16" and not cfg.cuda:
        precision = "bf16"  # CPU autocast is bf16
    tcfg = TorchBackendConfig(device=cfg.device, precision=precision, channels_last=cfg.channels_last,
                              threads=cfg.threads, compile=cfg.compile, cuda_graph=cfg.cuda_graph and cfg.cuda)
    return TorchBackend(model, size, tcfg)


@dataclass(frozen=True)
class BackendEntry:
    unavailable: Callable[[ModelSource, RuntimeConfig], str | None]  # None: can run; else why not
    make: Callable[[ModelSource, RuntimeConfig], Backend]


BACKENDS: dict[str, BackendEntry] = {
    "tensorrt": BackendEntry(_tensorrt_unavailable, _make_tensorrt),
    "onnxruntime": BackendEntry(_onnxruntime_unavailable, _make_onnxruntime),
    "torch": BackendEntry(_torch_unavailable, _make_torch),
}
FALLBACK_ORDER = ("tensorrt", "onnxruntime", "torch")  # fastest first; auto starts at the top


def backend_chain(source: ModelSource, cfg: RuntimeConfig) -> list[str]:
    """Backends to try, in order. An explicitly requested backend is always tried first."""
    if cfg.backend == "auto":
        chain = [n for n in FALLBACK_ORDER if BACKENDS[n].unavailable(source, cfg) is None]
        if not chain:
            reasons = {n: BACKENDS[n].unavailable(source, cfg) for n in FALLBACK_ORDER}
            raise BackendError(f"no backend can run this model: {reasons}")
        return chain if cfg.fallback else chain[:1]
    start = FALLBACK_ORDER.index(cfg.backend)
    rest = [n for n in FALLBACK_ORDER[start + 1 :] if BACKENDS[n].unavailable(source, cfg) is None]
    return [cfg.backend, *rest] if cfg.fallback else [cfg.backend]


class FallbackBackend(WrappingBackend):
    """Runs the first backend of the chain that loads; on a fault moves down the chain."""

    name = "fallback"

    def __init__(self, source: ModelSource, cfg: RuntimeConfig) -> None:
        self.source, self.cfg = source, cfg
        self.chain = backend_chain(source, cfg)
        self.events: list[FallbackEvent] = []
        self._contract: tuple[TensorSpec, ...] | None = None
        self.active: Backend | None = None
        self.active_name = ""
        self._next = 0

    def _record(self, name: str, phase: str, error: BaseException) -> None:
        ev = FallbackEvent(name, phase, f"{type(error).__name__}: {error}")
        self.events.append(ev)
        log.error("backend %s failed to %s: %s", name, phase, ev.error)

    def _load_next(self) -> None:
        while self._next < len(self.chain):
            name = self.chain[self._next]
            self._next += 1
            reason = BACKENDS[name].unavailable(self.source, self.cfg)
            try:
                if reason is not None:
                    raise BackendError(f"{name} is unavailable: {reason}")
                backend = BACKENDS[name].make(self.source, self.cfg)
                backend.load()
                self._check_contract(name, backend)
            except Exception as e:  # any failure to come up means: try the next runtime
                self._record(name, "load", e)
                continue
            if self.events:
                log.warning("running on backend %s after %d failure(s)", name, len(self.events))
            self.active, self.active_name = backend, name
            return
        tried = "; ".join(f"{e.backend} ({e.phase}): {e.error}" for e in self.events)
        raise BackendError(f"no backend could run the model (tried {', '.join(self.chain)}): {tried}")

    def _check_contract(self, name: str, backend: Backend) -> None:
        """A replacement must take the same inputs as the first backend (the pipeline letterboxes to that
        size and holds state of those shapes); else it is closed and counts as a failure to load."""
        specs = backend.input_specs
        if self._contract is None:
            self._contract = specs
        elif specs != self._contract:
            backend.close()
            raise BackendError(f"{name} takes inputs {[(s.name, s.shape) for s in specs]}, but the pipeline runs "
                               f"{[(s.name, s.shape) for s in self._contract]}: export model.onnx at the "
                               "checkpoint's input size (or set model.input_height/width to the ONNX model's)")

    def load(self) -> None:
        if self.active is not None:
            return  # already loaded (build_backend loads; a later `with` must not load twice)
        self._next = 0
        self._load_next()

    def wrapped(self) -> Backend:
        if self.active is None:
            raise BackendError("infer() before load()")
        return self.active

    def infer(self, inputs: dict[str, np.ndarray], skip: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
        while True:
            backend = self.wrapped()
            try:
                return backend.infer(inputs, skip)
            except Exception as e:
                if not self.cfg.fallback:
                    raise
                self._record(self.active_name, "infer", e)
                failed = backend
                self.active = None
                failed.close()
                self._load_next()  # raises BackendError when the chain is exhausted

    def fail_over(self, error: BaseException) -> bool:
        """Give up the active backend for a fault its caller detected (e.g. non-finite outputs) and load
        the next one of the chain. False (the active backend kept) when fallback is off or none is left."""
        if not self.cfg.fallback or self.active is None or self._next >= len(self.chain):
            return False
        self._record(self.active_name, "infer", error)
        failed, self.active = self.active, None
        failed.close()
        self._load_next()  # raises BackendError when every remaining backend fails to load
        return True

    def close(self) -> None:
        if self.active is not None:
            self.active.close()
            self.active = None

    def status(self) -> dict[str, str]:
        """Key/values for diagnostics: requested and active backend, fallbacks and the last error."""
        active = self.active_name if self.active is not None else "none"  # none: the chain is exhausted
        out = {"backend.requested": self.cfg.backend, "backend.active": active,
               "backend.chain": ",".join(self.chain), "backend.fallbacks": str(len(self.events))}
        if self.events:
            last = self.events[-1]
            out["backend.last_error"] = f"{last.backend} {last.phase}: {last.error}"[:300]
        if self.active is not None:  # what the running backend adds (e.g. backend.engine)
            out.update({k: v for k, v in self.active.status().items() if k not in out})
        return out


def build_backend(source: ModelSource, cfg: RuntimeConfig) -> FallbackBackend:
    """A loaded backend for ``source`` chosen by ``cfg`` (raises BackendError when nothing can run it)."""
    backend = FallbackBackend(source, cfg)
    backend.load()
    return backend
