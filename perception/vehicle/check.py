"""``perception vehicle check``: the pre-flight verdict from what was observed on the live graph (pure: no rclpy).

The ROS side (:mod:`perception.ros.tools.vehicle_check`) listens for a few seconds and hands over plain
records (:class:`GraphObservation`); this module judges them against the rig:

  camera <name>   images arrive at the expected rate (+-``rate_tolerance``), with the configured encoding
                  and frame; a valid CameraInfo (size = the images', calibrated K, same frame);
                  stamps close to the receiving clock
  lidar           scans at the expected rate, its frame, stamps close to the clock
  sensors         stamps close to each other (the spread of the sensors' median ages)
  tf_static       a chain from frames.base to every camera frame and the LiDAR frame
  engine          the installed ONNX model unchanged and its engine made for this machine and runtime
  disk            free space for recordings (recording.enabled)
  dds             the DDS profile parses (a Fast DDS XML with a participant profile)

Every row says what was seen; a failing row says what to fix. :func:`table` renders them.
"""

from __future__ import annotations

import json
import shutil
import statistics
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from perception.vehicle.config import RigConfig


@dataclass(frozen=True)
class SensorSample:
    received: float  # wall clock (s) when it arrived
    stamp: float  # header stamp (s)
    frame_id: str
    encoding: str = ""  # images: rgb8 ... or the compressed format
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class InfoSample:
    received: float
    frame_id: str
    width: int
    height: int
    problem: str = ""  # why it is not a usable calibration ("" = valid)


@dataclass
class GraphObservation:
    duration_s: float
    images: dict[str, list[SensorSample]] = field(default_factory=dict)  # camera name -> samples
    infos: dict[str, list[InfoSample]] = field(default_factory=dict)
    lidar: list[SensorSample] = field(default_factory=list)
    tf_parents: dict[str, str] = field(default_factory=dict)  # child frame -> parent frame (/tf_static)


@dataclass(frozen=True)
class CheckRow:
    item: str  # "camera front", "lidar", "tf_static", ...
    check: str  # "rate", "camera_info", ...
    ok: bool
    detail: str


@dataclass(frozen=True)
class Limits:
    rate_tolerance: float = 0.2  # measured rate within +-20 % of the expected one
    max_age_s: float = 0.5  # |receive time - stamp| (median) at most this
    max_skew_s: float = 0.1  # the sensors' median ages within this of each other


def _rate(samples: list[SensorSample]) -> float:
    if len(samples) < 2:
        return 0.0
    span = samples[-1].received - samples[0].received
    return (len(samples) - 1) / span if span > 0 else 0.0


def _rate_row(item: str, topic: str, samples: list[SensorSample], expected: float, obs: GraphObservation,
              lim: Limits) -> CheckRow:
    if not samples:
        return CheckRow(item, "rate", False, f"nothing on {topic} in {obs.duration_s:.1f} s: is the driver running, "
                        "publishing on that topic, in this ROS_DOMAIN_ID?")
    rate = _rate(samples)
    ok = abs(rate - expected) <= lim.rate_tolerance * expected
    detail = f"{rate:.1f} Hz on {topic} (expected {expected:g} Hz +-{100 * lim.rate_tolerance:.0f} %)"
    return CheckRow(item, "rate", ok, detail if ok else detail + ": fix the driver's rate or the rig's rate_hz")


def _age(samples: list[SensorSample]) -> float:
    return statistics.median(s.received - s.stamp for s in samples)


def _age_row(item: str, samples: list[SensorSample], lim: Limits) -> CheckRow | None:
    if not samples:
        return None
    age = _age(samples)
    ok = abs(age) <= lim.max_age_s
    detail = f"median receive - stamp {1e3 * age:+.0f} ms (limit +-{1e3 * lim.max_age_s:.0f} ms)"
    return CheckRow(item, "stamps", ok, detail if ok else detail + ": sync the sensor's clock (PTP/NTP) with this "
                    "computer's, or stamp at capture with the system clock")


def _frame_row(item: str, samples: list[SensorSample], expected: str) -> CheckRow | None:
    if not samples:
        return None
    seen = sorted({s.frame_id for s in samples})
    ok = seen == [expected]
    return CheckRow(item, "frame_id", ok, f"header frame_id {', '.join(seen)}" if ok else
                    f"header frame_id {', '.join(seen)}, the rig says {expected}: fix the driver's frame_id or the "
                    "rig's frame_id")


