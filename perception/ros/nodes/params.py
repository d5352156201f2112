"""Parameters of the perception node: one table, validated into frozen config dataclasses.

The table (:data:`PERCEPTION_PARAMS`) is the single source of truth: the node declares every entry
with a descriptor (description, range, allowed values), the launch tests check that every key in
``config/*.yaml`` is declared here, and :func:`node_config` turns the values read on configure into
one :class:`PerceptionNodeConfig` or raises :class:`RosError` with a reason a person can act on.
No rclpy here: this module is tested without a ROS graph.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perception.core.classes import DETECTION_NAMES
from perception.core.shedding import SheddingPolicy
from perception.core.temporal import ResetPolicy
from perception.pipeline.refine import NODE_REFINE, RefineConfig, RefineError
from perception.ros.errors import RosError
from perception.runtime.select import BACKEND_NAMES
from perception.runtime.select import PRECISIONS as RUNTIME_PRECISIONS

BACKENDS = BACKEND_NAMES  # auto | tensorrt | onnxruntime | torch (perception.runtime.select)
DEVICES_RE = re.compile(r"^(cpu|cuda(:\d+)?)$")
PRECISIONS = RUNTIME_PRECISIONS
TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("best_effort", "reliable")
MASK_RESOLUTIONS = ("full", "network")  # output.mask_resolution
PIPELINING = ("auto", "enabled", "disabled")  # runtime.pipelining (not on/off: YAML reads those as booleans)
# a relative ROS name: tokens of [A-Za-z_][A-Za-z0-9_]* separated by '/'
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter: name (dotted = nested in YAML), default (its type is the type)."""

    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    min_value: float | None = None
    max_value: float | None = None
    read_only: bool = False


def add_model_arguments(p: argparse.ArgumentParser, input_size: str, input_size_help: str) -> None:
    """``--input-size --precision --threads --backend``: the ``model.*`` parameters of the perception_node a
    tool starts (replay, bench ros, bench throughput)."""
    p.add_argument("--input-size", default=input_size, help=input_size_help)
    p.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16"))
    p.add_argument("--threads", type=int, default=0, help="inference threads in the node (0: the runtime's default)")
    p.add_argument("--backend", default="auto", choices=BACKENDS, help="model.backend of the node")


def _p(name: str, default: Any, description: str, **kw: Any) -> ParamSpec:
    return ParamSpec(name, default, description, **kw)


