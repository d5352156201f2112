"""TensorRT engine build and cache (TensorRT 10 API; TensorRT-RTX for GPU-less builds).

An engine is built once per (ONNX file, TensorRT version, GPU, precision, shapes) and reused: the
cache file name carries the digest of an :class:`EngineKey`, and a JSON sidecar next to it stores
the key and the model's :class:`~perception.runtime.model_info.ModelInfo`. Loading an engine
whose sidecar does not match the running TensorRT, GPU or ONNX file is refused with a message
naming the differing fields (a stale engine can crash or silently misbehave).

Which TensorRT: the full ``tensorrt`` package when installed (builds and runs on NVIDIA GPUs),
otherwise ``tensorrt_rtx`` (TensorRT for RTX): its builder parses ONNX and builds an engine with
no GPU at all, which is how CI proves every exported graph compiles. TensorRT-RTX networks are
strongly typed: fp32 or QDQ INT8 models, no fp16 builder flag.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from perception.core.files import sha256_file
from perception.runtime.base import BackendError
from perception.runtime.model_info import ModelInfo, read_model_info

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")


class EngineError(BackendError):
    """An engine could not be built, or a cached engine does not fit this machine or model."""


def import_tensorrt(allow_rtx: bool = True) -> tuple[ModuleType, str]:
    """``(module, flavour)``: full TensorRT if importable, else TensorRT-RTX (if allowed)."""
    errors = []
    try:
        import tensorrt

        return tensorrt, "tensorrt"
    except (ImportError, OSError) as e:  # OSError: the stub wheel without its shared libraries
        errors.append(f"tensorrt: {e}")
    if allow_rtx:
        try:
            import tensorrt_rtx

            return tensorrt_rtx, "tensorrt_rtx"
        except (ImportError, OSError) as e:
            errors.append(f"tensorrt_rtx: {e}")
    raise EngineError(
        "no TensorRT available (" + "; ".join(errors) + "): install TensorRT 10 (JetPack on Jetson, "
        "`pip install tensorrt` with NVIDIA's index on x86) or `pip install tensorrt-rtx` to build without a GPU"
    )


def cuda_device_identity(device_id: int = 0) -> tuple[str, str]:
    """``(GPU name, compute capability)`` via torch, or ``("no-gpu", "none")`` without CUDA."""
    try:
        import torch

        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(device_id)
            return str(p.name), f"{p.major}.{p.minor}"
    except ImportError:
        pass
    return "no-gpu", "none"


@dataclass(frozen=True)
class EngineConfig:
    precision: str = "fp16"  # "fp32" | "fp16" | "int8" (int8 needs a QDQ model: `perception export --int8`)
    opt_batch: int = 1  # the batch size TensorRT tunes for (within 1..max_batch)
    max_batch: int = 0  # 0: the model's exported maximum
    workspace_mb: int = 2048
    optimization_level: int = 3  # TensorRT builder optimisation level 0..5
    cache_dir: str = ""  # "" -> $PERCEPTION_CACHE/engines (default ~/.cache/perception/engines)
    timing_cache: bool = True  # keep a timing cache in cache_dir (faster rebuilds)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise EngineError(f"engine precision must be one of {PRECISIONS}, not {self.precision!r}")
        if self.opt_batch < 1 or self.max_batch < 0:
            raise EngineError("opt_batch must be >= 1 and max_batch >= 0")

    def cache_path(self) -> Path:
        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        return Path(os.environ.get("PERCEPTION_CACHE", "~/.cache/perception")).expanduser() / "engines"


Profile = tuple[str, tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # (input name, min, opt, max shape)


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; any change means a rebuild."""

    onnx_sha256: str
    trt_flavour: str
    trt_version: str
    device_name: str
    compute_capability: str
    precision: str
    profiles: tuple[Profile, ...]

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def differences(self, other: dict[str, Any]) -> list[str]:
        mine = json.loads(json.dumps(asdict(self)))  # tuples -> lists, as stored in JSON
        return [f"{k}: engine has {other.get(k)!r}, this run needs {v!r}" for k, v in mine.items() if other.get(k) != v]


def profiles_for(info: ModelInfo, opt_batch: int, max_batch: int) -> tuple[Profile, ...]:
    mx = max_batch or info.max_batch
    if mx > info.max_batch:
        raise EngineError(
            f"max_batch {mx} exceeds the batch range the ONNX model was exported for (1..{info.max_batch})")
    if not 1 <= opt_batch <= mx:
        raise EngineError(f"opt_batch {opt_batch} must lie in 1..{mx}")
    out: list[Profile] = []
    for spec in info.input_specs:
        per = tuple(int(d) for d in spec.shape[1:])
        out.append((spec.name, (1, *per), (opt_batch, *per), (mx, *per)))
    return tuple(out)


def engine_key(onnx_path: Path, info: ModelInfo, cfg: EngineConfig, trt: ModuleType, flavour: str,
               device_id: int = 0) -> EngineKey:
    name, cc = cuda_device_identity(device_id)
    return EngineKey(
        onnx_sha256=sha256_file(onnx_path), trt_flavour=flavour, trt_version=str(trt.__version__),
        device_name=name, compute_capability=cc, precision=cfg.precision,
        profiles=profiles_for(info, cfg.opt_batch, cfg.max_batch),
    )


