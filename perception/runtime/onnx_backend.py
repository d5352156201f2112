"""ONNX Runtime backend: CPU everywhere; CUDA / TensorRT execution providers with onnxruntime-gpu.

Runs a model written by ``perception export`` (fp32 or INT8 QDQ). Everything the pipeline needs
(specs, state pairs, input size) comes from the ModelInfo embedded in the file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perception.runtime.base import BackendError
from perception.runtime.model_info import ModelInfo, ModelInfoBackend, read_model_info

log = logging.getLogger(__name__)

# provider preference when "auto": fastest first; only those the installed onnxruntime has are used
_PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_SHORT = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


@dataclass(frozen=True)
class OnnxRuntimeConfig:
    providers: tuple[str, ...] = ("auto",)  # "auto" or any of: tensorrt, cuda, cpu (or full provider names)
    threads: int = 0  # intra-op threads; 0: onnxruntime's default (one per core)
    device_id: int = 0
    trt_cache_dir: str = ""  # TensorRT EP engine cache (empty: next to the model)
    # busy-wait of idle worker threads between runs: off, so a node sharing the CPU with other processes (and
    # torch) does not burn cores while waiting for the next frame; on shaves a little latency when alone
    spin: bool = False
    # a directory of ONNX Runtime engines (graphs optimised once for this CPU, :mod:`perception.runtime.ort_engine`,
    # made by `perception vehicle install`): one found there is checked and loaded instead of re-optimising the
    # model; one made for another machine / onnxruntime is refused (logged, the model itself is loaded instead,
    # or BackendError with ``require_engine``). Empty: no engine cache.
    engine_cache: str = ""
    require_engine: bool = False


def resolve_providers(requested: tuple[str, ...], available: list[str]) -> list[str]:
    """Map short names to onnxruntime provider names, keep the available ones, CPU always last."""
    if not requested or requested == ("auto",):
        wanted = list(_PROVIDER_ORDER)
    else:
        wanted = [_SHORT.get(p.lower(), p) for p in requested]
    unknown = [p for p in wanted if p not in _PROVIDER_ORDER and p not in available]
    if unknown:
        raise BackendError(f"onnxruntime: unknown execution provider(s) {unknown}; use tensorrt, cuda or cpu")
    chosen = [p for p in wanted if p in available]
    if not chosen:
        raise BackendError(
            f"onnxruntime: none of the requested providers {wanted} is available (installed: {available}); "
            "install onnxruntime-gpu for cuda/tensorrt or request cpu"
        )
    return chosen


def pruned_model(model: Any, keep: set[str]) -> Any:
    """A copy of the onnx ModelProto ``model`` computing only the graph outputs ``keep``: the nodes and initialisers
    none of them depends on go, and so do the other outputs (the graph inputs stay: they are the contract). Names a
    node's subgraph (If / Loop body) reads from the outer graph count as its inputs."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    needed = set(keep)
    kept = []
    for node in reversed(g.node):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
            needed.update(_subgraph_inputs(node))
    del g.node[:]
    g.node.extend(reversed(kept))
    outputs = [o for o in g.output if o.name in keep]
    del g.output[:]
    g.output.extend(outputs)
    inits = [t for t in g.initializer if t.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
    infos = [v for v in g.value_info if v.name in needed]
    del g.value_info[:]
    g.value_info.extend(infos)
    return out


def _subgraph_inputs(node: Any) -> set[str]:
    names: set[str] = set()
    for a in node.attribute:
        for sub in [a.g, *a.graphs] if a.HasField("g") else list(a.graphs):
            for n in sub.node:
                names.update(i for i in n.input if i)
                names.update(_subgraph_inputs(n))
    return names


class OnnxRuntimeBackend(ModelInfoBackend):
    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, config: OnnxRuntimeConfig | None = None) -> None:
        self.path = Path(onnx_path)
        self.config = config or OnnxRuntimeConfig()
        self.info: ModelInfo | None = None
        self.session: Any = None
        self.providers: list[str] = []
        self._output_names: list[str] = []
        self.engine_state = "none"  # "loaded <file>" | "refused: why" | "missing" | "none" (no engine cache)
        # sessions of the graph pruned to fewer outputs (``infer``'s ``skip``), made on first use: the skipped set ->
        # (session, its output names)
        self._pruned: dict[frozenset[str], tuple[Any, list[str]]] = {}
        self._session_args: dict[str, Any] = {}
        self._source: Path | None = None
        self._skippable: frozenset[str] = frozenset()  # outputs a pruned graph may leave out (none: never prune)

    def _engine(self, providers: list[str], precision: str) -> Path | None:
        """The saved engine to load (checked against this machine), or None: optimise the model at load."""
        from perception.runtime.ort_engine import check_ort_engine, ort_engine_key, ort_engine_paths
        from perception.runtime.tensorrt_engine import EngineError

        cfg = self.config
        if not cfg.engine_cache:
            self.engine_state = "none"
            return None
        key = ort_engine_key(self.path, precision, tuple(providers))
        paths = ort_engine_paths(Path(cfg.engine_cache).expanduser(), self.path, key)
        try:
            check_ort_engine(paths, key)
        except EngineError as e:
            self.engine_state = "missing" if not paths.engine.is_file() else f"refused: {e}"
            if cfg.require_engine:
                raise
            if paths.engine.is_file():
                log.error("%s; loading %s itself (slower start)", e, self.path.name)
            return None
        self.engine_state = f"loaded {paths.engine.name}"
        return paths.engine

    def status(self) -> dict[str, str]:
        return {"backend.active": self.name, "backend.engine": self.engine_state}

    def load(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendError("onnxruntime backend: `onnxruntime` is not installed (pip install onnxruntime)") from e
        info = read_model_info(self.path)
        cfg = self.config
        providers = resolve_providers(cfg.providers, ort.get_available_providers())
        options: list[dict[str, Any]] = []
        for p in providers:
            if p == "TensorrtExecutionProvider":
                cache = cfg.trt_cache_dir or str(self.path.parent / "trt_ep_cache")
                options.append({"device_id": cfg.device_id, "trt_engine_cache_enable": True,
                                "trt_engine_cache_path": cache, "trt_timing_cache_enable": True,
                                "trt_fp16_enable": info.precision != "int8",
                                "trt_int8_enable": info.precision == "int8"})
            elif p == "CUDAExecutionProvider":
                options.append({"device_id": cfg.device_id})
            else:
                options.append({})
        engine = self._engine(providers, info.precision)
        so = ort.SessionOptions()
        # a saved engine is optimised already (for this CPU: checked): loading it skips the optimiser
        so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL if engine is not None
                                       else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        if cfg.threads > 0:
            so.intra_op_num_threads = cfg.threads
            so.inter_op_num_threads = 1
        so.log_severity_level = 3
        if not cfg.spin:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(engine or self.path), sess_options=so, providers=providers,
                                                provider_options=options)
            self._session_args = {"sess_options": so, "providers": providers, "provider_options": options}
            self._source = engine or self.path
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise BackendError(f"onnxruntime backend: cannot load {self.path}: {e}") from e
        names = {i.name for i in self.session.get_inputs()}
        expected = {s.name for s in info.input_specs}
        if names != expected:
            self.close()
            raise BackendError(f"onnxruntime backend: {self.path} has inputs {sorted(names)} but its metadata "
                               f"describes {sorted(expected)}; re-export the model")
        self.info = info
        self._output_names = [o.name for o in self.session.get_outputs()]
        self.providers = list(self.session.get_providers())
        # float models on the CPU only (:meth:`_session_for` says why); state outputs never
        prunable = self.providers == ["CPUExecutionProvider"] and info.precision != "int8"
        self._skippable = frozenset(set(self._output_names) - set(info.state_pairs.values())) if prunable \
            else frozenset()
        log.info("onnxruntime: %s on %s", self.path.name, ", ".join(self.providers))

    def _require(self) -> ModelInfo:
        if self.session is None:
            raise BackendError("onnxruntime backend: infer() before load()")
        return self._info()

    def _session_for(self, skip: frozenset[str]) -> tuple[Any, list[str]]:
        """The session computing every output but ``skip`` (state outputs are never skipped); the full one when
        nothing can be skipped. A pruned one is made the first time a set is asked for (the graph loaded again,
        pruned, optimised: about as long as ``load``) and kept.

        Float models on the CPU only. With a GPU provider a pruned graph would build its own TensorRT / CUDA engine in
        the middle of a run (minutes on a Jetson) to save little. An INT8 QDQ model's pruned graph fuses its
        quantised convolutions differently (measured on the real set: scores up to 0.04 and boxes up to 12 px apart
        from the full graph's), and the detections must not depend on whether someone subscribes to the
        segmentation."""
        gone = skip & self._skippable
        if not gone or len(gone) == len(self._output_names):
            return self.session, self._output_names
        if gone not in self._pruned:
            import onnx
            import onnxruntime as ort

            assert self._source is not None
            full = onnx.load(str(self._source))
            model = pruned_model(full, {n for n in self._output_names if n not in gone})
            try:
                session = ort.InferenceSession(model.SerializeToString(), **self._session_args)
            except Exception as e:  # an optimisation, not a contract: the full graph goes on serving this set
                log.error("onnxruntime: %s pruned to skip %s does not load (%s); computing every output",
                          self.path.name, sorted(gone), e)
                self._pruned[gone] = (self.session, self._output_names)
                return self._pruned[gone]
            self._pruned[gone] = (session, [o.name for o in session.get_outputs()])
            log.info("onnxruntime: %s without %s (pruned graph: %d of %d nodes)", self.path.name,
                     ", ".join(sorted(gone)), len(model.graph.node), len(full.graph.node))
        return self._pruned[gone]

    def infer(self, inputs: dict[str, np.ndarray], skip: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
        info = self._require()
        feeds = {}
        for spec in info.input_specs:
            if spec.name not in inputs:
                raise BackendError(f"onnxruntime backend: input {spec.name!r} missing")
            feeds[spec.name] = np.ascontiguousarray(inputs[spec.name], dtype=np.float32)
        batch = feeds["image"].shape[0]
        if not 1 <= batch <= info.max_batch:
            raise BackendError(f"onnxruntime backend: batch {batch} is outside the exported range 1..{info.max_batch}; "
                               "re-export with a larger --max-batch")
        session, names = self._session_for(skip) if skip else (self.session, self._output_names)
        try:
            values = session.run(None, feeds)
        except Exception as e:
            raise BackendError(f"onnxruntime backend: inference failed: {e}") from e
        return dict(zip(names, values, strict=True))

    def close(self) -> None:
        self.session = None
        self._pruned.clear()