PERCEPTION_PARAMS: tuple[ParamSpec, ...] = (
    # model and runtime
    _p("model.checkpoint", "", "checkpoint path stem (.safetensors + .json) or shipped name; empty: the shipped "
       "weights named model.name"),
    _p("model.name", "stan_mbv2", "registry name of the network built when model.checkpoint is empty"),
    _p("model.backend", "auto", "inference runtime; auto: the fastest available (tensorrt > onnxruntime > torch)",
       choices=BACKENDS),
    _p("model.fallback", True, "if the backend fails to load or faults while running, continue on the next one "
       "(tensorrt -> onnxruntime -> torch), log it and report it in /diagnostics"),
    _p("model.onnx", "", "exported ONNX model (`perception export`) for onnxruntime/tensorrt; empty: export the "
       "checkpoint on first use into model.cache_dir"),
    _p("model.cache_dir", "", "where on-demand ONNX exports and TensorRT engines are cached; empty: "
       "$PERCEPTION_CACHE or ~/.cache/perception"),
    _p("model.device", "cpu", "cpu, cuda or cuda:N"),
    _p("model.precision", "auto", "numeric precision of inference; auto: tensorrt fp16, onnxruntime fp32, torch bf16 "
       "where the CPU computes it natively (AVX512-bf16/AMX) else fp32; int8: a QDQ model on onnxruntime/tensorrt",
       choices=PRECISIONS),
    _p("model.channels_last", False, "channels_last memory format (torch; faster on CPU with bf16)"),
    _p("model.compile", False, "torch.compile the network (torch backend; the first frames compile for 15-30 s)"),
    _p("model.cuda_graph", False, "capture and replay CUDA graphs (torch and tensorrt backends on CUDA)"),
    _p("model.threads", 0, "intra-op CPU threads; 0: the runtime's default (torch: capped at the CPUs this process "
       "may use: affinity, cgroup quota)", min_value=0, max_value=256),
    _p("model.input_height", 0, "network input height in pixels (multiple of 32); 0: the size the checkpoint was "
       "trained at", min_value=0, max_value=4096),
    _p("model.input_width", 0, "network input width in pixels (multiple of 32); 0: the checkpoint's", min_value=0,
       max_value=4096),
    _p("model.allow_untrained", False, "without weights, run a randomly initialised model.name network instead of "
       "failing to activate (plumbing tests and benchmarks only: its outputs are meaningless)"),
    _p("model.seed", 0, "torch seed for an untrained network (model.allow_untrained)", min_value=0,
       max_value=2**31 - 1),
    # detection
    _p("detection.score_threshold", 0.3, "minimum detection score published", min_value=0.0, max_value=1.0),
    _p("detection.nms_iou", 0.6, "IoU above which overlapping boxes of one class are suppressed",
       min_value=0.0, max_value=1.0),
    _p("detection.vehicle_nms_iou", 0.7, "IoU above which a car box and a truck box are one vehicle: the lower-scoring "
       "one is suppressed (COCO-trained heads score a van or pickup as both); 1: never", min_value=0.0, max_value=1.0),
    _p("detection.max_detections", 100, "at most this many detections per image", min_value=1, max_value=10000),
    _p("detection.classes", list(DETECTION_NAMES), "detection classes to publish (names; LabelInfo lists all)"),
    # inputs
    _p("cameras", ["camera"], "camera namespaces served by this node (relative names); topics below are "
       "resolved inside each: <camera>/<input.topic>, <camera>/detections, ..."),
    _p("input.topic", "image_raw", "image topic inside each camera namespace"),
    _p("input.transport", "raw", "raw: sensor_msgs/Image on <topic>; compressed: sensor_msgs/CompressedImage "
       "on <topic>/compressed (JPEG/PNG)", choices=TRANSPORTS),
    _p("input.camera_info", False, "also subscribe <camera>/camera_info (checked against the image size)"),
    _p("input.qos_reliability", "best_effort", "reliability of the input subscriptions", choices=RELIABILITIES),
    _p("input.qos_depth", 1, "history depth of the input subscriptions", min_value=1, max_value=100),
    _p("input.max_pixels", 16 * 1024 * 1024, "images with more pixels are dropped as bad input",
       min_value=64, max_value=2**31 - 1),
    # outputs
    _p("output.detections", True, "publish <camera>/detections (vision_msgs/Detection2DArray)"),
    _p("output.object_attention", True, "publish <camera>/detections/attention (32FC1, 1 x N: the attention score "
       "of detection i, same header as detections)"),
    _p("output.segmentation", True, "publish <camera>/segmentation (mono8 class ids)"),
    _p("output.segmentation_color", True, "publish <camera>/segmentation/color (rgb8)"),
    _p("output.attention", True, "publish <camera>/attention (32FC1 attention map in [0, 1])"),
    _p("output.label_info", True, "publish <camera>/label_info (vision_msgs/LabelInfo, transient local)"),
    _p("output.annotations", True, "publish <camera>/detections/annotations (foxglove_msgs/ImageAnnotations: 2D "
       "boxes, labels and, with objects.enabled, track ids; Foxglove's Image panel draws them)"),
    _p("output.qos_reliability", "reliable", "reliability of the output publishers", choices=RELIABILITIES),
    _p("output.qos_depth", 2, "history depth of the output publishers", min_value=1, max_value=100),
    _p("output.mask_resolution", "full", "segmentation, segmentation/color and attention images at the input "
       "image's size (full) or at the network's output size, letterbox padding cropped (network: far cheaper; "
       "<camera>/mask/camera_info then gives their size and the camera's K/P scaled to them)",
       choices=MASK_RESOLUTIONS),
    # temporal state
    _p("temporal.enabled", True, "feed the temporal memory (false: every frame starts from an empty memory)"),
    _p("temporal.max_gap_s", 0.5, "a forward jump of the image stamps larger than this resets the memory",
       min_value=0.0, max_value=3600.0),
    _p("temporal.detect_scene_cuts", True, "reset the memory when the picture changes abruptly"),
    _p("temporal.scene_cut_threshold", 0.35, "scene-cut signature distance in [0, 1]", min_value=0.0, max_value=1.0),
    # 3D objects (LiDAR-camera fusion + tracking, perception/ros/nodes/objects_stage.py)
    _p("objects.enabled", False, "fuse each camera's 2D result with the LiDAR scan nearest its stamp and track the "
       "3D objects: <camera>/objects3d, objects/detected, objects/tracked, objects/markers (needs camera_info, "
       "odometry and the extrinsics)"),
    _p("objects.lidar_topic", "points", "sensor_msgs/PointCloud2 (float32 x, y, z, intensity); relative: "
       "<camera>/<lidar_topic> per camera, absolute (/...): one LiDAR shared by every camera"),
    _p("objects.odom_topic", "odom", "nav_msgs/Odometry of the vehicle (odom -> base frame); the pose nearest the "
       "image stamp places the tracks"),
    _p("objects.base_frame", "base_link", "the vehicle frame of Detection3DArray / DetectedObjects (the child "
       "frame of the odometry, the parent of the camera and LiDAR frames on /tf_static)"),
    _p("objects.max_sync_s", 0.05, "an image is fused with the scan whose stamp is nearest within this; none: the "
       "frame is ranged from the camera alone (counted as objects_no_scan)", min_value=0.0, max_value=1.0),
    _p("objects.max_wait_s", 0.1, "after inference, wait at most this long (from the image's arrival) for a scan "
       "that may still come", min_value=0.0, max_value=1.0),
    _p("objects.max_odom_gap_s", 0.2, "odometry farther than this from the image stamp is none: the frame gets no "
       "3D objects (counted as objects_no_odom)", min_value=0.0, max_value=10.0),
    _p("objects.base_T_cam", (), "fallback camera extrinsics when /tf_static has none: 16 numbers, the row-major "
       "4x4 pose of the image's frame (optical: x right, y down, z forward) in the base frame; empty: /tf_static "
       "only"),
    _p("objects.base_T_lidar", (), "fallback LiDAR extrinsics (16 numbers, row-major 4x4, base frame <- LiDAR "
       "frame) when /tf_static has none; empty: /tf_static only"),
    # attention-guided refinement (perception/pipeline/refine.py)
    _p("refine.enabled", NODE_REFINE.enabled, "two passes: the downscaled frame, then up to refine.max_regions "
       "crops at native resolution where the attention map (and small / last frame's small boxes) point; "
       "/diagnostics reports refine.pixel_ratio (pixels processed / full-resolution pixels); false: one pass, a "
       "fixed cost per frame"),
    _p("refine.max_regions", NODE_REFINE.max_regions, "crops per frame at most (each costs about one more pass of "
       "the network)", min_value=0, max_value=64),
    _p("refine.max_pixels", NODE_REFINE.max_pixels, "network-input pixels per frame at most, pass 1 included; 0: no "
       "pixel cap", min_value=0, max_value=2**31 - 1),
    _p("refine.crop_scale", NODE_REFINE.crop_scale, "crop resolution relative to the image (1.0: native pixels)",
       min_value=0.1, max_value=4.0),
    _p("refine.zoom_out", NODE_REFINE.zoom_out, "the zoom-out pass: the whole image at this scale of pass 1, for "
       "objects too large for it (the shipped network loses a vehicle taller than about 200 network pixels: a car "
       "within a few metres); one more pass, before the crops, on a frame whose pass 1 has a candidate at least "
       f"{NODE_REFINE.large_size:g} network pixels tall; /diagnostics reports refine.zoom_out_per_frame; 0: off "
       "(else 0.1..0.9)", min_value=0.0, max_value=0.9),
    _p("refine.deadline_ms", NODE_REFINE.deadline_ms, "crops run (best first) only while the frame's inference, "
       "pass 1 included, is expected to end within this; -1: the camera's frame period, learnt from the steps "
       "between its received header stamps (refinement spends the time the camera leaves: on a slow CPU a fast "
       "camera keeps its rate and gets fewer crops); 0: no deadline (every planned crop runs); /diagnostics reports "
       "refine.deadline_cut_per_frame", min_value=-1.0, max_value=1e6),
    # runtime behaviour
    _p("max_batch", 8, "at most this many cameras' frames in one inference", min_value=1, max_value=64),
    # load shedding under overload (perception/core/shedding.py)
    _p("shedding.priority", [], "camera=N entries (N an integer, higher first; unlisted cameras 0): for "
       "shedding.max_wait_s after a camera of priority N lost a frame to a newer one, inference takes the frames of "
       "priority >= N first and lower ones one at a time when none of those waits; empty: all equal"),
    _p("shedding.max_rate_hz", [], "camera=HZ entries: that camera's frames above HZ are shed on arrival "
       "(reason rate_cap in /diagnostics); unlisted cameras: no cap"),
    _p("shedding.max_wait_s", 1.0, "no starvation: a camera with a frame waiting that was not taken for this long "
       "goes first, whatever the priorities; also how long a lost higher-priority frame holds lower ones back",
       min_value=0.05, max_value=60.0),
    _p("runtime.pipelining", "auto", "enabled: conversion, inference and publishing run as three overlapping "
       "stages (threads, depth-1 hand-offs); disabled: one worker does all three in turn; auto: enabled when this "
       "process may use >= 2 CPUs", choices=PIPELINING),
    _p("runtime.warmup", "auto", "enabled: on activate, one inference on a black frame per camera before subscribing "
       "(first-run costs paid before the first real frame; under systemd READY=1 follows it); auto: enabled when "
       "run by systemd ($NOTIFY_SOCKET set)", choices=PIPELINING),
    _p("diagnostics_period", 1.0, "seconds between /diagnostics messages", min_value=0.05, max_value=60.0),
    _p("autostart", False, "configure and activate by itself after start-up"),
)
PARAMS_BY_NAME: dict[str, ParamSpec] = {p.name: p for p in PERCEPTION_PARAMS}


