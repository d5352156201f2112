"""``perception vehicle install`` end to end on a tiny checkpoint: the ONNX model and this CPU's ONNX Runtime
engine prebuilt and warmed through the node's own runtime selection, units written and verified by
``systemd-analyze verify``; the engine cache refuses a stale or foreign engine at load time."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from perception.runtime.onnx_backend import OnnxRuntimeBackend, OnnxRuntimeConfig
from perception.runtime.tensorrt_engine import EngineError
from perception.vehicle.config import rig_from_dict
from perception.vehicle.install import install, verify_units
from perception.vehicle.units import service_unit, unit_command, unit_environment

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed (Debian package `systemd`; scripts/setup_env.sh)")


def rig_tree(checkpoint: Path, **service: Any) -> dict[str, Any]:
    return {"name": "tiny_car", "cameras": [{"name": "front"}, {"name": "rear"}],
            "model": {"checkpoint": str(checkpoint), "max_batch": 2},
            "backend": {"name": "onnxruntime", "threads": 1},
            "service": {"watchdog_sec": 4, **service}}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> tuple[Path, Any]:
    prefix = tmp_path_factory.mktemp("prefix")
    src = prefix.parent / "tiny_car.yaml"
    tree = rig_tree(tiny_checkpoint, cpu_quota_percent=150, cpu_affinity=[0, 1])
    tree["recording"] = {"enabled": True, "directory": str(prefix / "incidents"), "before_s": 15, "budget_mb": 256}
    src.write_text(yaml.safe_dump(tree))
    rig = rig_from_dict(yaml.safe_load(src.read_text()), str(src))
    return prefix, install(rig, prefix, warm_runs=2, verify=SYSTEMD_ANALYZE is not None)


def test_install_prebuilds_and_warms_the_engine(installed: tuple[Path, Any]) -> None:
    prefix, report = installed
    steps = [s["step"] for s in report.steps]
    assert steps[:4] == ["validate", "export", "engine", "load"]
    engine = Path(report.engine)
    assert engine.is_file() and engine.parent == prefix / "var" / "cache" / "perception" / "ort"
    sidecar = json.loads(engine.with_suffix(".json").read_text())
    assert sidecar["key"]["ort_version"] and sidecar["key"]["device"] and len(sidecar["key"]["onnx_sha256"]) == 64
    assert report.engine_state == f"loaded {engine.name}"  # the node's runtime path loaded the prebuilt engine
    assert len(report.warm_ms) == 2 and all(ms > 0 for ms in report.warm_ms)
    manifest = json.loads((prefix / "etc" / "perception" / "install.json").read_text())
    assert manifest["engine"] == report.engine and manifest["onnx_sha256"]
    params = yaml.safe_load(Path(report.params).read_text())["/perception"]["ros__parameters"]
    assert params["cameras"] == ["front", "rear"] and params["model"]["onnx"] == report.onnx
    assert params["model"]["cache_dir"] == str(prefix / "var" / "cache" / "perception")
    assert params["runtime"]["warmup"] == "enabled" and params["autostart"] is True
    from perception.ros.nodes.params import PARAMS_BY_NAME, default_values, flatten_yaml_params, node_config

    flat = flatten_yaml_params(params)
    assert set(flat) <= set(PARAMS_BY_NAME), set(flat) - set(PARAMS_BY_NAME)
    cfg = node_config({**default_values(), **flat})  # the node accepts what the install wrote
    assert cfg.input.cameras == ("front", "rear") and cfg.model.backend == "onnxruntime" and cfg.warmup == "enabled"


def test_the_unit_says_what_the_issue_asks(installed: tuple[Path, Any]) -> None:
    _, report = installed
    text = Path(report.unit).read_text()
    for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=4s", "Restart=on-failure", "StartLimitBurst=5",
                 "StartLimitIntervalSec=300s", "TimeoutStopSec=15s", "TimeoutStartSec=90s", "CPUQuota=150%",
                 "CPUAffinity=0 1", "MemoryMax=4096M", "Nice=-5", "StandardOutput=journal", "KillSignal=SIGTERM"):
        assert line in text.splitlines(), line
    argv = unit_command(text)
    assert argv[:3] == [sys.executable, "-m", "perception.ros.nodes.perception_node"]
    env = unit_environment(text)
    assert env["ROS_DOMAIN_ID"] == "0" and env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SYSTEM_DEFAULT"
    assert Path(env["FASTDDS_DEFAULT_PROFILES_FILE"]).is_file()
    assert env["PERCEPTION_CACHE"].endswith("var/cache/perception")


def test_recording_enabled_installs_the_incident_recorder(installed: tuple[Path, Any]) -> None:
    from perception.vehicle.recorder import recorder_config

    prefix, report = installed
    text = Path(report.recorder_unit).read_text()
    assert Path(report.recorder_unit).name == "perception-recorder.service"
    for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=4s", "Restart=on-failure", "TimeoutStopSec=60s",
                 "MemoryMax=768M", "Nice=5", "SyslogIdentifier=perception-recorder", "StandardOutput=journal"):
        assert line in text.splitlines(), line
    assert not any(ln.startswith(("CPUQuota", "CPUAffinity")) for ln in text.splitlines())  # perception's only
    argv = unit_command(text)
    assert argv[:3] == [sys.executable, "-m", "perception.ros.nodes.recorder"]
    assert unit_environment(text) == unit_environment(Path(report.unit).read_text())  # the same DDS
    params = yaml.safe_load(Path(argv[argv.index("--params-file") + 1]).read_text())
    cfg = recorder_config(params["/incident_recorder"]["ros__parameters"])  # what the node will validate
    assert cfg.before_s == 15 and cfg.budget_mb == 256 and cfg.directory == str(prefix / "incidents")
    assert cfg.topics[:6] == ("/front/image_raw", "/front/detections", "/front/detections/attention",
                              "/front/attention", "/front/objects/detected", "/front/objects/tracked")
    assert cfg.topics[-4:] == ("/diagnostics", "/tf", "/tf_static", "/odom")
    assert (prefix / "incidents").is_dir()


@needs_systemd_analyze
def test_systemd_analyze_verifies_the_unit_and_catches_a_broken_one(installed: tuple[Path, Any],
                                                                      tmp_path: Path) -> None:
    _, report = installed
    assert report.verify == "ok"
    rig = rig_from_dict(rig_tree(Path("unused")))
    text = service_unit(rig, ["/nonexistent/python", "-m", "x"], {}, tmp_path)
    bad = tmp_path / "broken.service"
    bad.write_text(text.replace("Type=notify", "Type=notifyy"))
    why = verify_units([bad])
    assert why != "ok" and "notifyy" in why
    missing = tmp_path / "missing.service"
    missing.write_text(text)
    assert "not executable" in verify_units([missing])


def test_a_second_install_reuses_the_cache(installed: tuple[Path, Any], tiny_checkpoint: Path) -> None:
    prefix, report = installed
    again = install(rig_from_dict(rig_tree(tiny_checkpoint)), prefix, warm_runs=1, verify=False)
    assert again.engine == report.engine
    assert not again.recorder_unit and not Path(report.recorder_unit).exists()  # recording off: its unit goes
    assert next(s for s in again.steps if s["step"] == "engine")["detail"].startswith("cached")


def test_a_foreign_or_stale_engine_is_refused_at_load(installed: tuple[Path, Any], tmp_path: Path) -> None:
    _, report = installed
    cache = tmp_path / "ort"
    shutil.copytree(Path(report.engine).parent, cache)
    engine = cache / Path(report.engine).name
    sidecar = engine.with_suffix(".json")
    record = json.loads(sidecar.read_text())
    good = OnnxRuntimeBackend(report.onnx, OnnxRuntimeConfig(threads=1, engine_cache=str(cache)))
    good.load()
    assert good.engine_state == f"loaded {engine.name}"
    good.close()
    for field, value in (("device", "Some Other CPU [avx2]"), ("ort_version", "1.0.0")):
        stale = {**record, "key": {**record["key"], field: value}}
        sidecar.write_text(json.dumps(stale))
        b = OnnxRuntimeBackend(report.onnx, OnnxRuntimeConfig(threads=1, engine_cache=str(cache)))
        b.load()  # refused: the model itself is loaded instead (and the refusal reported)
        assert b.engine_state.startswith("refused") and field in b.engine_state and value in b.engine_state
        assert b.status()["backend.engine"] == b.engine_state
        b.close()
        strict = OnnxRuntimeBackend(report.onnx, OnnxRuntimeConfig(threads=1, engine_cache=str(cache),
                                                                    require_engine=True))
        with pytest.raises(EngineError, match=f"refusing to load it: {field}"):
            strict.load()
    sidecar.unlink()
    with pytest.raises(EngineError, match="no sidecar"):
        OnnxRuntimeBackend(report.onnx, OnnxRuntimeConfig(engine_cache=str(cache), require_engine=True)).load()


def test_the_pre_flight_engine_check_follows_the_install(installed: tuple[Path, Any]) -> None:
    from perception.vehicle.check import check_engine

    prefix, report = installed
    manifest = prefix / "etc" / "perception" / "install.json"
    assert all(r.ok for r in check_engine(manifest)), check_engine(manifest)
    sidecar = Path(report.engine).with_suffix(".json")
    record = sidecar.read_text()
    try:
        sidecar.write_text(record.replace('"ort_version": "', '"ort_version": "0.0.1-'))
        bad = [r for r in check_engine(manifest) if not r.ok]
        assert bad and "refusing to load it: ort_version" in bad[0].detail
    finally:
        sidecar.write_text(record)
    assert "run `perception vehicle install`" in check_engine(prefix / "nowhere.json")[0].detail


def test_the_cli_validates_and_installs(tmp_path: Path, tiny_checkpoint: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "car", "cameras": [{"name": "f", "rate_hz": 0}]}))
    cli = [sys.executable, "-m", "perception.cli", "vehicle"]
    out = subprocess.run([*cli, "validate", "--config", str(bad)], capture_output=True, text=True, check=False)
    assert out.returncode == 2 and "cameras[0].rate_hz" in out.stderr
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(rig_tree(tiny_checkpoint)))
    out = subprocess.run([*cli, "install", "--config", str(good), "--prefix", str(tmp_path / "p"), "--json",
                          "--warm-runs", "1"], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert Path(report["unit"]).is_file() and report["engine_state"].startswith("loaded")
