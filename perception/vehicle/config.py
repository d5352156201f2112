"""The rig: one YAML file describes a vehicle's cameras, LiDAR, frames, model, backend, service and DDS.

``load_rig(path)`` reads it into one frozen :class:`RigConfig`; every problem found is reported at once,
each naming the key (``cameras[1].rate_hz``) and what to write instead (:class:`RigConfigError`).
``config/vehicle.example.yaml`` is the documented example. Pure Python + PyYAML: no rclpy, no runtime.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from perception.vehicle.errors import RigConfigError
from perception.vehicle.recorder import RECORDER_KEYS, RecorderConfig, RecorderConfigError, recorder_config

ENCODINGS = ("rgb8", "bgr8", "mono8", "jpeg", "png")  # jpeg / png: sensor_msgs/CompressedImage
TRANSPORTS = ("raw", "compressed")
BACKENDS = ("onnxruntime", "tensorrt", "torch")
PRECISIONS = ("fp32", "int8", "fp16")
DDS_PROFILES = ("localhost", "default")  # or a path to a Fast DDS XML profile
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_FRAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$")


@dataclass(frozen=True)
class CameraConfig:
    name: str  # the camera's namespace: <name>/<topic>, <name>/camera_info, <name>/detections ...
    topic: str = "image_raw"
    transport: str = "raw"
    encoding: str = "rgb8"
    rate_hz: float = 30.0
    frame_id: str = ""  # the optical frame on /tf_static
    camera_info: bool = True

    @property
    def image_topic(self) -> str:
        suffix = "/compressed" if self.transport == "compressed" else ""
        return f"/{self.name}/{self.topic}{suffix}"

    @property
    def info_topic(self) -> str:
        return f"/{self.name}/camera_info"


@dataclass(frozen=True)
class LidarConfig:
    topic: str = ""  # absolute; empty: no LiDAR on this rig
    frame_id: str = ""
    rate_hz: float = 10.0


@dataclass(frozen=True)
class FramesConfig:
    base: str = "base_link"
    odom: str = "odom"


@dataclass(frozen=True)
class ModelConfig:
    checkpoint: str = "stan_s_temporal"  # a shipped name or a checkpoint path stem
    input_height: int = 0  # 0: the checkpoint's
    input_width: int = 0
    precision: str = "fp32"  # fp32 | int8 (ONNX Runtime / TensorRT) | fp16 (TensorRT)
    max_batch: int = 4


@dataclass(frozen=True)
class BackendConfig:
    name: str = "onnxruntime"
    device: str = "cpu"
    threads: int = 0  # 0: the runtime's default (one per CPU the service may use)


@dataclass(frozen=True)
class ServiceConfig:
    name: str = "perception"  # unit perception.service, node name, SyslogIdentifier
    user: str = ""  # empty: no User= (root, or the user manager running the unit)
    watchdog_sec: float = 10.0
    start_timeout_sec: float = 90.0  # model load + warm-up must finish in this
    stop_timeout_sec: float = 15.0
    restart_sec: float = 2.0
    start_limit_interval_sec: float = 300.0
    start_limit_burst: int = 5
    cpu_quota_percent: int = 0  # 0: no CPUQuota= (100 = one core)
    cpu_affinity: tuple[int, ...] = ()  # empty: no CPUAffinity=
    memory_max_mb: int = 4096
    nice: int = -5


@dataclass(frozen=True)
class DdsConfig:
    profile: str = "localhost"  # localhost | default | /path/to/profile.xml
    domain_id: int = 0
    rmw: str = "rmw_fastrtps_cpp"


@dataclass(frozen=True)
class RecordingConfig:
    """The incident recorder (``perception/ros/nodes/recorder.py``) and its unit; ``recorder`` holds every
    :data:`~perception.vehicle.recorder.RECORDER_KEYS` setting (topics empty: the rig's, see
    :func:`default_recording_topics`)."""

    enabled: bool = False
    recorder: RecorderConfig = field(default_factory=RecorderConfig)
    memory_max_mb: int = 0  # the unit's MemoryMax=; 0: budget_mb + 512
    cpu_quota_percent: int = 0  # 0: no CPUQuota=
    nice: int = 5  # below perception (-5 by default): the recorder yields the CPU first

    @property
    def directory(self) -> str:
        return self.recorder.directory

    @property
    def min_free_gb(self) -> float:
        return self.recorder.min_free_gb

    @property
    def memory_limit_mb(self) -> int:
        return self.memory_max_mb or int(self.recorder.budget_mb) + 512


@dataclass(frozen=True)
class RigConfig:
    name: str
    cameras: tuple[CameraConfig, ...]
    lidar: LidarConfig = field(default_factory=LidarConfig)
    frames: FramesConfig = field(default_factory=FramesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    dds: DdsConfig = field(default_factory=DdsConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    source: str = ""  # the file it was read from

    @property
    def input_size(self) -> tuple[int, int]:
        return self.model.input_height, self.model.input_width


# -- validation ------------------------------------------------------------------------------------
class _Checker:
    """Reads one mapping, collecting every problem as ``key: what is wrong; fix``."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors

    def section(self, tree: Mapping[str, Any], key: str, known: tuple[str, ...]) -> dict[str, Any]:
        value = tree.get(key, {})
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.errors.append(f"{key}: must be a mapping (key: value lines), not {type(value).__name__}")
            return {}
        self.unknown(value, key, known)
        return dict(value)

    def unknown(self, tree: Mapping[str, Any], where: str, known: tuple[str, ...]) -> None:
        for k in tree:
            if k not in known:
                prefix = f"{where}." if where else ""
                self.errors.append(f"{prefix}{k}: unknown key; the keys here are {', '.join(known)} "
                                   "(see config/vehicle.example.yaml)")

    def get(self, tree: Mapping[str, Any], key: str, where: str, default: Any, kind: type | tuple[type, ...],
            choices: tuple[str, ...] = (), lo: float | None = None, hi: float | None = None) -> Any:
        name = f"{where}.{key}" if where else key
        value = tree.get(key, default)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            self.errors.append(f"{name}: must be {' or '.join(k.__name__ for k in kinds)}, not {value!r}; "
                               f"e.g. {name.rsplit('.', 1)[-1]}: {default!r}")
            return default
        if choices and value not in choices:
            self.errors.append(f"{name}: {value!r} is not one of {', '.join(choices)}; write one of those")
            return default
        number = float(value) if isinstance(value, int | float) else 0.0
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            self.errors.append(f"{name}: {value!r} is out of range; use a value in [{lo}, {hi}]")
            return default
        return value