# ------------------------------------------------------------------------------------------------
# config dataclasses (the same ones serve the node, the CLI runner and the tests)
@dataclass(frozen=True)
class ModelConfig:
    checkpoint: str = ""
    name: str = "stan_mbv2"
    backend: str = "auto"
    device: str = "cpu"
    precision: str = "auto"
    channels_last: bool = False
    threads: int = 0
    fallback: bool = True
    onnx: str = ""
    cache_dir: str = ""
    compile: bool = False
    cuda_graph: bool = False
    input_size: tuple[int, int] = (0, 0)  # (H, W); 0: the checkpoint's training size
    allow_untrained: bool = False
    seed: int = 0

    @property
    def label(self) -> str:
        return self.checkpoint or f"{self.name} (untrained)"


@dataclass(frozen=True)
class DetectionConfig:
    score_threshold: float = 0.3
    nms_iou: float = 0.6
    vehicle_nms_iou: float = 0.7
    max_detections: int = 100
    classes: tuple[str, ...] = DETECTION_NAMES

    @property
    def class_ids(self) -> tuple[int, ...]:
        return tuple(DETECTION_NAMES.index(c) for c in self.classes)


@dataclass(frozen=True)
class InputConfig:
    cameras: tuple[str, ...] = ("camera",)
    topic: str = "image_raw"
    transport: str = "raw"
    camera_info: bool = False
    qos_reliability: str = "best_effort"
    qos_depth: int = 1
    max_pixels: int = 16 * 1024 * 1024

    def image_topic(self, camera: str) -> str:
        suffix = "/compressed" if self.transport == "compressed" else ""
        return f"{camera}/{self.topic}{suffix}"