@dataclass(frozen=True)
class EnginePaths:
    engine: Path
    sidecar: Path

    @classmethod
    def for_key(cls, cache_dir: Path, onnx_path: Path, key: EngineKey) -> EnginePaths:
        stem = f"{onnx_path.stem}.{key.precision}.{key.trt_flavour}.{key.digest()}"
        return cls(cache_dir / f"{stem}.engine", cache_dir / f"{stem}.json")

    @classmethod
    def for_engine(cls, engine: Path) -> EnginePaths:
        return cls(engine, engine.with_suffix(".json"))


@dataclass
class BuildResult:
    paths: EnginePaths
    key: EngineKey
    info: ModelInfo
    built: bool  # False: reused from the cache
    seconds: float
    phases: list[str] = field(default_factory=list)


def read_sidecar(paths: EnginePaths) -> tuple[dict[str, Any], ModelInfo]:
    if not paths.sidecar.is_file():
        raise EngineError(f"engine {paths.engine} has no sidecar {paths.sidecar.name}: it was not built by "
                          "`perception build-engine`; rebuild it from the ONNX model")
    try:
        d = json.loads(paths.sidecar.read_text(encoding="utf-8"))
        return dict(d["key"]), ModelInfo.from_json(json.dumps(d["model_info"]), str(paths.sidecar))
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise EngineError(
            f"engine sidecar {paths.sidecar} is unreadable ({e}); delete it and the engine, rebuild") from e


def check_engine(paths: EnginePaths, expected: EngineKey) -> ModelInfo:
    """The engine's ModelInfo if it was built for ``expected``; else an EngineError naming the differences."""
    if not paths.engine.is_file():
        raise EngineError(f"engine {paths.engine} does not exist; build it with `perception build-engine`")
    stored, info = read_sidecar(paths)
    diffs = expected.differences(stored)
    if diffs:
        raise EngineError(f"engine {paths.engine} is stale, refusing to load it: " + "; ".join(diffs)
                          + ". Rebuild it with `perception build-engine` on this machine")
    return info


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
                 device_id: int = 0, build_missing: bool = True) -> BuildResult:
    """The cached engine for ``onnx_path`` under ``cfg``, building it first if it is not cached
    (``build_missing=False``: a missing engine is an EngineError instead — deployments prebuild)."""
    cfg = cfg or EngineConfig()
    onnx_path = Path(onnx_path)
    info = read_model_info(onnx_path)
    trt, flavour = import_tensorrt(allow_rtx)
    if cfg.precision == "int8" and info.precision != "int8":
        raise EngineError(f"precision int8 needs a QDQ (explicitly quantised) model, but {onnx_path} is "
                          f"{info.precision}; make one with `perception export --int8`")
    if info.precision == "int8" and not info.extra.get("quantization", {}).get("tensorrt_compatible", True):
        raise EngineError(f"{onnx_path} was quantised with uint8 activations (CPU only); TensorRT needs "
                          "`perception export --int8` with the default s8 activations")
    if flavour == "tensorrt_rtx" and cfg.precision == "fp16":
        raise EngineError("TensorRT-RTX builds strongly typed networks: use precision fp32 or int8 (QDQ) here; "
                          "fp16 engines need the full TensorRT (on a GPU machine)")
    key = engine_key(onnx_path, info, cfg, trt, flavour, device_id)
    cache = cfg.cache_path()
    paths = EnginePaths.for_key(cache, onnx_path, key)
    t0 = time.perf_counter()
    if not force and paths.engine.is_file():
        check_engine(paths, key)
        log.info("engine cache hit: %s", paths.engine)
        return BuildResult(paths, key, info, built=False, seconds=time.perf_counter() - t0)
    if not build_missing:
        raise EngineError(f"no cached engine for {onnx_path} in {cache} (precision {cfg.precision}, this GPU and "
                          "TensorRT); prebuild it with `perception build-engine`")

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
    sidecar = {"key": asdict(key), "model_info": json.loads(info.to_json()), "onnx": str(onnx_path),
               "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "bytes": paths.engine.stat().st_size}
    paths.sidecar.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    if use_timing_cache:
        timing_path.write_bytes(memoryview(config.get_timing_cache().serialize()))
    seconds = time.perf_counter() - t0
    note(f"engine written: {paths.engine} ({paths.engine.stat().st_size / 1e6:.1f} MB) in {seconds:.1f} s")
    return BuildResult(paths, key, info, built=True, seconds=seconds, phases=phases)


def check_engine_for_runtime(paths: EnginePaths, trt: ModuleType, flavour: str, device_id: int = 0) -> ModelInfo:
    """For an engine given without its ONNX file: refuse it unless it was built by this TensorRT for this GPU."""
    if not paths.engine.is_file():
        raise EngineError(f"engine {paths.engine} does not exist; build it with `perception build-engine`")
    stored, info = read_sidecar(paths)
    name, cc = cuda_device_identity(device_id)
    here = {"trt_flavour": flavour, "trt_version": str(trt.__version__), "device_name": name,
            "compute_capability": cc}
    diffs = [f"{k}: engine has {stored.get(k)!r}, this machine has {v!r}"
             for k, v in here.items() if stored.get(k) != v]
    if diffs:
        raise EngineError(f"engine {paths.engine} is stale, refusing to load it: " + "; ".join(diffs)
                          + ". Rebuild it with `perception build-engine` on this machine")
    return info
