"""``perception vehicle install``: validate the rig, prebuild and warm the engines, write the service.

Steps (each timed in the returned :class:`InstallReport`, and in ``<prefix>/etc/perception/install.json``):
  1. the rig file validated (:func:`perception.vehicle.config.load_rig`), the checkpoint resolved;
  2. the model exported to ONNX once into ``<prefix>/var/cache/perception/onnx`` (keyed by the weights'
     sha256, input size and batch range: :func:`perception.deploy.ondemand.cached_export`), INT8-quantised
     when ``model.precision: int8``;
  3. the engine for THIS machine built into the same cache: ONNX Runtime (CPU) an optimised graph keyed by
     model sha256 + onnxruntime version + CPU (:mod:`perception.deploy.ort_engine`); TensorRT (GPU) an engine
     keyed by model sha256 + TensorRT version + GPU (:func:`perception.deploy.engine.build_engine`). A stale
     or foreign engine found there is remade, and the runtime refuses one at load time;
  4. warmed and checked: the backend is loaded through the same runtime selection the node uses, must say
     it loaded the prebuilt engine, and answers a few inferences (timed);
  5. the node's parameters, the rig file, the DDS profile and the systemd unit written
     (:mod:`perception.vehicle.units`); with ``recording.enabled`` the incident recorder's parameters and its
     own unit ``<service>-recorder.service`` too (independent of perception's: it keeps recording when
     perception fails); the units checked with ``systemd-analyze verify`` when present.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from perception.core.files import sha256_file
from perception.vehicle.config import RigConfig
from perception.vehicle.errors import VehicleError
from perception.vehicle.units import (
    RECORDER_NODE,
    InstallLayout,
    dds_environment,
    exec_start,
    node_parameters,
    params_yaml,
    recorder_parameters,
    recorder_service,
    service_unit,
)

LOCALHOST_PROFILE = "fastdds_localhost.xml"


@dataclass
class InstallReport:
    rig: str
    prefix: str
    steps: list[dict[str, Any]] = field(default_factory=list)  # {step, seconds, detail}
    checkpoint: str = ""
    onnx: str = ""
    engine: str = ""
    engine_state: str = ""
    warm_ms: list[float] = field(default_factory=list)
    unit: str = ""
    recorder_unit: str = ""  # recording.enabled: the incident recorder's unit
    params: str = ""
    verify: str = ""  # "ok", "skipped: why", or systemd-analyze's complaints

    def step(self, name: str, t0: float, detail: str = "") -> None:
        self.steps.append({"step": name, "seconds": round(time.perf_counter() - t0, 3), "detail": detail})


def localhost_profile_source() -> Path:
    """The project's loopback-only Fast DDS profile (``config/`` of the source tree or the installed share)."""
    root = Path(__file__).resolve().parents[2]
    share = root / "share" / "perception"
    for candidate in (root / "config" / LOCALHOST_PROFILE, share / "config" / LOCALHOST_PROFILE):
        if candidate.is_file():
            return candidate
    raise VehicleError(f"the Fast DDS profile {LOCALHOST_PROFILE} is not installed next to perception ({root}); "
                       "reinstall the package, or set dds.profile to your own XML profile")


def verify_units(units: list[Path], timeout: float = 60.0) -> str:
    """``systemd-analyze verify`` on ``units``: "ok", "skipped: ..." without the binary, else its complaints."""
    exe = shutil.which("systemd-analyze")
    if exe is None:
        return "skipped: systemd-analyze is not installed (Debian: apt-get install systemd)"
    proc = subprocess.run([exe, "verify", *map(str, units)], capture_output=True, text=True, timeout=timeout,
                          check=False)
    # complaints about units we did not write (the host's own, when systemd is not PID 1) are not ours
    ours = [ln for ln in (proc.stdout + proc.stderr).splitlines() if any(u.name in ln for u in units)]
    return "ok" if proc.returncode == 0 and not ours else "\n".join(ours) or proc.stderr.strip() or "failed"


def _resolve_checkpoint(rig: RigConfig) -> Path:
    from perception.weights import resolve_checkpoint

    try:
        return resolve_checkpoint(rig.model.checkpoint)
    except FileNotFoundError as e:
        raise VehicleError(f"model.checkpoint {rig.model.checkpoint!r}: {e}") from e