@dataclass(frozen=True)
class OutputConfig:
    detections: bool = True
    object_attention: bool = True
    segmentation: bool = True
    segmentation_color: bool = True
    attention: bool = True
    label_info: bool = True
    annotations: bool = True
    qos_reliability: str = "reliable"
    qos_depth: int = 2
    mask_resolution: str = "full"


@dataclass(frozen=True)
class TemporalConfig:
    enabled: bool = True
    max_gap_s: float = 0.5
    detect_scene_cuts: bool = True
    scene_cut_threshold: float = 0.35

    @property
    def policy(self) -> ResetPolicy:
        return ResetPolicy(self.max_gap_s, self.scene_cut_threshold, self.detect_scene_cuts)


@dataclass(frozen=True)
class ObjectsConfig:
    """The 3D objects stage (:mod:`perception.ros.nodes.objects_stage`); base_T_* are 4x4 or None (/tf_static only)."""

    enabled: bool = False
    lidar_topic: str = "points"
    odom_topic: str = "odom"
    base_frame: str = "base_link"
    max_sync_s: float = 0.05
    max_wait_s: float = 0.1
    max_odom_gap_s: float = 0.2
    base_T_cam: tuple[float, ...] = ()
    base_T_lidar: tuple[float, ...] = ()

    def lidar_topic_of(self, camera: str) -> str:
        return self.lidar_topic if self.lidar_topic.startswith("/") else f"{camera}/{self.lidar_topic}"


