"""Making ONNX Runtime engines: an ONNX model optimised once for this CPU, saved with its key.

The runtime finds and checks them (:mod:`perception.runtime.ort_engine`); this module makes them, the
way :mod:`perception.deploy.engine` makes TensorRT engines. ``perception vehicle install`` calls it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from perception.runtime.model_info import read_model_info
from perception.runtime.onnx_backend import resolve_providers
from perception.runtime.ort_engine import (
    OrtEngineKey,
    OrtEnginePaths,
    check_ort_engine,
    ort_engine_key,
    ort_engine_paths,
    write_ort_sidecar,
)
from perception.runtime.tensorrt_engine import EngineError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrtBuildResult:
    paths: OrtEnginePaths
    key: OrtEngineKey
    built: bool  # False: a matching engine was in the cache already
    seconds: float


def build_ort_engine(onnx_path: str | Path, cache_dir: str | Path, providers: tuple[str, ...] = ("cpu",),
                     force: bool = False) -> OrtBuildResult:
    """The engine of ``onnx_path`` in ``cache_dir`` for this machine, optimising the model first when none
    matches. A stale or foreign engine under its name is replaced (the install is the place to remake it;
    the runtime refuses it)."""
    import onnxruntime as ort

    onnx_path, cache = Path(onnx_path), Path(cache_dir)
    info = read_model_info(onnx_path)
    chosen = tuple(resolve_providers(providers, ort.get_available_providers()))
    key = ort_engine_key(onnx_path, info.precision, chosen)
    paths = ort_engine_paths(cache, onnx_path, key)
    t0 = time.perf_counter()
    if not force and paths.engine.is_file():
        try:
            check_ort_engine(paths, key)
            return OrtBuildResult(paths, key, built=False, seconds=time.perf_counter() - t0)
        except EngineError as e:
            log.warning("%s: remaking it", e)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = paths.engine.with_suffix(".tmp.onnx")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(tmp)
    so.log_severity_level = 3
    try:
        ort.InferenceSession(str(onnx_path), sess_options=so, providers=list(chosen))
    except Exception as e:  # onnxruntime's own exception types
        tmp.unlink(missing_ok=True)
        raise EngineError(f"onnxruntime cannot optimise {onnx_path}: {e}") from e
    if not tmp.is_file():
        raise EngineError(f"onnxruntime wrote no optimised model for {onnx_path} (providers {chosen})")
    paths.sidecar.unlink(missing_ok=True)  # never a new engine next to an old sidecar
    tmp.replace(paths.engine)  # atomic: a crash never leaves half an engine under the real name
    write_ort_sidecar(paths, key, onnx=str(onnx_path), built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                      bytes=paths.engine.stat().st_size)
    seconds = time.perf_counter() - t0
    log.info("onnxruntime engine written: %s in %.1f s", paths.engine, seconds)
    return OrtBuildResult(paths, key, built=True, seconds=seconds)