def prebuild_engine(rig: RigConfig, checkpoint: Path, cache: Path, report: InstallReport,
                    note: Callable[[str], None]) -> Path | None:
    """Steps 2-3: the ONNX model the node will run (None for the torch backend) and its engine."""
    from perception.models.checkpoint import checkpoint_input_size

    if rig.backend.name == "torch":
        note("backend torch: nothing to prebuild (the checkpoint is loaded at start)")
        return None
    from perception.deploy.ondemand import cached_export

    size = rig.input_size if 0 not in rig.input_size else checkpoint_input_size(checkpoint)
    t0 = time.perf_counter()
    onnx = cached_export(checkpoint, size, rig.model.max_batch, cache / "onnx")
    report.step("export", t0, str(onnx))
    note(f"ONNX model: {onnx}")
    if rig.model.precision == "int8":
        from perception.deploy.quantize import QuantizeConfig, quantized_copy

        t0 = time.perf_counter()
        # u8 activations: ONNX Runtime's x86 fast path; TensorRT needs s8
        activations = "u8" if rig.backend.device == "cpu" else "s8"
        onnx = quantized_copy(onnx, QuantizeConfig(activations=activations))
        report.step("quantise", t0, str(onnx))
        note(f"INT8 model: {onnx}")
    t0 = time.perf_counter()
    if rig.backend.name == "onnxruntime":
        from perception.deploy.ort_engine import build_ort_engine

        providers = ("cuda", "cpu") if rig.backend.device.startswith("cuda") else ("cpu",)
        res = build_ort_engine(onnx, cache / "ort", providers)
        report.engine = str(res.paths.engine)
        report.step("engine", t0, f"{'built' if res.built else 'cached'} {res.paths.engine.name} for {res.key.device}")
    else:
        from perception.deploy.engine import build_engine
        from perception.runtime.tensorrt_engine import EngineConfig

        device_id = int(rig.backend.device.split(":")[1]) if ":" in rig.backend.device else 0
        precision = rig.model.precision
        trt_res = build_engine(onnx, EngineConfig(precision=precision, cache_dir=str(cache / "engines")),
                               allow_rtx=False, device_id=device_id, progress=note)
        report.engine = str(trt_res.paths.engine)
        report.step("engine", t0, f"{'built' if trt_res.built else 'cached'} {trt_res.paths.engine.name}")
    note(f"engine: {report.engine}")
    return onnx


def warm(rig: RigConfig, checkpoint: Path, onnx: Path | None, cache: Path, report: InstallReport, runs: int) -> None:
    """Step 4: load the backend the way the node will, require the prebuilt engine, time ``runs`` inferences."""
    import numpy as np

    from perception.deploy.ondemand import on_demand
    from perception.runtime.select import ModelSource, RuntimeConfig, build_backend

    size = rig.input_size
    cfg = RuntimeConfig(backend=rig.backend.name, fallback=False, device=rig.backend.device,
                        precision=rig.model.precision, onnx=str(onnx or ""), cache_dir=str(cache),
                        max_batch=rig.model.max_batch, threads=rig.backend.threads)
    t0 = time.perf_counter()
    backend = build_backend(on_demand(ModelSource(checkpoint=checkpoint, input_size=size)), cfg)
    try:
        report.engine_state = backend.status().get("backend.engine", "n/a")
        report.step("load", t0, report.engine_state)
        if onnx is not None and rig.backend.name == "onnxruntime" and not report.engine_state.startswith("loaded"):
            raise VehicleError(f"the prebuilt engine was not used ({report.engine_state}); run the install again "
                               "with --force")
        inputs: dict[str, Any] = {}
        for spec in backend.input_specs:
            shape = tuple(1 if isinstance(d, str) else int(d) for d in spec.shape)
            inputs[spec.name] = np.zeros(shape, np.float32)
        for _ in range(max(1, runs)):
            t1 = time.perf_counter()
            backend.infer(inputs)
            report.warm_ms.append(round(1e3 * (time.perf_counter() - t1), 2))
        report.step("warm-up", t0, f"{len(report.warm_ms)} inferences, ms: {report.warm_ms}")
    finally:
        backend.close()