@dataclass(frozen=True)
class PerceptionNodeConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    input: InputConfig = field(default_factory=InputConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    objects: ObjectsConfig = field(default_factory=ObjectsConfig)
    refine: RefineConfig = NODE_REFINE
    max_batch: int = 8
    shedding: SheddingPolicy = field(default_factory=SheddingPolicy)
    pipelining: str = "auto"
    warmup: str = "auto"
    diagnostics_period: float = 1.0
    autostart: bool = False


# ------------------------------------------------------------------------------------------------
def default_values() -> dict[str, Any]:
    return {p.name: p.default for p in PERCEPTION_PARAMS}


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "double"
    if isinstance(v, str):
        return "string"
    if isinstance(v, tuple) and not v:
        return "double array"
    if isinstance(v, (list, tuple)):
        return "string array" if all(isinstance(x, str) for x in v) else "array"
    return type(v).__name__


def check_value(name: str, value: Any) -> Any:
    """One parameter value checked against its spec (type, range, choices); returns it normalised.

    Raises :class:`RosError` naming the parameter, the value and what is allowed.
    """
    spec = PARAMS_BY_NAME.get(name)
    if spec is None:
        raise RosError(f"unknown parameter {name!r}; the perception node declares: {', '.join(PARAMS_BY_NAME)}")
    d = spec.default
    if isinstance(d, bool):
        ok = isinstance(value, bool)
    elif isinstance(d, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(d, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(d, str):
        ok = isinstance(value, str)
    elif isinstance(d, tuple):  # double array
        ok = isinstance(value, (list, tuple)) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                     for x in value)  # fmt: skip
        value = tuple(float(x) for x in value) if ok else value
        if ok and not all(math.isfinite(x) for x in value):
            raise RosError(f"parameter {name!r} must hold finite numbers, got {list(value)}")
    else:  # string array
        ok = isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value)
        value = tuple(value) if ok else value
    if not ok:
        kind = _type_name(d)
        raise RosError(f"parameter {name!r} must be {'an' if kind[0] in 'aeiou' else 'a'} {kind}, got {value!r} "
                       f"({_type_name(value)})")
    if isinstance(value, float) and not math.isfinite(value):
        raise RosError(f"parameter {name!r} must be finite, got {value}")
    if spec.min_value is not None and value < spec.min_value:
        raise RosError(f"parameter {name!r} = {value} is below its minimum {spec.min_value}")
    if spec.max_value is not None and value > spec.max_value:
        raise RosError(f"parameter {name!r} = {value} is above its maximum {spec.max_value}")
    if spec.choices and value not in spec.choices:
        raise RosError(f"parameter {name!r} = {value!r} is not one of: {', '.join(spec.choices)}")
    return value


def _check_names(name: str, values: Sequence[str], what: str) -> None:
    for v in values:
        if not _NAME_RE.match(v):
            raise RosError(
                f"parameter {name!r}: {v!r} is not a valid relative ROS name for a {what} "
                "(letters, digits, '_' and '/' separators; no leading '/' or digit)"
            )


def node_config(values: Mapping[str, Any]) -> PerceptionNodeConfig:
    """Validated config from parameter values (missing names take their defaults).

    Raises :class:`RosError` with the first problem found.
    """
    unknown = sorted(set(values) - set(PARAMS_BY_NAME))
    if unknown:
        raise RosError(f"unknown parameters {unknown}; declared: {', '.join(PARAMS_BY_NAME)}")
    v = {**default_values(), **values}
    v = {k: check_value(k, x) for k, x in v.items()}

    if not DEVICES_RE.match(v["model.device"]):
        raise RosError(f"parameter 'model.device' = {v['model.device']!r}: use cpu, cuda or cuda:N")
    h, w = v["model.input_height"], v["model.input_width"]
    if h % 32 or w % 32 or (h == 0) != (w == 0):
        raise RosError(f"model input size {h}x{w} must be multiples of 32, or both 0 for the checkpoint's size "
                       "(model.input_height/model.input_width)")
    if v["model.precision"] == "fp16" and v["model.device"] == "cpu":
        raise RosError("parameter 'model.precision' = 'fp16' needs a CUDA device; on cpu use fp32 or bf16")
    if v["model.cuda_graph"] and v["model.device"] == "cpu":
        raise RosError("parameter 'model.cuda_graph' needs a CUDA device (model.device: cuda)")
    if not v["model.checkpoint"] and not v["model.name"]:
        raise RosError("set 'model.checkpoint' (a checkpoint path or shipped name) or 'model.name'")
    cameras = v["cameras"]
    if not cameras:
        raise RosError("parameter 'cameras' is empty: list at least one camera namespace, e.g. ['front']")
    if len(set(cameras)) != len(cameras):
        raise RosError(f"parameter 'cameras' lists a camera twice: {list(cameras)}")
    _check_names("cameras", cameras, "camera namespace")
    _check_names("input.topic", [v["input.topic"]], "topic")
    classes = v["detection.classes"]
    bad = [c for c in classes if c not in DETECTION_NAMES]
    if bad or not classes:
        raise RosError(
            f"parameter 'detection.classes' = {list(classes)}: "
            + (f"unknown classes {bad}; " if bad else "empty; ")
            + f"known: {', '.join(DETECTION_NAMES)}"
        )
    outputs = OutputConfig(
        detections=v["output.detections"], object_attention=v["output.object_attention"],
        segmentation=v["output.segmentation"], segmentation_color=v["output.segmentation_color"],
        attention=v["output.attention"], label_info=v["output.label_info"], annotations=v["output.annotations"],
        qos_reliability=v["output.qos_reliability"], qos_depth=v["output.qos_depth"],
        mask_resolution=v["output.mask_resolution"],
    )
    if not (outputs.detections or outputs.segmentation or outputs.segmentation_color or outputs.attention):
        raise RosError("every output is disabled (output.detections/segmentation/segmentation_color/attention): "
                       "enable at least one")
    objects = _objects_config(v)
    try:  # the table's ranges leave gaps: a deadline_ms between -1 and 0, a zoom_out between 0 and 0.1
        refine = RefineConfig(enabled=v["refine.enabled"], max_regions=v["refine.max_regions"],
                              max_pixels=v["refine.max_pixels"], crop_scale=v["refine.crop_scale"],
                              zoom_out=v["refine.zoom_out"], deadline_ms=v["refine.deadline_ms"])
    except RefineError as e:
        raise RosError(f"parameter {e}") from e
    return PerceptionNodeConfig(
        model=ModelConfig(
            checkpoint=v["model.checkpoint"], name=v["model.name"], backend=v["model.backend"],
            device=v["model.device"], precision=v["model.precision"], channels_last=v["model.channels_last"],
            threads=v["model.threads"], input_size=(h, w), allow_untrained=v["model.allow_untrained"],
            seed=v["model.seed"], fallback=v["model.fallback"], onnx=v["model.onnx"], cache_dir=v["model.cache_dir"],
            compile=v["model.compile"], cuda_graph=v["model.cuda_graph"],
        ),
        detection=DetectionConfig(
            score_threshold=v["detection.score_threshold"], nms_iou=v["detection.nms_iou"],
            vehicle_nms_iou=v["detection.vehicle_nms_iou"],
            max_detections=v["detection.max_detections"], classes=tuple(classes),
        ),
        input=InputConfig(
            cameras=tuple(cameras), topic=v["input.topic"], transport=v["input.transport"],
            camera_info=v["input.camera_info"], qos_reliability=v["input.qos_reliability"],
            qos_depth=v["input.qos_depth"], max_pixels=v["input.max_pixels"],
        ),
        output=outputs,
        temporal=TemporalConfig(
            enabled=v["temporal.enabled"], max_gap_s=v["temporal.max_gap_s"],
            detect_scene_cuts=v["temporal.detect_scene_cuts"], scene_cut_threshold=v["temporal.scene_cut_threshold"],
        ),
        objects=objects,
        refine=refine,
        max_batch=v["max_batch"],
        shedding=_shedding_policy(v, tuple(cameras)),
        pipelining=v["runtime.pipelining"],
        warmup=v["runtime.warmup"],
        diagnostics_period=v["diagnostics_period"],
        autostart=v["autostart"],
    )


def per_camera(name: str, entries: Sequence[str], cameras: Sequence[str], kind: type,
               low: float, high: float) -> dict[str, Any]:
    """``camera=value`` entries of a per-camera parameter, checked: a served camera, once, a ``kind`` value in
    [low, high]; :class:`RosError` naming the entry otherwise."""
    out: dict[str, Any] = {}
    for entry in entries:
        cam, sep, text = entry.partition("=")
        cam, text = cam.strip(), text.strip()
        if not sep or not cam:
            raise RosError(f"parameter {name!r}: entry {entry!r} must look like camera=value, e.g. "
                           f"'{cameras[0]}={1 if kind is int else 5.0}'")
        if cam not in cameras:
            raise RosError(f"parameter {name!r}: entry {entry!r} names camera {cam!r}, which is not in 'cameras' "
                           f"{list(cameras)}")
        if cam in out:
            raise RosError(f"parameter {name!r} gives camera {cam!r} twice")
        try:
            value = kind(text)
        except ValueError:
            raise RosError(f"parameter {name!r}: entry {entry!r}: {text!r} is not "
                           f"{'an integer' if kind is int else 'a number'}") from None
        if not (low <= value <= high):  # also refuses NaN
            raise RosError(f"parameter {name!r}: entry {entry!r}: the value must be in [{low:g}, {high:g}]")
        out[cam] = value
    return out


def _shedding_policy(v: Mapping[str, Any], cameras: tuple[str, ...]) -> SheddingPolicy:
    return SheddingPolicy(
        priority=per_camera("shedding.priority", v["shedding.priority"], cameras, int, -1000, 1000),
        max_rate_hz=per_camera("shedding.max_rate_hz", v["shedding.max_rate_hz"], cameras, float, 0.01, 1000.0),
        max_wait_s=v["shedding.max_wait_s"],
    )


def matrix_from_list(values: Iterable[float], name: str) -> np.ndarray:
    """A 4x4 rigid transform from 16 row-major numbers (a parameter); :class:`RosError` otherwise."""
    a = np.asarray(list(values), np.float64)
    if a.size != 16 or not np.isfinite(a).all():
        raise RosError(f"{name} must be 16 finite numbers (a row-major 4x4 transform), got {a.size}")
    m = a.reshape(4, 4)
    rot = m[:3, :3]
    if not np.allclose(m[3], [0, 0, 0, 1]) or not np.allclose(rot @ rot.T, np.eye(3), atol=1e-5) \
            or abs(np.linalg.det(rot) - 1.0) > 1e-5:
        raise RosError(f"{name} is not a rigid transform (rotation must be orthonormal, last row 0 0 0 1): "
                       f"{m.tolist()}")  # fmt: skip
    return m


def _objects_config(v: Mapping[str, Any]) -> ObjectsConfig:
    lidar = v["objects.lidar_topic"]
    _check_names("objects.lidar_topic", [lidar[1:] if lidar.startswith("/") else lidar], "topic")
    _check_names("objects.odom_topic", [v["objects.odom_topic"].lstrip("/")], "topic")
    if not v["objects.base_frame"] or "/" in v["objects.base_frame"] or " " in v["objects.base_frame"]:
        raise RosError(f"parameter 'objects.base_frame' = {v['objects.base_frame']!r} must be a frame id such as "
                       "base_link")
    for name in ("objects.base_T_cam", "objects.base_T_lidar"):
        if v[name]:
            matrix_from_list(v[name], f"parameter {name!r}")
    return ObjectsConfig(
        enabled=v["objects.enabled"], lidar_topic=lidar, odom_topic=v["objects.odom_topic"],
        base_frame=v["objects.base_frame"], max_sync_s=v["objects.max_sync_s"], max_wait_s=v["objects.max_wait_s"],
        max_odom_gap_s=v["objects.max_odom_gap_s"], base_T_cam=tuple(v["objects.base_T_cam"]),
        base_T_lidar=tuple(v["objects.base_T_lidar"]),
    )


def flatten_yaml_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"device": "cpu"}}`` -> ``{"model.device": "cpu"}`` (how rcl reads nested YAML)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten_yaml_params(v, key + "."))
        else:
            out[key] = v
    return out


