"""The TensorRT engine cache as the runtime sees it: keys, paths, sidecars and staleness checks.

An engine is built once per (ONNX file, TensorRT version, GPU, precision, shapes) and reused: the
cache file name carries the digest of an :class:`EngineKey`, and a JSON sidecar next to it stores
the key and the model's :class:`~perception.runtime.model_info.ModelInfo`. Loading an engine
whose sidecar does not match the running TensorRT, GPU or ONNX file is refused with a message
naming the differing fields (a stale engine can crash or silently misbehave).

Building engines is not the runtime's job: :func:`perception.deploy.engine.build_engine` (and
``perception build-engine``) writes them where :func:`locate_engine` looks.

Which TensorRT: the full ``tensorrt`` package when installed (builds and runs on NVIDIA GPUs),
otherwise ``tensorrt_rtx`` (TensorRT for RTX): its builder parses ONNX and builds an engine with
no GPU at all, which is how CI proves every exported graph compiles.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from perception.core.files import sha256_file
from perception.runtime.base import BackendError
from perception.runtime.model_info import ModelInfo, read_model_info

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


@dataclass(frozen=True)
class CachedEngine:
    """Where the engine of an ONNX model under an :class:`EngineConfig` lives (it may not exist yet)."""

    paths: EnginePaths
    key: EngineKey
    info: ModelInfo


def locate_engine(onnx_path: str | Path, cfg: EngineConfig, trt: ModuleType, flavour: str,
                  device_id: int = 0) -> CachedEngine:
    """The cache entry of ``onnx_path`` for this TensorRT and GPU (hashes the ONNX file once)."""
    onnx_path = Path(onnx_path)
    info = read_model_info(onnx_path)
    key = engine_key(onnx_path, info, cfg, trt, flavour, device_id)
    return CachedEngine(EnginePaths.for_key(cfg.cache_path(), onnx_path, key), key, info)


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


def write_sidecar(paths: EnginePaths, key: EngineKey, info: ModelInfo, **extra: Any) -> None:
    """The sidecar :func:`read_sidecar` reads: the engine's key and model info (+ ``extra`` for people)."""
    record = {"key": asdict(key), "model_info": json.loads(info.to_json()), **extra}
    paths.sidecar.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


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
