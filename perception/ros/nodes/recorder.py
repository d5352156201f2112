"""incident_recorder: the last N seconds of chosen topics in memory; an MCAP snapshot on a trigger (issue 20 part 4).

Thin rclpy glue over :mod:`perception.vehicle.recorder` (ring buffer, windows, merging) and
:mod:`perception.vehicle.snapshots` (writer thread, crash-safe files, quota). Parameters: the keys of
:data:`~perception.vehicle.recorder.RECORDER_KEYS` (the rig file's ``recording:`` section writes them).

* Topics (``topics``): subscribed generically as serialized messages (``raw=True``: no deserialisation) once a
  publisher appears (checked every 0.5 s: a topic that never appears is listed as missing in /diagnostics);
  the message type and QoS come from the graph (reliable / transient local only if every publisher offers it,
  as rosbag2 does). A type the bag's typestore does not know is refused by name in /diagnostics.
* Triggers: the ``~/snapshot`` service (std_srvs/Trigger, the answer names the snapshot), std_msgs/String on
  ``trigger_topic`` (the text is the reason), and with ``trigger_on_error`` any /diagnostics status turning
  ERROR (this node's own status excluded).
* /diagnostics ``<node>: recorder``: ring bytes vs budget, seconds held, topics recording / missing / refused,
  dropped (too large), snapshots written / failed, the last one; WARN when a topic is missing, the budget
  holds less than ``before_s``, a message was too large or a snapshot failed; ERROR if the writer thread died.
* systemd (``Type=notify``): READY=1 once subscribed to what exists; WATCHDOG=1 only while the executor and the
  writer thread both come round; STATUS=; STOPPING=1. SIGTERM: collecting snapshots are closed at once (their
  ``incident.json`` says ``cut_short``) and written before the process exits.

Receive times (this computer's wall clock, as rosbag2 records) define the windows and are the bag's log times.
Exit codes: 0 after SIGINT / SIGTERM, 2 for invalid parameters (each problem logged with its fix), 1 when the
snapshot directory cannot be created or written.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
from std_msgs.msg import String
from std_srvs.srv import Trigger

from perception.ros.qos import qos_profile
from perception.ros.spin import init_without_signal_handlers, spin_until_signal
from perception.vehicle.recorder import (
    RECORDER_KEYS,
    ErrorEdges,
    Recorder,
    RecorderConfigError,
    recorder_config,
    subscription_qos,
)
from perception.vehicle.snapshots import SnapshotResult, SnapshotWriter
from perception.vehicle.watchdog import ServiceWatchdog

DEPTH = 100  # history per subscription: absorbs a busy executor for a few seconds at 30 Hz


def message_class(msgtype: str) -> Any:
    """``pkg/msg/Name`` -> the Python message class (ImportError / AttributeError if not installed)."""
    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def _level(value: Any) -> int:
    return value[0] if isinstance(value, bytes | bytearray) else int(value)


class RecorderNode(Node):
    def __init__(self, argv: list[str] | None = None) -> None:
        super().__init__("incident_recorder")
        values: dict[str, Any] = {}
        for key, spec in RECORDER_KEYS.items():
            # any type accepted here: recorder_config() says what is wrong and how to fix it
            if spec.kind is list:  # [] has no type: declared as a string array without a default
                desc = ParameterDescriptor(description=spec.help)
                values[key] = self.declare_parameter(key, Parameter.Type.STRING_ARRAY, desc).value
            else:
                desc = ParameterDescriptor(description=spec.help, dynamic_typing=True)
                values[key] = self.declare_parameter(key, spec.default, desc).value
        if values["topics"] is None:
            values["topics"] = []
        self.cfg = cfg = recorder_config(values)  # RecorderConfigError: main() logs it and exits 2
        self.status_name = f"{self.get_name()}: recorder"
        self.topics: list[tuple[str, str]] = []  # index -> (topic, message type)
        self._latched: set[int] = set()
        self._subscribed: dict[str, Any] = {}
        self.refused: dict[str, str] = {}  # topic -> why it is not recorded
        self.writer = SnapshotWriter(cfg.directory, self.topics.__getitem__, before_s=cfg.before_s,
                                     after_s=cfg.after_s, quota_bytes=int(cfg.quota_gb * (1 << 30)),
                                     min_free_bytes=int(cfg.min_free_gb * (1 << 30)),
                                     max_pending_bytes=cfg.budget_bytes // 2, on_done=self._on_done)
        leftovers = self.writer.start()
        if leftovers:
            self.get_logger().warning(f"removed unfinished snapshot(s) of an earlier run: {', '.join(leftovers)}")
        self.recorder = Recorder(cfg, self.writer, latched=self._latched.__contains__)
        self._edges = ErrorEdges(ignore=(self.status_name,))
        self._done: list[SnapshotResult] = []
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_service(Trigger, "~/snapshot", self._on_service)
        if cfg.trigger_topic:
            self.create_subscription(String, cfg.trigger_topic, self._on_trigger_topic, 10)
        if cfg.trigger_on_error:
            self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self._beat = time.monotonic()
        self.create_timer(0.1, self._tick)
        self.create_timer(0.5, self._discover)
        self.create_timer(1.0, self._publish_diagnostics)
        self._systemd = ServiceWatchdog.from_env()
        if self._systemd.ping_interval_s:
            self.create_timer(self._systemd.ping_interval_s, self._watchdog_tick)
        self._discover()
        self._systemd.notifier.ready(self._status_text())
        self.get_logger().info(
            f"recording {len(cfg.topics)} topic(s) into {cfg.directory}: {cfg.before_s:g} s before / {cfg.after_s:g} s "
            f"after a trigger, budget {cfg.budget_mb:g} MB, quota {cfg.quota_gb:g} GB; triggers: ~/snapshot"
            + (f", {cfg.trigger_topic}" if cfg.trigger_topic else "") + (", /diagnostics ERROR"
                                                                          if cfg.trigger_on_error else ""))

    # -- topics ------------------------------------------------------------------------------------------------
    def _discover(self) -> None:
        missing = [t for t in self.cfg.topics if t not in self._subscribed and t not in self.refused]
        if not missing:
            return
        types = dict(self.get_topic_names_and_types())
        for topic in missing:
            if topic not in types:
                continue
            msgtype = types[topic][0]
            if len(types[topic]) > 1:
                self.get_logger().warning(f"{topic} is published with several types {types[topic]}; recording "
                                          f"{msgtype}")
            infos = self.get_publishers_info_by_topic(topic)
            if not infos:
                continue
            try:
                cls = message_class(msgtype)
                from perception.bag.typestore import typestore

                if msgtype not in typestore().fielddefs:
                    raise LookupError("the bag typestore does not know it (perception/bag/typestore.py)")
            except (ImportError, AttributeError, ValueError, LookupError) as e:
                self.refused[topic] = f"{msgtype}: {e}"
                self.get_logger().error(f"not recording {topic} ({msgtype}): {e}")
                continue
            reliable, latched = subscription_qos(
                [(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE,
                  i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL) for i in infos])
            qos = qos_profile("reliable" if reliable else "best_effort",
                              self.cfg.latched_keep if latched else DEPTH, transient_local=latched)
            index = len(self.topics)
            self.topics.append((topic, msgtype))
            if latched:
                self._latched.add(index)
            self._subscribed[topic] = self.create_subscription(cls, topic, self._callback(index), qos, raw=True)
            self.get_logger().info(f"recording {topic} ({msgtype}, {'reliable' if reliable else 'best effort'}"
                                   + (", transient local" if latched else "") + ")")

    def _callback(self, index: int) -> Any:
        on_message, clock = self.recorder.on_message, time.time_ns

        def on(raw: bytes) -> None:  # the whole per-message cost: a clock read and a deque append
            on_message(index, raw, clock())

        return on

    @property
    def missing(self) -> list[str]:
        return [t for t in self.cfg.topics if t not in self._subscribed and t not in self.refused]

    # -- triggers ----------------------------------------------------------------------------------------------
    def trigger(self, kind: str, reason: str) -> str:
        n_open = self.recorder.stats.opened
        snap = self.recorder.trigger(kind, reason, time.time_ns())
        new = self.recorder.stats.opened > n_open
        text = (f"snapshot {snap.name}" if new else f"merged into snapshot {snap.name}") + \
            f" ({kind}{': ' + reason if reason else ''}): window {self.cfg.before_s:g} s before, " \
            f"{self.cfg.after_s:g} s after; held {snap.before_held_s:.1f} s before"
        self.get_logger().warning(text)
        return text

    def _on_service(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.message = self.trigger("service", "~/snapshot called")
        response.success = True
        return response

    def _on_trigger_topic(self, msg: String) -> None:
        self.trigger("topic", msg.data[:200])

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for name in self._edges.update([(st.name, _level(st.level)) for st in msg.status]):
            text = next((st.message for st in msg.status if st.name == name), "")
            self.trigger("diagnostics", f"{name} ERROR: {text}"[:200])

    # -- housekeeping ------------------------------------------------------------------------------------------
    def _tick(self) -> None:
        self._beat = time.monotonic()
        self.recorder.tick(time.time_ns())

    def _on_done(self, res: SnapshotResult) -> None:  # writer thread
        self._done.append(res)
        if res.ok:
            self.get_logger().info(f"snapshot written: {res.path} ({res.messages} messages, {res.bytes / 1e6:.1f} MB, "
                                   f"{res.write_s:.2f} s after its window)"
                                   + (f"; quota deleted {', '.join(res.deleted)}" if res.deleted else ""))

    def _status(self) -> tuple[int, str]:
        ring, cfg = self.recorder.ring, self.cfg
        if not self.writer.alive():
            return 2, f"snapshot writer thread died: {self.writer.failure or 'unknown'}"
        problems = []
        if self.missing:
            problems.append(f"never published: {', '.join(self.missing)}")
        if self.refused:
            problems.append(f"not recordable: {', '.join(self.refused)}")
        if ring.evicted_young:
            problems.append(f"budget holds only {ring.span_s(time.time_ns()):.1f} s of {cfg.before_s:g} s")
        if ring.dropped_too_large:
            problems.append(f"{ring.dropped_too_large} message(s) over {cfg.max_message_mb:g} MB dropped")
        failed = [r for r in self._done if not r.ok]
        if failed:
            problems.append(f"{len(failed)} snapshot(s) failed, last: {failed[-1].error}")
        return (1, "; ".join(problems)) if problems else (0, "recording")

    def _status_text(self) -> str:
        ring = self.recorder.ring
        return (f"recording {len(self._subscribed)}/{len(self.cfg.topics)} topics, "
                f"{ring.span_s(time.time_ns()):.1f} s, {ring.bytes / 1e6:.1f}/{self.cfg.budget_mb * 1.048576:.1f} MB, "
                f"{sum(r.ok for r in self._done)} snapshot(s)")

    def _publish_diagnostics(self) -> None:
        ring, stats = self.recorder.ring, self.recorder.stats
        level, text = self._status()
        ok = [r for r in self._done if r.ok]
        values = {
            "ring_mb": f"{ring.bytes / 1e6:.2f}", "budget_mb": f"{self.cfg.budget_bytes / 1e6:.2f}",
            "held_s": f"{ring.span_s(time.time_ns()):.2f}", "messages_buffered": str(len(ring)),
            "messages_received": str(ring.appended), "dropped_too_large": str(ring.dropped_too_large),
            "evicted_for_budget": str(ring.evicted_young), "topics_recording": str(len(self._subscribed)),
            "topics_missing": ", ".join(self.missing), "topics_refused": "; ".join(
                f"{t} ({why})" for t, why in self.refused.items()),
            "snapshots_open": str(len(self.recorder.open)), "snapshots_written": str(len(ok)),
            "snapshots_failed": str(len(self._done) - len(ok)), "last_snapshot": ok[-1].path if ok else "",
            "triggers_merged": str(stats.merged), "triggers_capped": str(stats.triggers_capped),
            "pending_write_mb": f"{self.writer.pending_bytes / 1e6:.2f}",
            **{f"triggers_{k}": str(v) for k, v in stats.triggers.items()},
        }
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [DiagnosticStatus(level=bytes([level]), name=self.status_name, message=text,
                                       hardware_id="incident_recorder",
                                       values=[KeyValue(key=k, value=v) for k, v in values.items()])]
        self._diag_pub.publish(msg)
        self._systemd.notifier.status(self._status_text())

    def _watchdog_tick(self) -> None:
        why = self._systemd.tick({"executor": self._beat, "writer": self.writer.heartbeat}, self.writer.alive(),
                                 self.writer.failure if not self.writer.alive() else "")
        if why:
            self.get_logger().error(f"systemd watchdog NOT pinged: {why}")

    def shutdown(self) -> None:
        """Spinning ended (SIGTERM / SIGINT): close the collecting snapshots, let the writer finish them."""
        self._systemd.notifier.stopping("stopping: writing open snapshots")
        self.recorder.close_all("recorder shut down before the after-window ended", time.time_ns())
        if not self.writer.stop(timeout=60.0):
            self.get_logger().error("the snapshot writer did not finish within 60 s")


def main(args: list[str] | None = None) -> int:
    import rclpy

    init_without_signal_handlers(args)
    try:
        node = RecorderNode(argv=args)
    except RecorderConfigError as e:
        for problem in e.problems:
            print(f"incident_recorder: {problem}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        return 2
    except OSError as e:  # the snapshot directory cannot be made or written
        print(f"incident_recorder: cannot use the snapshot directory: {e}; create it writable for this user "
              "or set `directory`", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        return 1
    executor = None
    if os.environ.get("PERCEPTION_RECORDER_EXECUTOR", "events") == "events":
        # rclpy's C++ events executor: a fraction of the Python executor's cost per message (docs/vehicle.md)
        from rclpy.experimental import EventsExecutor

        executor = EventsExecutor()
    spin_until_signal(node, on_stop=node.shutdown, executor=executor)
    return 0


if __name__ == "__main__":
    sys.exit(main())