def _camera_rows(rig: RigConfig, obs: GraphObservation, lim: Limits) -> list[CheckRow]:
    rows: list[CheckRow] = []
    for cam in rig.cameras:
        item = f"camera {cam.name}"
        samples = obs.images.get(cam.name, [])
        rows.append(_rate_row(item, cam.image_topic, samples, cam.rate_hz, obs, lim))
        if samples:
            seen = sorted({s.encoding for s in samples})
            ok = all(cam.encoding in e for e in seen)  # compressed formats read e.g. "rgb8; jpeg compressed bgr8"
            rows.append(CheckRow(item, "encoding", ok, f"{', '.join(seen)}" + ("" if ok else
                                 f", the rig says {cam.encoding}: set cameras[].encoding or the driver's format")))
        for row in (_frame_row(item, samples, cam.frame_id), _age_row(item, samples, lim)):
            if row is not None:
                rows.append(row)
        if cam.camera_info:
            rows.append(_info_row(item, cam.info_topic, obs.infos.get(cam.name, []), samples, cam.frame_id, obs))
    return rows


def _info_row(item: str, topic: str, infos: list[InfoSample], images: list[SensorSample], frame: str,
              obs: GraphObservation) -> CheckRow:
    if not infos:
        return CheckRow(item, "camera_info", False, f"nothing on {topic} in {obs.duration_s:.1f} s: publish the "
                        "calibration (camera_info_manager) or set the camera's camera_info: false")
    last = infos[-1]
    problems = [last.problem] if last.problem else []
    if images and (images[-1].width, images[-1].height) != (last.width, last.height):
        problems.append(f"{last.width}x{last.height} but the images are {images[-1].width}x{images[-1].height}")
    if last.frame_id != frame:
        problems.append(f"frame_id {last.frame_id!r}, not {frame!r}")
    if problems:
        return CheckRow(item, "camera_info", False, "; ".join(problems) + ": recalibrate or fix the driver's "
                        "camera_info")
    return CheckRow(item, "camera_info", True, f"{last.width}x{last.height}, calibrated, {last.frame_id}")


def _lidar_rows(rig: RigConfig, obs: GraphObservation, lim: Limits) -> list[CheckRow]:
    if not rig.lidar.topic:
        return []
    rows = [_rate_row("lidar", rig.lidar.topic, obs.lidar, rig.lidar.rate_hz, obs, lim)]
    for row in (_frame_row("lidar", obs.lidar, rig.lidar.frame_id), _age_row("lidar", obs.lidar, lim)):
        if row is not None:
            rows.append(row)
    return rows


def _skew_row(rig: RigConfig, obs: GraphObservation, lim: Limits) -> CheckRow | None:
    ages = {f"camera {c.name}": _age(obs.images[c.name]) for c in rig.cameras if obs.images.get(c.name)}
    if rig.lidar.topic and obs.lidar:
        ages["lidar"] = _age(obs.lidar)
    if len(ages) < 2:
        return None
    lo, hi = min(ages, key=lambda k: ages[k]), max(ages, key=lambda k: ages[k])
    spread = ages[hi] - ages[lo]
    ok = spread <= lim.max_skew_s
    detail = f"stamps spread {1e3 * spread:.0f} ms ({lo} .. {hi}; limit {1e3 * lim.max_skew_s:.0f} ms)"
    return CheckRow("sensors", "sync", ok, detail if ok else detail + ": the sensors' clocks disagree; sync them")


def _tf_rows(rig: RigConfig, obs: GraphObservation) -> list[CheckRow]:
    frames = [(f"camera {c.name}", c.frame_id) for c in rig.cameras]
    if rig.lidar.topic:
        frames.append(("lidar", rig.lidar.frame_id))
    rows = []
    for item, frame in frames:
        chain, f = [frame], frame
        while f != rig.frames.base and f in obs.tf_parents and len(chain) < 64:
            f = obs.tf_parents[f]
            chain.append(f)
        ok = f == rig.frames.base
        rows.append(CheckRow(item, "tf_static", ok, " <- ".join(reversed(chain)) if ok else
                             f"no /tf_static chain {rig.frames.base} -> {frame} (reached {' -> '.join(chain)}): "
                             "publish the extrinsics (robot_state_publisher / static_transform_publisher)"))
    return rows


def check_graph(rig: RigConfig, obs: GraphObservation, lim: Limits | None = None) -> list[CheckRow]:
    """The live-graph rows (cameras, LiDAR, sync, tf_static)."""
    lim = lim or Limits()
    rows = _camera_rows(rig, obs, lim) + _lidar_rows(rig, obs, lim)
    skew = _skew_row(rig, obs, lim)
    if skew is not None:
        rows.append(skew)
    return rows + _tf_rows(rig, obs)