def _camera(chk: _Checker, raw: Any, i: int) -> CameraConfig | None:
    where = f"cameras[{i}]"
    if not isinstance(raw, Mapping):
        chk.errors.append(f"{where}: must be a mapping with at least `name:`; e.g. - name: front")
        return None
    known = ("name", "topic", "transport", "encoding", "rate_hz", "frame_id", "camera_info")
    chk.unknown(raw, where, known)
    name = chk.get(raw, "name", where, "", str)
    if not _NAME.match(name):
        chk.errors.append(f"{where}.name: {name!r} is not a ROS name (letters, digits, _; starting with a letter); "
                          "e.g. name: front")
    topic = chk.get(raw, "topic", where, "image_raw", str)
    if not topic or topic.startswith("/") or not all(_NAME.match(p) for p in topic.split("/")):
        chk.errors.append(f"{where}.topic: {topic!r} must be a relative topic inside the camera's namespace "
                          "(e.g. image_raw, not /front/image_raw)")
    transport = chk.get(raw, "transport", where, "raw", str, TRANSPORTS)
    encoding = chk.get(raw, "encoding", where, "rgb8" if transport == "raw" else "jpeg", str, ENCODINGS)
    if transport == "raw" and encoding in ("jpeg", "png"):
        chk.errors.append(f"{where}.encoding: {encoding} images come as CompressedImage: set "
                          f"{where}.transport: compressed (or encoding: rgb8)")
    if transport == "compressed" and encoding not in ("jpeg", "png"):
        chk.errors.append(f"{where}.encoding: a compressed transport carries jpeg or png, not {encoding}; "
                          f"set {where}.encoding: jpeg (or transport: raw)")
    rate = chk.get(raw, "rate_hz", where, 30.0, float, lo=0.1, hi=1000.0)
    frame = chk.get(raw, "frame_id", where, f"{name}_optical_frame", str)
    if not _FRAME.match(frame or "-"):
        chk.errors.append(f"{where}.frame_id: {frame!r} is not a tf frame name; e.g. frame_id: {name}_optical_frame")
    info = chk.get(raw, "camera_info", where, True, bool)
    return CameraConfig(name, topic, transport, encoding, rate, frame, info)