# synthetic_camera: name -> (default, description)
SYNTHETIC_CAMERA_PARAMS: dict[str, tuple[Any, str]] = {
    "camera": ("camera", "namespace of the published topics"),
    "seed": (2024, "first drive's seed (training used seeds < 1000)"),
    "num_frames": (200, "frames per drive; then the next seed starts (a scene cut)"),
    "max_frames": (0, "stop publishing after this many frames in all; 0: never"),
    "loop": (True, "start the next drive when one ends (false: stop)"),
    "fps": (10.0, "frames per second, real time"),
    "width": (640, "image width in pixels"),
    "height": (384, "image height in pixels"),
    "hfov_deg": (90.0, "horizontal field of view"),
    "lidar": (False, "also render and publish the LiDAR point cloud"),
    "publish_compressed": (False, "also publish <camera>/image_raw/compressed (JPEG)"),
    "frame_id": ("camera_optical_frame", "frame_id of the image, camera_info and ground truth"),
    "lidar_frame_id": ("lidar", "frame_id of the point cloud"),
    "base_frame_id": ("base_link", "the vehicle frame: /tf_static gives base_frame_id -> frame_id (camera optical "
                      "frame) and -> lidar_frame_id, the odometry its pose in odom_frame_id"),
    "odom_frame_id": ("odom", "frame_id of the odometry (the drive's world frame; a new drive restarts it)"),
    "publish_tf": (True, "publish /tf_static (base -> camera, base -> lidar; again when a drive changes the rig) "
                   "and odom -> base on /tf"),
    "odom_topic": ("odom", "nav_msgs/Odometry of the ego vehicle (odom_frame_id -> base_frame_id), stamped like "
                   "the image; empty: not published"),
    "qos_reliability": ("best_effort", "best_effort (sensor data) or reliable"),
    "wait_for_subscribers": (0, "start publishing only once <camera>/image_raw has this many subscribers (e.g. a "
                             "perception node subscribes when its model is loaded); 0: start at once"),
}
