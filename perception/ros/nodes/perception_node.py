"""``perception_node``: a lifecycle node publishing detections, segmentation and attention per camera.

Thin glue (rclpy <-> :mod:`~perception.ros.nodes.queues` (frames in), :mod:`~perception.ros.nodes.worker` (threads),
:mod:`~perception.ros.nodes.runner` (convert, infer), :mod:`~perception.ros.nodes.outputs` (messages out)); no
perception logic sits on the Node class.

Lifecycle (rclpy.lifecycle):
  configure   read + validate parameters (-> PerceptionNodeConfig; FAILURE with the reason otherwise),
              create publishers, publish LabelInfo (transient local), start /diagnostics
  activate    load the model (Perceptor), start the inference worker, subscribe to the cameras
  deactivate  unsubscribe, stop the worker, release the model
  cleanup     destroy publishers and timers
``autostart: true`` runs configure + activate by itself.

Per camera namespace ``<cam>`` (relative names, remappable), every output with the INPUT header:
  in:  <cam>/<input.topic> (sensor_msgs/Image) or <cam>/<input.topic>/compressed, [<cam>/camera_info]
  out: <cam>/detections (vision_msgs/Detection2DArray), <cam>/detections/attention (32FC1, 1 x N),
       <cam>/segmentation (mono8), <cam>/segmentation/color (rgb8), <cam>/attention (32FC1),
       <cam>/label_info (vision_msgs/LabelInfo, transient local), <cam>/detections/annotations
       (foxglove_msgs/ImageAnnotations: boxes, labels, track ids); /diagnostics at 1 Hz.
  Image outputs (segmentation, segmentation/color, attention, annotations, detections/attention) are
  built only while someone subscribes. ``output.mask_resolution: network`` publishes segmentation,
  segmentation/color and attention at the network's output size (letterbox padding cropped, covering
  the whole image) plus <cam>/mask/camera_info (sensor_msgs/CameraInfo, same header): their width/height,
  and the camera's K and P (from <cam>/camera_info, when subscribed) scaled to that size the way
  image_proc's resize does; zero K/P when no calibration is known (input width / mask width is the scale).
  ``runtime.pipelining`` (auto | enabled | disabled) overlaps conversion, inference and publishing
  (:mod:`perception.ros.nodes.worker`). Under overload, ``shedding.*`` declares whose frames go (per-camera
  priority and rate cap, no starvation past ``shedding.max_wait_s``; :mod:`perception.core.shedding`), and
  /diagnostics counts every shed frame with its reason.
With ``objects.enabled`` (:mod:`perception.ros.nodes.objects_stage`) also camera_info, LiDAR, odometry and
/tf_static in, and 3D objects (vision_msgs, autoware_perception_msgs, markers) out: docs/objects3d.md.
Services: ~/reset (std_srvs/Trigger: forget the temporal memory), ~/enable (std_srvs/SetBool: pause).

/diagnostics tells the truth (levels: :mod:`perception.ros.nodes.stats` per camera, plus node-wide):
  ERROR  configure rejected (one ``<node>: node`` status with the reason, published from the start);
         model failed to load; the inference worker died (restarted, reported for 10 s) or failed for
         good; nothing answered for 2 s while frames arrive; an inference running for over 2 s (stuck);
  WARN   over 50 % of a 5 s window dropped stale, over 10 % malformed, any pipeline/backend failure or
         non-finite output in the window; running on a fallback backend; the model file replaced on
         disk since it was loaded (the loaded model keeps running: re-activate to load the new file).

systemd (``Type=notify`` units from ``perception vehicle install``; inert without ``$NOTIFY_SOCKET``): READY=1
once active, WATCHDOG=1 only while every inference-worker thread beats, STATUS= per-camera rates, STOPPING=1;
under systemd a failed autostart exits 1 at once (docs/vehicle.md).

Shutdown: SIGINT and SIGTERM are handled alike (:func:`perception.ros.spin.spin_until_signal`): the
executor stops, the inference worker is stopped and joined (so nothing publishes after the context
is gone), then rclpy shuts down. The exit code is 0, or 1 when the node never got to work or gave up:
configure rejected (and not fixed since), the model failed to load, or the inference worker died
more than 3 times in 60 s (then the node shuts itself down, for a supervisor to restart it).
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import (
    InvalidParameterTypeException,
    InvalidParameterValueException,
    ParameterUninitializedException,
)
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_srvs.srv import SetBool, Trigger
from vision_msgs.msg import Detection2DArray, LabelInfo

from perception.core.shedding import FrameScheduler
from perception.ros import convert
from perception.ros.errors import RosError
from perception.ros.nodes import engine, outputs, queues, runner
from perception.ros.nodes.declare import descriptor
from perception.ros.nodes.diagnostics import camera_status
from perception.ros.nodes.engine import build_perceptor, model_source, release_perceptor
from perception.ros.nodes.overrides import startup_override_problems
from perception.ros.nodes.params import (
    PARAMS_BY_NAME,
    PERCEPTION_PARAMS,
    ParamSpec,
    PerceptionNodeConfig,
    check_value,
    node_config,
)
from perception.ros.nodes.stats import NodeStats
from perception.ros.nodes.worker import InferenceWorker, pipelining_enabled
from perception.ros.qos import latched, qos_profile
from perception.ros.spin import init_without_signal_handlers, spin_until_signal
from perception.vehicle.watchdog import ServiceWatchdog, status_line

if TYPE_CHECKING:
    from perception.ros.nodes.objects_stage import ObjectsStage

_OUTPUT_TYPES: dict[str, Any] = {
    outputs.DETECTIONS: Detection2DArray,
    outputs.OBJECT_ATTENTION: Image,
    outputs.SEGMENTATION: Image,
    outputs.SEGMENTATION_COLOR: Image,
    outputs.ATTENTION: Image,
}


def _objects_output_types() -> dict[str, Any]:
    from autoware_perception_msgs.msg import DetectedObjects, TrackedObjects
    from vision_msgs.msg import Detection3DArray
    from visualization_msgs.msg import MarkerArray

    return {outputs.OBJECTS3D: Detection3DArray, outputs.OBJECTS_DETECTED: DetectedObjects,
            outputs.OBJECTS_TRACKED: TrackedObjects, outputs.OBJECTS_MARKERS: MarkerArray}


class PerceptionNode(LifecycleNode):
    def __init__(self, node_name: str = "perception", *, argv: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._startup_errors: dict[str, str] = {}  # parameter -> why its override was refused
        for spec in PERCEPTION_PARAMS:
            self._declare(spec)
        # argv: the arguments given to rclpy.init (None: sys.argv); rclpy's merge of them loses values silently
        errors, warnings = startup_override_problems(self, argv, kwargs)
        for name, why in errors.items():
            self._startup_errors.setdefault(name, why)
            self.get_logger().error(f"{why}; configure is refused until it is set right")
        for text in warnings:
            self.get_logger().warning(text)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._cfg: PerceptionNodeConfig | None = None
        self._stats: NodeStats | None = None
        self._pubs: dict[tuple[str, str], Any] = {}
        self._label_pubs: list[Any] = []
        self._diag_timer: Any = None
        self._subs: list[Any] = []
        self._slots: queues.LatestFrameSlots | None = None
        self._runner: runner.PerceptionRunner | None = None
        self._worker: InferenceWorker | None = None
        self._objects: ObjectsStage | None = None
        self._enabled = True
        self._state_label = "unconfigured"
        self._load_error = ""
        self._config_error = ""  # why the last configure was rejected ("" once one succeeds)
        self._fatal = ""  # why the node gave up (the inference worker kept dying)
        self._model_label = ""
        self._model_files: list[Path] = []
        self._model_watch: engine.ModelFileWatch | None = None
        self._reported_changes: list[str] = []
        self.stop_requested = threading.Event()  # set when the node gives up; main() then exits non-zero
        # /diagnostics from the start: a node whose configure is rejected must say so
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._start_diagnostics(self._values().get("diagnostics_period", 1.0))
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_service(SetBool, "~/enable", self._on_enable)
        # systemd (Type=notify): READY=1 once active (model loaded, warm-up answered), WATCHDOG=1 only while the
        # inference worker beats (perception.vehicle.watchdog), STATUS= per-camera rates, STOPPING=1 on exit
        self._systemd = ServiceWatchdog.from_env()
        self._ready = False
        self._watchdog_why = ""
        if self._systemd.enabled and self._systemd.ping_interval_s > 0:
            self.create_timer(self._systemd.ping_interval_s, self._watchdog_tick)
        self._autostart_timer: Any = None
        if self.get_parameter("autostart").value:
            self._autostart_timer = self.create_timer(0.0, self._autostart)

    # -- parameters ----------------------------------------------------------------------------
    def _declare(self, spec: ParamSpec) -> None:
        # an empty array has no type of its own: declared by type (unset reads as the default)
        default = (Parameter.Type.DOUBLE_ARRAY if spec.default == () else Parameter.Type.STRING_ARRAY
                   if spec.default == [] else spec.default)
        try:
            self.declare_parameter(spec.name, default, descriptor(spec))
        except (InvalidParameterValueException, InvalidParameterTypeException) as e:
            # an override from a parameter file that rclpy refuses: keep the node alive, fail configure
            self._startup_errors[spec.name] = f"parameter {spec.name!r}: {e}"
            self.declare_parameter(spec.name, default, descriptor(spec), ignore_override=True)

    def _values(self) -> dict[str, Any]:
        out = {}
        for spec in PERCEPTION_PARAMS:
            try:
                out[spec.name] = self.get_parameter(spec.name).value
            except ParameterUninitializedException:
                out[spec.name] = spec.default
        return out

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        ours = [p for p in params if p.name in PARAMS_BY_NAME]  # use_sim_time etc. are rclpy's business
        if not ours:
            return SetParametersResult(successful=True)
        values = self._values()
        try:
            for p in ours:
                values[p.name] = check_value(p.name, p.value)
            node_config(values)
        except RosError as e:
            return SetParametersResult(successful=False, reason=str(e))
        for p in params:
            self._startup_errors.pop(p.name, None)
        return SetParametersResult(successful=True, reason="takes effect on the next configure")

    @property
    def exit_code(self) -> int:
        """0, or 1 when the node never got to work or gave up (see the module docstring)."""
        return 1 if (self._config_error or self._load_error or self._fatal) else 0

    def _start_diagnostics(self, period: object) -> None:
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
        seconds = float(period) if isinstance(period, (int, float)) and not isinstance(period, bool) else 1.0
        self._diag_timer = self.create_timer(seconds if 0.0 < seconds <= 3600.0 else 1.0, self._publish_diagnostics)

    def _reject(self, reason: str) -> TransitionCallbackReturn:
        self._config_error = reason
        self.get_logger().error(f"configure rejected: {reason}")
        self._publish_diagnostics()  # say so now, not only at the next period
        return TransitionCallbackReturn.FAILURE

    # -- lifecycle -----------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._startup_errors:
            return self._reject("; ".join(self._startup_errors.values()))
        try:
            cfg = node_config(self._values())
        except RosError as e:
            return self._reject(str(e))
        try:
            checkpoint, self._model_label = model_source(cfg.model)
        except RosError as e:
            return self._reject(str(e))
        self._config_error = ""
        self._model_files = engine.model_files(checkpoint, cfg.model.onnx)
        self._cfg = cfg
        self._stats = NodeStats(cfg.input.cameras)
        out_qos = qos_profile(cfg.output.qos_reliability, cfg.output.qos_depth)
        wanted = {
            outputs.DETECTIONS: cfg.output.detections, outputs.OBJECT_ATTENTION: cfg.output.object_attention,
            outputs.SEGMENTATION: cfg.output.segmentation, outputs.SEGMENTATION_COLOR: cfg.output.segmentation_color,
            outputs.ATTENTION: cfg.output.attention,
        }
        for cam in cfg.input.cameras:
            for key, on in wanted.items():
                if on:
                    self._pubs[(cam, key)] = self.create_publisher(_OUTPUT_TYPES[key], f"{cam}/{key}", out_qos)
            if cfg.output.mask_resolution == "network" and (cfg.output.segmentation or cfg.output.segmentation_color
                                                            or cfg.output.attention):
                self._pubs[(cam, outputs.MASK_CAMERA_INFO)] = self.create_publisher(
                    CameraInfo, f"{cam}/{outputs.MASK_CAMERA_INFO}", out_qos)
            if cfg.output.annotations:
                from foxglove_msgs.msg import ImageAnnotations

                self._pubs[(cam, outputs.ANNOTATIONS)] = self.create_publisher(
                    ImageAnnotations, f"{cam}/{outputs.ANNOTATIONS}", out_qos)
            if cfg.objects.enabled:
                for key, msg_type in _objects_output_types().items():
                    self._pubs[(cam, key)] = self.create_publisher(msg_type, f"{cam}/{key}", out_qos)
            if cfg.output.label_info:
                pub = self.create_publisher(LabelInfo, f"{cam}/{outputs.LABEL_INFO}", latched())
                header = convert.make_header(self.get_clock().now().nanoseconds * 1e-9, "")
                pub.publish(convert.label_info_msg(header, cfg.detection.score_threshold))
                self._label_pubs.append(pub)
        self._start_diagnostics(cfg.diagnostics_period)
        self._state_label = "inactive"
        self.get_logger().info(
            f"configured: cameras {list(cfg.input.cameras)}, model {self._model_label}, backend {cfg.model.backend} "
            f"on {cfg.model.device} ({cfg.model.precision}), input "
            + ("the checkpoint's size" if 0 in cfg.model.input_size else "x".join(map(str, cfg.model.input_size[::-1])))
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        cfg, stats = self._cfg, self._stats
        assert cfg is not None and stats is not None
        t0 = time.perf_counter()
        try:
            perceptor = build_perceptor(cfg)
        except Exception as e:  # any load failure (file, runtime): stay inactive and say why
            self._load_error = f"{type(e).__name__}: {e}"
            self.get_logger().error(f"activate failed, model not loaded: {self._load_error}")
            return TransitionCallbackReturn.FAILURE
        self._load_error = ""
        self._model_watch = engine.ModelFileWatch(self._model_files)
        self._reported_changes = []
        self._slots = queues.LatestFrameSlots(cfg.input.cameras, FrameScheduler(cfg.input.cameras, cfg.shedding))
        self._objects = None
        if cfg.objects.enabled:
            from perception.ros.nodes.objects_stage import ObjectsStage

            self._objects = ObjectsStage(cfg.input.cameras, cfg.objects)
        self._runner = runner.PerceptionRunner(
            perceptor, cfg, self._publish, stats, warn=self._log_warning, info=self._log_info, objects=self._objects,
            wants=self._wants,
        )
        if cfg.warmup == "enabled" or (cfg.warmup == "auto" and self._systemd.enabled):
            try:
                seconds = self._runner.warm_up()
            except Exception as e:  # the model cannot answer: as good as not loaded
                self._load_error = f"warm-up inference failed: {type(e).__name__}: {e}"
                self.get_logger().error(f"activate failed: {self._load_error}")
                release_perceptor(perceptor)
                self._runner = self._slots = None
                return TransitionCallbackReturn.FAILURE
            self.get_logger().info(f"warm-up inference answered in {1e3 * seconds:.0f} ms")
        self._worker = InferenceWorker(self._slots, self._runner, cfg.max_batch,
                                              pipelined=pipelining_enabled(cfg.pipelining))
        self._worker.start()
        in_qos = qos_profile(cfg.input.qos_reliability, cfg.input.qos_depth)
        msg_type = CompressedImage if cfg.input.transport == "compressed" else Image
        # The images last: a frame is processed with what its side inputs (camera_info, LiDAR, odometry,
        # /tf_static) delivered before it. DDS announces a participant's subscriptions in creation order,
        # so a publisher that has matched this node's image subscription (a camera waiting for its
        # subscribers) has matched every side-input subscription already; images first left a window
        # in which a frame arrived with no odometry and was counted objects_no_odom.
        if cfg.input.camera_info or self._objects is not None:
            for cam in cfg.input.cameras:
                self._subs.append(self.create_subscription(
                    CameraInfo, f"{cam}/camera_info", functools.partial(self._on_camera_info, cam), in_qos))
        if self._objects is not None:
            self._subscribe_objects(self._objects, in_qos)
        for cam in cfg.input.cameras:
            self._subs.append(self.create_subscription(
                msg_type, cfg.input.image_topic(cam), functools.partial(self._on_image, cam), in_qos))
        self._state_label = "active"
        self._ready = True
        self._systemd.notifier.ready(f"active: {self._model_label}, {len(cfg.input.cameras)} camera(s)")
        self.get_logger().info(
            f"active: model loaded in {time.perf_counter() - t0:.1f} s, pipelining "
            f"{'enabled' if self._worker.pipelined else 'disabled'}, subscribed to "
            + ", ".join(self.resolve_topic_name(cfg.input.image_topic(c)) for c in cfg.input.cameras)
        )
        return super().on_activate(state)

    def _subscribe_objects(self, stage: ObjectsStage, in_qos: Any) -> None:
        """LiDAR (one subscription per distinct topic), odometry and /tf_static for the objects stage."""
        from nav_msgs.msg import Odometry
        from tf2_msgs.msg import TFMessage

        for topic in sorted(stage.scans):
            self._subs.append(self.create_subscription(
                PointCloud2, topic, functools.partial(self._guarded, stage.on_scan, topic), in_qos))
        self._subs.append(self.create_subscription(
            Odometry, stage.config.odom_topic, functools.partial(self._guarded, stage.on_odometry),
            qos_profile("reliable", 50)))
        self._subs.append(self.create_subscription(
            TFMessage, "/tf_static", functools.partial(self._guarded, stage.on_tf_static), latched(100)))

    def _guarded(self, callback: Any, *args: Any) -> None:
        """A sensor message the stage cannot read is logged (throttled), never fatal to the executor."""
        try:
            callback(*args)
        except Exception as e:
            self.get_logger().warning(f"objects stage: ignored a message: {type(e).__name__}: {e}",
                                      throttle_duration_sec=5.0)

    def _log_warning(self, text: str) -> None:
        self.get_logger().warning(text)

    def _log_info(self, text: str) -> None:
        self.get_logger().info(text)

    def _stop_inference(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        if self._worker is not None:
            self._worker.stop()
        if self._runner is not None:
            release_perceptor(self._runner.perceptor)
        self._worker = self._runner = self._slots = None
        self._objects = None
        self._model_watch = None  # the model is released: nothing loaded to compare against

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inference()
        self._state_label = "inactive"
        self.get_logger().info("inactive: unsubscribed, model released")
        return super().on_deactivate(state)

    def _release_outputs(self) -> None:
        for pub in [*self._pubs.values(), *self._label_pubs]:
            self.destroy_publisher(pub)
        self._pubs, self._label_pubs = {}, []
        self._cfg = self._stats = None  # /diagnostics stays: it reports the node-wide state

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_outputs()
        self._state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inference()
        self._release_outputs()
        self._state_label = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error in state {state.label}: releasing everything")
        self._stop_inference()
        self._release_outputs()
        self._state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def _autostart(self) -> None:
        if self._autostart_timer is not None:
            self.destroy_timer(self._autostart_timer)
            self._autostart_timer = None
        ok = self.trigger_configure() == TransitionCallbackReturn.SUCCESS
        if ok:
            ok = self.trigger_activate() == TransitionCallbackReturn.SUCCESS
        if not ok and self._systemd.enabled:  # under systemd: exit 1 now (Restart=on-failure), not time out
            reason = self._config_error or self._load_error or "activation failed"
            self._systemd.notifier.status(f"failed to start: {reason}")
            self.get_logger().fatal(f"could not start ({reason}): exiting for systemd to restart the service")
            self.stop_requested.set()

    # -- callbacks (executor thread: cheap, never inference) ------------------------------------
    def _on_image(self, cam: str, msg: Image | CompressedImage) -> None:
        stats, slots = self._stats, self._slots
        if stats is None:
            return
        stats.received(cam)
        if not self._enabled or slots is None:
            stats.dropped(cam, "paused")
            return
        try:
            stamp: float | None = convert.stamp_to_seconds(msg.header.stamp)
        except Exception:  # a broken header is the worker's to report (dropped as bad input there)
            stamp = None
        shed = slots.put(queues.Pending(cam, msg, time.monotonic(), stamp))
        if shed is not None:  # this frame over its rate cap, or the untaken one it replaced
            stats.shed(cam, shed)

    def _on_camera_info(self, cam: str, msg: CameraInfo) -> None:
        runner_, stats, cfg = self._runner, self._stats, self._cfg
        if runner_ is None or stats is None or cfg is None:
            return
        try:
            runner_.camera_sizes[cam] = convert.camera_info_size(msg, cfg.input.max_pixels)
            runner_.camera_infos[cam] = msg
        except RosError as e:  # malformed calibration: ignored (the last good one stays), counted, logged throttled
            stats.bad_camera_info(cam, f"RosError: {e}")
            self.get_logger().warning(f"camera {cam!r}: camera_info ignored: {e}", throttle_duration_sec=5.0)
            return
        if self._objects is not None:
            self._guarded(self._objects.on_camera_info, cam, msg)

    def _wants(self, cam: str, key: str) -> bool:
        """Someone subscribes to this output now (rcl's matched-subscription count: cheap, thread-safe)."""
        pub = self._pubs.get((cam, key))
        return pub is not None and pub.get_subscription_count() > 0

    def _publish(self, cam: str, key: str, msg: Any) -> None:
        pub = self._pubs.get((cam, key))
        if pub is not None:
            pub.publish(msg)

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if self._runner is None:
            response.success, response.message = False, f"not active ({self._state_label}): nothing to reset"
        else:
            self._runner.reset()
            response.success, response.message = True, "temporal memory of every camera reset"
            self.get_logger().info("temporal memory reset on request")
        return response

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self._enabled = bool(request.data)
        if not self._enabled and self._slots is not None:
            self._slots.clear()
        response.success = True
        response.message = "enabled" if self._enabled else "paused: incoming frames are dropped"
        self.get_logger().info(response.message)
        return response

    def _node_status(self) -> tuple[str, str]:
        """The node-wide (level, message): configure rejected, model not loaded, worker dead or given up."""
        if self._fatal:
            return "error", f"gave up, shutting down: {self._fatal}"
        if self._config_error:
            return "error", f"configure rejected: {self._config_error}"
        if self._load_error:
            return "error", f"model failed to load: {self._load_error}"
        if self._worker is not None:
            return self._worker.health()
        return "ok", ""

    def _watchdog_tick(self) -> None:
        """WATCHDOG=1 only while every inference-worker thread beats (never before READY, never while inactive)."""
        worker = self._worker
        if not self._ready:
            why = "not ready"
        elif worker is None:
            why = f"inference worker not running ({self._state_label})"
        else:
            why = self._systemd.tick(worker.beats, worker.alive(), worker.failure)
        if why and why != self._watchdog_why and self._ready:
            self.get_logger().error(f"systemd watchdog NOT pinged: {why}")
            self._systemd.notifier.status(f"watchdog withheld: {why}")
        elif not why and self._watchdog_why and self._ready:
            self.get_logger().info("systemd watchdog pinged again: the inference worker answers")
        self._watchdog_why = why

    def systemd_stopping(self) -> None:
        """STOPPING=1 (main(), once spinning ends: SIGTERM / SIGINT or the node gave up)."""
        self._ready = False
        self._systemd.notifier.stopping(f"stopping ({self._fatal or 'signal'})")

    def _check_worker(self) -> None:
        worker = self._worker
        if worker is None:
            return
        why = worker.check()
        if why is not None and not worker.failure:
            self.get_logger().error(f"inference worker died ({why}): restarted")
        if worker.failure and not self._fatal:
            self._fatal = worker.failure
            self.get_logger().fatal(f"{worker.failure}: shutting down (exit code 1) for a supervisor to restart")
            self.stop_requested.set()

    def _model_changes(self) -> list[str]:
        changed = self._model_watch.changed() if self._model_watch is not None else []
        if changed and changed != self._reported_changes:
            self.get_logger().warning(f"model file(s) {changed} changed on disk since they were loaded: still running "
                                      "the loaded model; deactivate + activate (or restart) to load the new one")
        self._reported_changes = changed
        return changed

    def _publish_diagnostics(self) -> None:
        self._check_worker()
        cfg, stats, pub = self._cfg, self._stats, self._diag_pub
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        node_level, node_text = self._node_status()
        if cfg is None or stats is None:
            level = node_level
            text = node_text or self._state_label
            msg.status.append(convert.diagnostic_status(
                f"{self.get_name()}: node", level, text, "", {"state": self._state_label}))
            pub.publish(msg)
            self._systemd.notifier.status(text)
            return
        state = self._state_label if self._enabled else f"{self._state_label} (paused)"
        run = self._runner
        runtime = run.perceptor.backend.status() if run is not None else {}
        active = runtime.get("backend.active", cfg.model.backend)
        changed = self._model_changes()
        busy = run.busy_for() if run is not None else 0.0
        serving = self._state_label == "active" and self._enabled
        rates: dict[str, tuple[float, float]] = {}
        for cam, values in stats.snapshot().items():
            rates[cam] = (float(values.get("input_hz", 0.0)), float(values.get("output_hz", 0.0)))
            extra = {"state": state, "backend": active, "device": cfg.model.device,
                     "model": self._model_label, "precision": cfg.model.precision,
                     "input_topic": self.resolve_topic_name(cfg.input.image_topic(cam)),
                     "worker_restarts": len(self._worker.deaths) if self._worker is not None else 0,
                     "pipelining": "" if self._worker is None else "enabled" if self._worker.pipelined else "disabled",
                     "inference_busy_s": busy, "priority": cfg.shedding.priority_of(cam),
                     "max_rate_hz": cfg.shedding.max_rate_hz.get(cam, 0.0), **runtime}
            if self._objects is not None:
                obj_values, problem = self._objects.snapshot(cam)
                values, objects_problem = {**values, **obj_values}, problem
            else:
                objects_problem = ""
            if run is not None and cfg.refine.enabled:  # attention-guided refinement: pixels vs full resolution
                from perception.pipeline.refine import RefiningPerceptor

                if isinstance(run.perceptor, RefiningPerceptor):
                    values = {**values, **run.perceptor.diagnostics(cam)}
            level, text, values = camera_status(
                values, state=state, node_level=node_level, node_text=node_text, serving=serving, busy_s=busy,
                stall_s=stats.thresholds.stall_s, runtime=runtime, active=str(active),
                objects_problem=objects_problem, changed=changed, extra=extra)
            msg.status.append(convert.diagnostic_status(
                f"{self.get_name()}: {cam}", level, text, f"{active}/{cfg.model.device}", values))
        pub.publish(msg)
        if self._systemd.enabled and not self._watchdog_why:
            self._systemd.notifier.status(status_line(state, rates, str(active)))

    def destroy_node(self) -> None:
        self._stop_inference()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the node until SIGINT / SIGTERM (or until it gives up); the exit code as documented above."""
    init_without_signal_handlers(args)
    node = PerceptionNode(argv=args)
    spin_until_signal(node, node.stop_requested, on_stop=node.systemd_stopping)
    return node.exit_code


if __name__ == "__main__":
    sys.exit(main())
