"""Building TensorRT engines (TensorRT 10 API; TensorRT-RTX for GPU-less builds) into the engine cache.

The runtime finds and validates cached engines (:mod:`perception.runtime.tensorrt_engine`); this
module makes them, once per (ONNX file, TensorRT version, GPU, precision, shapes), at the path
:func:`~perception.runtime.tensorrt_engine.locate_engine` names, with the JSON sidecar the runtime
checks before loading. ``perception build-engine`` prebuilds engines for deployment; the TensorRT
backend builds a missing one on first use only when it is handed :class:`perception.deploy.ondemand.OnDemand`.

TensorRT-RTX networks are strongly typed: fp32 or QDQ INT8 models, no fp16 builder flag.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from perception.runtime.model_info import ModelInfo
from perception.runtime.tensorrt_engine import (
    EngineConfig,
    EngineError,
    EngineKey,
    EnginePaths,
    check_engine,
    import_tensorrt,
    locate_engine,
    write_sidecar,
)

log = logging.getLogger(__name__)


@dataclass
class BuildResult:
    paths: EnginePaths
    key: EngineKey
    info: ModelInfo
    built: bool  # False: reused from the cache
    seconds: float
    phases: list[str] = field(default_factory=list)


def _progress_monitor(trt: ModuleType, report: Callable[[str], None]) -> Any:
    class Monitor(trt.IProgressMonitor):  # type: ignore[name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.depth = 0

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.depth = self.depth + 1 if parent_phase else 0
            report(f"{'  ' * self.depth}{phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # returning False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            self.depth = max(0, self.depth - 1)

    return Monitor()


def build_engine(onnx_path: str | Path, cfg: EngineConfig | None = None, *, force: bool = False,
                 progress: Callable[[str], None] | None = None, allow_rtx: bool = True,
                 device_id: int = 0) -> BuildResult:
    """The cached engine for ``onnx_path`` under ``cfg``, building it first if it is not cached (or if
    ``force``). A cached engine whose sidecar does not match is refused (EngineError), not replaced."""
    cfg = cfg or EngineConfig()
    onnx_path = Path(onnx_path)
    trt, flavour = import_tensorrt(allow_rtx)
    entry = locate_engine(onnx_path, cfg, trt, flavour, device_id)
    key, paths, info = entry.key, entry.paths, entry.info
    if cfg.precision == "int8" and info.precision != "int8":
        raise EngineError(f"precision int8 needs a QDQ (explicitly quantised) model, but {onnx_path} is "
                          f"{info.precision}; make one with `perception export --int8`")
    if info.precision == "int8" and not info.extra.get("quantization", {}).get("tensorrt_compatible", True):
        raise EngineError(f"{onnx_path} was quantised with uint8 activations (CPU only); TensorRT needs "
                          "`perception export --int8` with the default s8 activations")
    if flavour == "tensorrt_rtx" and cfg.precision == "fp16":
        raise EngineError("TensorRT-RTX builds strongly typed networks: use precision fp32 or int8 (QDQ) here; "
                          "fp16 engines need the full TensorRT (on a GPU machine)")
    cache = cfg.cache_path()
    t0 = time.perf_counter()
    if not force and paths.engine.is_file():
        check_engine(paths, key)
        log.info("engine cache hit: %s", paths.engine)
        return BuildResult(paths, key, info, built=False, seconds=time.perf_counter() - t0)

    phases: list[str] = []

    def note(msg: str) -> None:
        phases.append(msg)
        if progress is not None:
            progress(msg)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    note(f"parsing {onnx_path.name} with {flavour} {trt.__version__}")
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise EngineError(f"{flavour} cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_mb << 20)
    config.builder_optimization_level = cfg.optimization_level
    if flavour == "tensorrt":
        if cfg.precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)  # layers left unquantised run in fp16
        if cfg.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # weakly typed network with Q/DQ: explicit quantisation
    profile = builder.create_optimization_profile()
    for name, lo, opt, hi in key.profiles:
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    timing_path = cache / f"timing.{flavour}.{trt.__version__}.cache"
    use_timing_cache = cfg.timing_cache and flavour == "tensorrt"  # a no-op (deprecated) in TensorRT-RTX
    if use_timing_cache:
        blob = timing_path.read_bytes() if timing_path.is_file() else b""
        timing = config.create_timing_cache(blob)
        config.set_timing_cache(timing, ignore_mismatch=False)
    if progress is not None:
        config.progress_monitor = _progress_monitor(trt, note)
    note(f"building {cfg.precision} engine, batch 1..{key.profiles[0][3][0]} (opt {cfg.opt_batch})")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"{flavour} failed to build an engine from {onnx_path} (see the TensorRT log above)")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = paths.engine.with_suffix(".engine.tmp")
    tmp.write_bytes(memoryview(serialized))
    tmp.replace(paths.engine)  # atomic: a crashed build never leaves a half engine under the real name
    write_sidecar(paths, key, info, onnx=str(onnx_path), built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  bytes=paths.engine.stat().st_size)
    if use_timing_cache:
        timing_path.write_bytes(memoryview(config.get_timing_cache().serialize()))
    seconds = time.perf_counter() - t0
    note(f"engine written: {paths.engine} ({paths.engine.stat().st_size / 1e6:.1f} MB) in {seconds:.1f} s")
    return BuildResult(paths, key, info, built=True, seconds=seconds, phases=phases)