def rig_from_dict(tree: Mapping[str, Any], source: str = "") -> RigConfig:
    """A :class:`RigConfig` from the parsed YAML; :class:`RigConfigError` listing every problem otherwise."""
    errors: list[str] = []
    chk = _Checker(errors)
    if not isinstance(tree, Mapping):
        raise RigConfigError(source, ["(top level): the file must be a YAML mapping; start from "
                                      "config/vehicle.example.yaml"])
    chk.unknown(tree, "", ("name", "cameras", "lidar", "frames", "model", "backend", "service", "dds", "recording"))
    name = chk.get(tree, "name", "", "", str)
    if not _NAME.match(name):
        errors.append(f"name: {name!r} must name the rig (letters, digits, _), e.g. name: test_car")

    raw_cams = tree.get("cameras")
    cameras: list[CameraConfig] = []
    if not isinstance(raw_cams, list) or not raw_cams:
        errors.append("cameras: needs a list of at least one camera; e.g. cameras: [{name: front, rate_hz: 30}]")
    else:
        for i, raw in enumerate(raw_cams):
            cam = _camera(chk, raw, i)
            if cam is not None:
                cameras.append(cam)
        names = [c.name for c in cameras]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            errors.append(f"cameras: the name {dup!r} is used twice; give every camera its own name")
        for key in ("topic", "transport"):  # one node serves every camera with one input setting
            values = {getattr(c, key) for c in cameras}
            if len(values) > 1:
                errors.append(f"cameras[*].{key}: the cameras differ ({', '.join(sorted(values))}) but one perception "
                              f"node reads every camera the same way; give every camera the same {key}")
        frames_seen = [c.frame_id for c in cameras]
        for dup in sorted({f for f in frames_seen if frames_seen.count(f) > 1}):
            errors.append(f"cameras[*].frame_id: {dup!r} is used by two cameras; each camera needs its own frame")

    lid = chk.section(tree, "lidar", ("topic", "frame_id", "rate_hz"))
    lidar = LidarConfig(chk.get(lid, "topic", "lidar", "", str), chk.get(lid, "frame_id", "lidar", "", str),
                        chk.get(lid, "rate_hz", "lidar", 10.0, float, lo=0.1, hi=1000.0))
    if lidar.topic and not lidar.topic.startswith("/"):
        errors.append(f"lidar.topic: {lidar.topic!r} must be absolute (e.g. /lidar/points)")
    if lidar.topic and not lidar.frame_id:
        errors.append("lidar.frame_id: a LiDAR needs its frame (the child of frames.base on /tf_static); "
                      "e.g. frame_id: lidar_top")

    fr = chk.section(tree, "frames", ("base", "odom"))
    frames = FramesConfig(chk.get(fr, "base", "frames", "base_link", str), chk.get(fr, "odom", "frames", "odom", str))

    m = chk.section(tree, "model", ("checkpoint", "input_height", "input_width", "precision", "max_batch"))
    model = ModelConfig(
        checkpoint=chk.get(m, "checkpoint", "model", "stan_s_temporal", str),
        input_height=chk.get(m, "input_height", "model", 0, int, lo=0, hi=4096),
        input_width=chk.get(m, "input_width", "model", 0, int, lo=0, hi=4096),
        precision=chk.get(m, "precision", "model", "fp32", str, PRECISIONS),
        max_batch=chk.get(m, "max_batch", "model", max(1, len(cameras)), int, lo=1, hi=64),
    )
    for key in ("input_height", "input_width"):
        if getattr(model, key) % 32:
            errors.append(f"model.{key}: {getattr(model, key)} is not a multiple of 32; use e.g. "
                          f"{max(32, round(getattr(model, key) / 32) * 32)} (or 0: the checkpoint's size)")
    if (model.input_height == 0) != (model.input_width == 0):
        errors.append("model.input_height / model.input_width: set both, or neither (0: the checkpoint's size)")
    if not model.checkpoint:
        errors.append("model.checkpoint: empty; name shipped weights (e.g. stan_s_temporal) or a checkpoint path")

    b = chk.section(tree, "backend", ("name", "device", "threads"))
    backend = BackendConfig(chk.get(b, "name", "backend", "onnxruntime", str, BACKENDS),
                            chk.get(b, "device", "backend", "cpu", str),
                            chk.get(b, "threads", "backend", 0, int, lo=0, hi=256))
    if not (backend.device == "cpu" or re.fullmatch(r"cuda(:\d+)?", backend.device)):
        errors.append(f"backend.device: {backend.device!r}; write cpu, cuda or cuda:N")
    if backend.name == "tensorrt" and backend.device == "cpu":
        errors.append("backend.name: tensorrt runs on a GPU: set backend.device: cuda (or backend.name: onnxruntime "
                      "on a CPU)")
    if model.precision == "fp16" and backend.name != "tensorrt":
        errors.append(f"model.precision: fp16 is for tensorrt; on {backend.name} use fp32 or int8")
    if model.precision == "int8" and backend.name == "torch":
        errors.append("model.precision: torch has no int8 path; use backend.name: onnxruntime for int8")

    s = chk.section(tree, "service", ("name", "user", "watchdog_sec", "start_timeout_sec", "stop_timeout_sec",
                                      "restart_sec", "start_limit_interval_sec", "start_limit_burst",
                                      "cpu_quota_percent", "cpu_affinity", "memory_max_mb", "nice"))
    affinity = s.get("cpu_affinity", [])
    if not (isinstance(affinity, list) and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0
                                               for c in affinity)):
        errors.append(f"service.cpu_affinity: {affinity!r} must be a list of CPU numbers, e.g. [2, 3] (or [])")
        affinity = []
    service = ServiceConfig(
        name=chk.get(s, "name", "service", "perception", str),
        user=chk.get(s, "user", "service", "", str),
        watchdog_sec=chk.get(s, "watchdog_sec", "service", 10.0, float, lo=1.0, hi=3600.0),
        start_timeout_sec=chk.get(s, "start_timeout_sec", "service", 90.0, float, lo=5.0, hi=3600.0),
        stop_timeout_sec=chk.get(s, "stop_timeout_sec", "service", 15.0, float, lo=1.0, hi=600.0),
        restart_sec=chk.get(s, "restart_sec", "service", 2.0, float, lo=0.0, hi=600.0),
        start_limit_interval_sec=chk.get(s, "start_limit_interval_sec", "service", 300.0, float, lo=1.0, hi=86400.0),
        start_limit_burst=chk.get(s, "start_limit_burst", "service", 5, int, lo=1, hi=1000),
        cpu_quota_percent=chk.get(s, "cpu_quota_percent", "service", 0, int, lo=0, hi=100 * 1024),
        cpu_affinity=tuple(affinity),
        memory_max_mb=chk.get(s, "memory_max_mb", "service", 4096, int, lo=256, hi=1 << 22),
        nice=chk.get(s, "nice", "service", -5, int, lo=-20, hi=19),
    )
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", service.name):
        errors.append(f"service.name: {service.name!r} cannot name a unit; use letters, digits, -, _ or .")
    if service.restart_sec * service.start_limit_burst >= service.start_limit_interval_sec:
        errors.append("service.start_limit_interval_sec: with restart_sec x start_limit_burst >= the interval the "
                      "start limit never trips; make start_limit_interval_sec larger than "
                      f"{service.restart_sec * service.start_limit_burst:g}")

    d = chk.section(tree, "dds", ("profile", "domain_id", "rmw"))
    dds = DdsConfig(chk.get(d, "profile", "dds", "localhost", str),
                    chk.get(d, "domain_id", "dds", 0, int, lo=0, hi=232),
                    chk.get(d, "rmw", "dds", "rmw_fastrtps_cpp", str, ("rmw_fastrtps_cpp",)))
    if dds.profile not in DDS_PROFILES and not dds.profile.endswith(".xml"):
        errors.append(f"dds.profile: {dds.profile!r}; write localhost (this machine only), default (Fast DDS "
                      "defaults) or the path of a Fast DDS XML profile (*.xml)")
    elif dds.profile.endswith(".xml") and not Path(dds.profile).expanduser().is_file():
        errors.append(f"dds.profile: {dds.profile} does not exist; give the path of an existing Fast DDS XML profile")

    r = chk.section(tree, "recording", ("enabled", *RECORDER_KEYS, "memory_max_mb", "cpu_quota_percent", "nice"))
    rec_values: dict[str, Any] = {k: v for k, v in r.items() if k in RECORDER_KEYS}
    if not rec_values.get("topics"):
        rec_values["topics"] = default_recording_topics(cameras)
    try:
        rec = recorder_config(rec_values, where="recording")  # every key checked, each problem with its fix
    except RecorderConfigError as e:
        errors.extend(e.problems)
        rec = RecorderConfig()
    recording = RecordingConfig(chk.get(r, "enabled", "recording", False, bool), rec,
                                chk.get(r, "memory_max_mb", "recording", 0, int, lo=0, hi=1 << 22),
                                chk.get(r, "cpu_quota_percent", "recording", 0, int, lo=0, hi=100 * 1024),
                                chk.get(r, "nice", "recording", 5, int, lo=-20, hi=19))
    if recording.memory_max_mb and recording.memory_max_mb < rec.budget_mb + 128:
        errors.append(f"recording.memory_max_mb: {recording.memory_max_mb} leaves no room over budget_mb "
                      f"({rec.budget_mb:g}) for the interpreter and DDS; use at least {int(rec.budget_mb) + 256} "
                      "(or 0: budget_mb + 512)")
    if errors:
        raise RigConfigError(source, errors)
    return RigConfig(name, tuple(cameras), lidar, frames, model, backend, service, dds, recording, source)


def default_recording_topics(cameras: list[CameraConfig] | tuple[CameraConfig, ...]) -> list[str]:
    """What the recorder keeps when ``recording.topics`` is empty: per camera its image topic (the compressed one
    on a compressed rig), detections, per-detection attention, the attention map, objects and tracks; then
    /diagnostics, /tf, /tf_static and /odom."""
    topics = []
    for c in cameras:
        topics += [c.image_topic, f"/{c.name}/detections", f"/{c.name}/detections/attention", f"/{c.name}/attention",
                   f"/{c.name}/objects/detected", f"/{c.name}/objects/tracked"]
    return [*topics, "/diagnostics", "/tf", "/tf_static", "/odom"]


def load_rig(path: str | Path) -> RigConfig:
    """Read and validate a rig file (see the module doc)."""
    p = Path(path)
    try:
        tree = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as e:
        why = f"(file): cannot read it ({e.strerror}); give the path of a rig YAML file"
        raise RigConfigError(str(p), [why]) from e
    except yaml.YAMLError as e:
        raise RigConfigError(str(p), [f"(syntax): not valid YAML: {e}"]) from e
    return rig_from_dict(tree if tree is not None else {}, str(p))
