"""The ONNX Runtime engine cache: an ONNX model optimised once for this CPU, keyed and checked like TensorRT's.

ONNX Runtime optimises a graph every time a session is created (constant folding, fusions, layouts that
depend on the CPU's instruction set). ``perception vehicle install`` does that once and saves the result
(``SessionOptions.optimized_model_filepath``) as the CPU's "engine", next to a JSON sidecar holding its
:class:`OrtEngineKey`: the source model's sha256, the onnxruntime version, the device (CPU model and the
instruction-set flags the optimiser uses), the precision and the execution providers. ONNX Runtime's own
documentation warns that a model saved at the full optimisation level is tied to the hardware it was made
on, so a saved graph whose sidecar does not match this machine and runtime is refused, naming the
differing fields (:func:`check_ort_engine`).

Making the files is the deploy layer's job (:func:`perception.deploy.ort_engine.build_ort_engine`); the
runtime only finds and checks them (:class:`~perception.runtime.onnx_backend.OnnxRuntimeBackend` with
``engine_cache``). Nothing here imports onnxruntime at module level.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from perception.core.files import sha256_file
from perception.core.hardware import cpu_flags, cpu_model_name
from perception.runtime.tensorrt_engine import EngineError

# instruction-set flags that change the kernels ONNX Runtime picks (and so what a saved graph assumes)
ISA_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "avx_vnni", "fma")
ENGINE_FORMAT = 1


def cpu_identity() -> str:
    """``<model name> [isa flags]``: what an ONNX Runtime engine optimised on this CPU depends on."""
    flags = cpu_flags()
    return f"{cpu_model_name()} [{' '.join(f for f in ISA_FLAGS if f in flags)}]"


def ort_version() -> str:
    import onnxruntime as ort

    return str(ort.__version__)


@dataclass(frozen=True)
class OrtEngineKey:
    """Everything a saved ONNX Runtime graph depends on; any difference means it is refused."""

    onnx_sha256: str
    ort_version: str
    device: str  # cpu_identity() (or the GPU for the CUDA provider)
    precision: str  # the source model's: fp32 | int8
    providers: tuple[str, ...]
    format: int = ENGINE_FORMAT

    def differences(self, stored: dict[str, Any]) -> list[str]:
        mine = json.loads(json.dumps(asdict(self)))
        return [f"{k}: engine has {stored.get(k)!r}, this run needs {v!r}" for k, v in mine.items()
                if stored.get(k) != v]


@dataclass(frozen=True)
class OrtEnginePaths:
    engine: Path
    sidecar: Path


def ort_engine_key(onnx_path: Path, precision: str, providers: tuple[str, ...], sha256: str = "") -> OrtEngineKey:
    return OrtEngineKey(onnx_sha256=sha256 or sha256_file(onnx_path), ort_version=ort_version(),
                        device=cpu_identity(), precision=precision, providers=tuple(providers))


def ort_engine_paths(cache_dir: Path, onnx_path: Path, key: OrtEngineKey) -> OrtEnginePaths:
    """Named by the source model's hash only: a saved graph from another machine or runtime version lands
    under the same name and is REFUSED by the sidecar check (never silently skipped)."""
    stem = f"{onnx_path.stem}.{key.precision}.ort.{key.onnx_sha256[:16]}"
    return OrtEnginePaths(cache_dir / f"{stem}.onnx", cache_dir / f"{stem}.json")


def write_ort_sidecar(paths: OrtEnginePaths, key: OrtEngineKey, **extra: Any) -> None:
    record = {"key": asdict(key), **extra}
    tmp = paths.sidecar.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    tmp.replace(paths.sidecar)


def read_ort_sidecar(paths: OrtEnginePaths) -> dict[str, Any]:
    if not paths.sidecar.is_file():
        raise EngineError(f"ONNX Runtime engine {paths.engine} has no sidecar {paths.sidecar.name}: it was not "
                          "made by `perception vehicle install`; delete it and run the install again")
    try:
        return dict(json.loads(paths.sidecar.read_text(encoding="utf-8"))["key"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise EngineError(f"ONNX Runtime engine sidecar {paths.sidecar} is unreadable ({e}); delete it and the "
                          "engine, then run `perception vehicle install` again") from e


def check_ort_engine(paths: OrtEnginePaths, expected: OrtEngineKey) -> None:
    """Nothing if the saved graph was made for ``expected``; else an EngineError naming the differences."""
    if not paths.engine.is_file():
        raise EngineError(f"ONNX Runtime engine {paths.engine} does not exist; make it with "
                          "`perception vehicle install` on this machine")
    diffs = expected.differences(read_ort_sidecar(paths))
    if diffs:
        raise EngineError(f"ONNX Runtime engine {paths.engine} is stale or from another machine, refusing to load "
                          "it: " + "; ".join(diffs) + ". Run `perception vehicle install` on this machine")