def write_recorder(rig: RigConfig, layout: InstallLayout, python: str, env: dict[str, str]) -> Path:
    """The incident recorder's parameters and unit (recording.enabled); returns the unit's path. The snapshot
    directory is created when this user may (the unit's user must be able to write it: the recorder exits 1
    naming it otherwise, and ``vehicle check`` fails its disk row)."""
    svc = recorder_service(rig)
    for d in (layout.etc, layout.units):
        d.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # e.g. /var/lib/... when installing under a prefix as a normal user
        Path(rig.recording.directory).mkdir(parents=True, exist_ok=True)
    layout.recorder_params.write_text(
        yaml.safe_dump(params_yaml(RECORDER_NODE, recorder_parameters(rig)), sort_keys=False), encoding="utf-8")
    unit = layout.unit(svc.name)
    argv = exec_start(python, RECORDER_NODE, layout.recorder_params, "perception.ros.nodes.recorder")
    unit.write_text(service_unit(rig, argv, env, layout.prefix, svc,
                                 f"Incident recorder for rig {rig.name} (snapshots in {rig.recording.directory})"),
                    encoding="utf-8")
    return unit


def install(rig: RigConfig, prefix: str | Path, *, python: str = sys.executable, warm_runs: int = 3,
            verify: bool = True, note: Callable[[str], None] = lambda s: None) -> InstallReport:
    """Everything in the module doc; raises :class:`VehicleError` (or the deploy / runtime errors) on failure."""
    layout = InstallLayout(Path(prefix).expanduser().resolve())
    report = InstallReport(rig=rig.name, prefix=str(layout.prefix))
    t0 = time.perf_counter()
    checkpoint = _resolve_checkpoint(rig)
    report.checkpoint = str(checkpoint)
    report.step("validate", t0, f"{len(rig.cameras)} camera(s), checkpoint {checkpoint}")
    for d in (layout.etc, layout.cache, layout.units):
        d.mkdir(parents=True, exist_ok=True)
    onnx = prebuild_engine(rig, checkpoint, layout.cache, report, note)
    report.onnx = str(onnx or "")
    warm(rig, checkpoint, onnx, layout.cache, report, warm_runs)
    note(f"warm-up inferences (ms): {report.warm_ms}")

    t0 = time.perf_counter()
    params = node_parameters(rig, str(onnx or ""), str(checkpoint), str(layout.cache))
    layout.params.write_text(yaml.safe_dump(params_yaml(rig.service.name, params), sort_keys=False),
                             encoding="utf-8")
    if rig.source:
        shutil.copyfile(rig.source, layout.rig)
    profile = layout.etc / LOCALHOST_PROFILE
    if rig.dds.profile == "localhost":
        shutil.copyfile(localhost_profile_source(), profile)
    env = dds_environment(rig, profile)
    env["PERCEPTION_CACHE"] = str(layout.cache)
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach journald as they are written
    unit = layout.unit(rig.service.name)
    unit.write_text(service_unit(rig, exec_start(python, rig.service.name, layout.params), env, layout.prefix),
                    encoding="utf-8")
    report.unit, report.params = str(unit), str(layout.params)
    units = [unit]
    rec_unit = layout.unit(recorder_service(rig).name)
    if rig.recording.enabled:
        write_recorder(rig, layout, python, env)
        report.recorder_unit = str(rec_unit)
        units.append(rec_unit)
    else:  # an earlier install's recorder must not keep running from a rig that no longer enables it
        rec_unit.unlink(missing_ok=True)
        layout.recorder_params.unlink(missing_ok=True)
    report.step("units", t0, ", ".join(str(u) for u in units))
    if verify:
        t0 = time.perf_counter()
        report.verify = verify_units(units)
        report.step("verify", t0, report.verify)
    else:
        report.verify = "skipped: --no-verify"
    manifest = {**asdict(report), "checkpoint_sha256": sha256_file(Path(str(checkpoint) + ".safetensors"))
                if Path(str(checkpoint) + ".safetensors").is_file() else "",
                "onnx_sha256": sha256_file(onnx) if onnx else "", "python": python}
    layout.manifest.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return report