def check_engine(manifest_path: Path) -> list[CheckRow]:
    """The install's ONNX model unchanged and its engine made for this machine (install.json of the prefix)."""
    from perception.core.files import sha256_file

    if not manifest_path.is_file():
        return [CheckRow("engine", "installed", False, f"{manifest_path} missing: run `perception vehicle install`")]
    m = json.loads(manifest_path.read_text(encoding="utf-8"))
    rows = []
    onnx = Path(m.get("onnx") or "")
    if m.get("onnx"):
        if not onnx.is_file():
            return [CheckRow("engine", "model", False, f"{onnx} missing: run `perception vehicle install` again")]
        ok = sha256_file(onnx) == m.get("onnx_sha256")
        rows.append(CheckRow("engine", "model", ok, f"{onnx.name} " + ("matches the install" if ok else
                             "changed since the install: run `perception vehicle install` again")))
    engine = Path(m.get("engine") or "")
    if not m.get("engine"):
        rows.append(CheckRow("engine", "engine", True, "none (torch backend: nothing prebuilt)"))
    elif engine.suffix == ".onnx":
        rows.append(_ort_engine_row(onnx, engine))
    else:
        rows.append(_trt_engine_row(engine))
    return rows


def _ort_engine_row(onnx: Path, engine: Path) -> CheckRow:
    from perception.runtime.model_info import read_model_info
    from perception.runtime.ort_engine import OrtEnginePaths, check_ort_engine, ort_engine_key, read_ort_sidecar
    from perception.runtime.tensorrt_engine import EngineError

    paths = OrtEnginePaths(engine, engine.with_suffix(".json"))
    try:
        providers = tuple(read_ort_sidecar(paths).get("providers", ("CPUExecutionProvider",)))
        key = ort_engine_key(onnx, read_model_info(onnx).precision, providers)
        check_ort_engine(paths, key)
    except EngineError as e:
        return CheckRow("engine", "engine", False, str(e))
    return CheckRow("engine", "engine", True, f"{engine.name} for {key.device}, onnxruntime {key.ort_version}")


def _trt_engine_row(engine: Path) -> CheckRow:
    from perception.runtime.tensorrt_engine import EngineError, EnginePaths, check_engine_for_runtime, import_tensorrt

    try:
        trt, flavour = import_tensorrt(allow_rtx=False)
        check_engine_for_runtime(EnginePaths.for_engine(engine), trt, flavour)
    except EngineError as e:
        return CheckRow("engine", "engine", False, str(e))
    return CheckRow("engine", "engine", True, f"{engine.name} for this GPU and TensorRT")


def check_disk(rig: RigConfig, usage: Callable[[str], tuple[int, int, int]] = shutil.disk_usage) -> list[CheckRow]:
    if not rig.recording.enabled:
        return []
    path = Path(rig.recording.directory)
    while not path.exists() and path != path.parent:
        path = path.parent
    free_gb = usage(str(path))[2] / 1e9
    ok = free_gb >= rig.recording.min_free_gb
    return [CheckRow("disk", "free", ok, f"{free_gb:.1f} GB free at {path} (need {rig.recording.min_free_gb:g} GB)"
                     + ("" if ok else ": free space or lower recording.min_free_gb"))]


def check_dds(rig: RigConfig, profile: Path | None) -> list[CheckRow]:
    """The Fast DDS profile the service loads parses and has a participant profile."""
    if rig.dds.profile == "default" or profile is None:
        return [CheckRow("dds", "profile", True, "Fast DDS defaults (no profile file)")]
    try:
        root = ET.parse(profile).getroot()
    except (OSError, ET.ParseError) as e:
        return [CheckRow("dds", "profile", False, f"{profile}: {e}: fix the XML or set dds.profile")]
    participants = [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "participant"]
    ok = root.tag.rsplit("}", 1)[-1] == "dds" and bool(participants)
    return [CheckRow("dds", "profile", ok, f"{profile.name}: " + (f"{len(participants)} participant profile(s)" if ok
                     else "no <dds><profiles><participant> in it: not a Fast DDS profile"))]


def table(rows: list[CheckRow]) -> str:
    w1 = max([len(r.item) for r in rows] + [4])
    w2 = max([len(r.check) for r in rows] + [5])
    lines = [f"{'item':<{w1}}  {'check':<{w2}}  ok    detail", "-" * (w1 + w2 + 60)]
    lines += [f"{r.item:<{w1}}  {r.check:<{w2}}  {'PASS' if r.ok else 'FAIL'}  {r.detail}" for r in rows]
    failed = [r for r in rows if not r.ok]
    lines.append(f"{len(rows) - len(failed)}/{len(rows)} passed" + (
        "; FAILED: " + ", ".join(f"{r.item} {r.check}" for r in failed) if failed else ""))
    return "\n".join(lines)
