"""``perception replay BAG``: play a rosbag2 bag into the perception graph over real DDS.

The bag's raw CDR bytes are published as they are (``publisher.publish(bytes)``), with the
original timing, at a rate multiplier, or deterministically: frame i+1 goes out only once the
graph's detections for frame i (same header stamp) came back -- back-pressure instead of drops.
Start offset, duration and loops come from :mod:`perception.bag.schedule`; at each loop point
the stamps go back in time, which resets the node's temporal memory (ResetPolicy), and a loop
marker is recorded. The outputs (and optionally the inputs) are recorded to an MCAP bag; every
published input leaves a ``std_msgs/Header`` on ``/replay/events`` (log time = publish time,
stamp = the input's stamp, frame_id = ``publish <topic>``) so latency can be computed later.

By default the player starts a ``perception_node`` process for the bag's cameras (localhost DDS,
private domain); ``--no-node`` plays into a graph that is already running. That node gets SIGTERM when
the player dies, however it dies. SIGTERM to the player is handled like Ctrl-C: the recording is
closed (summary and metadata.yaml written) and the node stopped. The recording's open chunk reaches
the disk every ``RECORD_FLUSH_S``, so after a SIGKILL ``perception bag repair`` recovers all but the
last fraction of a second. The input bag is verified (CRCs, structure) before anything is played.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perception.bag import BagError
from perception.bag.cdr import header_stamp_ns, restamp
from perception.bag.io import BagWriter, is_stamped, open_bag, read_messages
from perception.bag.schedule import LOOP, Event, ReplayOptions, schedule
from perception.core.config import crops_arg, parse_size
from perception.ros.nodes.params import add_model_arguments
from perception.ros.tools.node_process import NodeProcess, NodeStartError
from perception.ros.tools.run import sigterm_as_interrupt
from perception.weights import checkpoint_arg

EVENTS_TOPIC = "/replay/events"
RECORD_FLUSH_S = 0.05
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
OUTPUT_TYPES: dict[str, str] = {  # output key inside a camera namespace -> message type
    "detections": "vision_msgs/msg/Detection2DArray",
    "detections/attention": "sensor_msgs/msg/Image",
    "segmentation": "sensor_msgs/msg/Image",
    "segmentation/color": "sensor_msgs/msg/Image",
    "attention": "sensor_msgs/msg/Image",
}
OUTPUT_PARAMS = {"detections": "output.detections", "detections/attention": "output.object_attention",
                 "segmentation": "output.segmentation", "segmentation/color": "output.segmentation_color",
                 "attention": "output.attention"}


def msg_class(msgtype: str) -> Any:
    pkg, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError) as e:
        raise BagError(f"message type {msgtype} is not installed as a ROS 2 Python package; cannot publish it") from e


def camera_of(image_topic: str) -> tuple[str, str, str]:
    """``/ns/cam/image_raw[/compressed]`` -> (camera namespace, input topic, transport)."""
    topic, transport = image_topic, "raw"
    if topic.endswith("/compressed"):
        topic, transport = topic.removesuffix("/compressed"), "compressed"
    ns, _, name = topic.rstrip("/").rpartition("/")
    return ns or "/", name, transport


@dataclass(frozen=True)
class Message:
    topic: str  # as published (after remapping)
    msgtype: str
    log_ns: int
    raw: bytes
    stamped: bool
    image: bool


@dataclass
class ReplayResult:
    published: int = 0
    images_published: int = 0
    outputs: dict[str, int] = field(default_factory=dict)
    loops: int = 1
    wall_s: float = 0.0
    missing_frames: int = 0  # images without detections (timed mode: dropped by the graph)
    out_bag: Path | None = None

    def summary(self) -> str:
        return (f"replayed {self.images_published} images ({self.published} messages, {self.loops} pass(es)) in "
                f"{self.wall_s:.1f} s; outputs " + ", ".join(f"{t} ({n})" for t, n in sorted(self.outputs.items()))
                + f"; {self.missing_frames} image(s) without detections"
                + (f"; recorded to {self.out_bag}" if self.out_bag else ""))


def is_camera_input(topic: str, msgtype: str, input_topic: str, transport: str) -> bool:
    """Is ``topic`` an input of the perception node (``<camera>/<input_topic>[/compressed]``)?"""
    if transport == "compressed":
        return msgtype == IMAGE_TYPES[1] and topic.endswith(f"/{input_topic}/compressed")
    return msgtype == IMAGE_TYPES[0] and topic.endswith(f"/{input_topic}")


def load_messages(bag: Path, topics: Sequence[str] | None, remap: Mapping[str, str], order_check: bool = True,
                  input_topic: str = "image_raw", transport: str = "auto") -> list[Message]:
    """The bag's messages (raw CDR) in log-time order, topics remapped; validates the bag first.

    Camera inputs are the ``<camera>/<input_topic>`` Images (``transport`` raw) or their ``/compressed``
    CompressedImages; ``auto`` takes raw ones when the bag has any."""
    info = open_bag(bag, topics or ())
    chosen = list(topics) if topics else list(info.topics)
    if transport == "auto":
        raw_inputs = [t for t in chosen if is_camera_input(remap.get(t, t), info.topics[t], input_topic, "raw")]
        transport = "raw" if raw_inputs else "compressed"
    out = []
    for topic, msgtype, log_ns, raw in read_messages(bag, chosen, check_order=order_check):
        name = remap.get(topic, topic)
        out.append(Message(name, msgtype, log_ns, raw, is_stamped(msgtype),
                           is_camera_input(name, msgtype, input_topic, transport)))
    if not out:
        raise BagError(f"bag {bag} has no messages on {', '.join(chosen)}")
    if not any(m.image for m in out):
        raise BagError(f"bag {bag} has no camera images on the replayed topics ({', '.join(chosen)}): the perception "
                       f"node takes <camera>/{input_topic} (sensor_msgs/Image) or <camera>/{input_topic}/compressed; "
                       "--remap the bag's image topic to such a name")
    return out


class Player:
    """Publishes a bag's messages and records what the graph answers. Owns no process."""

    def __init__(self, node: Any, messages: Sequence[Message], writer: BagWriter | None = None,
                 record_inputs: bool = False, outputs: Sequence[str] = tuple(OUTPUT_TYPES), diagnostics: bool = True,
                 ) -> None:
        from rclpy.executors import SingleThreadedExecutor

        from perception.ros.qos import qos_profile

        self.node, self.messages, self.writer, self.record_inputs = node, messages, writer, record_inputs
        self.executor = SingleThreadedExecutor(context=node.context)
        self.executor.add_node(node)
        self.pubs: dict[str, Any] = {}
        for m in messages:
            if m.topic not in self.pubs:
                self.pubs[m.topic] = node.create_publisher(msg_class(m.msgtype), m.topic, qos_profile("reliable", 10))
        self.cameras = sorted({camera_of(m.topic)[0] for m in messages if m.image})
        self.received: dict[tuple[str, int], int] = {}  # (camera, stamp) -> detections received
        self.receipt_ns: dict[tuple[str, int], int] = {}
        self.sent: list[tuple[str, int, int]] = []  # (camera, stamp, publish time ns) of every image sent
        self.output_counts: dict[str, int] = {}
        self.last_output = time.monotonic()
        self.diagnostics: list[Any] = []
        if writer is not None:
            writer.add_topic(EVENTS_TOPIC, "std_msgs/msg/Header")
        for cam in self.cameras:
            for key in outputs:
                topic = f"{cam.rstrip('/')}/{key}"
                node.create_subscription(msg_class(OUTPUT_TYPES[key]), topic, self._on_output(cam, key, topic),
                                         qos_profile("reliable", 50), raw=True)
        if diagnostics:
            node.create_subscription(msg_class("diagnostic_msgs/msg/DiagnosticArray"), "/diagnostics",
                                     self._on_diagnostics, 50, raw=True)

    # -- recording -----------------------------------------------------------------------------
    def _on_output(self, cam: str, key: str, topic: str) -> Callable[[bytes], None]:
        def on(raw: bytes) -> None:
            now = time.time_ns()
            self.last_output = time.monotonic()
            self.output_counts[topic] = self.output_counts.get(topic, 0) + 1
            if key == "detections":
                k = (cam, header_stamp_ns(raw))
                self.received[k] = self.received.get(k, 0) + 1
                self.receipt_ns[k] = now
            if self.writer is not None:
                self.writer.write_raw(topic, OUTPUT_TYPES[key], now, raw)

        return on

    def _on_diagnostics(self, raw: bytes) -> None:
        self.diagnostics.append(raw)
        if self.writer is not None:
            self.writer.write_raw("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", time.time_ns(), raw)

    def _event(self, text: str, stamp: int) -> None:
        if self.writer is not None:
            from perception.bag import messages

            self.writer.write(EVENTS_TOPIC, messages.header(stamp, text), time.time_ns())

    # -- spinning ------------------------------------------------------------------------------
    def spin_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            self.spin_once(0.002)
        return bool(predicate())

    def spin_once(self, timeout: float) -> None:
        """One executor turn; the recording's open chunk goes to disk when due (crash safety)."""
        self.executor.spin_once(timeout_sec=timeout)
        if self.writer is not None:
            self.writer.flush_if_due()

    def wait_for_subscribers(self, timeout: float = 30.0) -> None:
        images = sorted({m.topic for m in self.messages if m.image})
        if not self.spin_until(lambda: all(self.pubs[t].get_subscription_count() > 0 for t in images), timeout):
            lonely = [t for t in images if self.pubs[t].get_subscription_count() == 0]
            raise BagError(f"nobody subscribes to {', '.join(lonely)} after {timeout:.0f} s: is the perception graph "
                           "running on this ROS_DOMAIN_ID (or remap the bag's topics with --remap FROM:=TO)?")

    def publish(self, m: Message, stamp: int | None = None) -> int:
        """Publish one message (restamped to ``stamp`` if given); returns its header stamp (0 if unstamped)."""
        raw: bytes | bytearray = m.raw if stamp is None or not m.stamped else restamp(m.raw, stamp)
        self.pubs[m.topic].publish(bytes(raw) if isinstance(raw, bytearray) else raw)
        s = header_stamp_ns(raw) if m.stamped else 0
        now = time.time_ns()
        if m.image:
            self.sent.append((camera_of(m.topic)[0], s, now))
        if self.writer is not None:
            if m.image:
                self._event(f"publish {m.topic}", s)
            if self.record_inputs:
                self.writer.write_raw(m.topic, m.msgtype, now, raw)
        return s

    def play(self, events: Sequence[Event], deterministic: bool, rate_restamp: bool = False,
             frame_timeout: float = 10.0, retries: int = 2, on_loop: Callable[[], None] | None = None,
             ) -> ReplayResult:
        """Send ``events``; deterministic: wait for each image's detections (re-sent up to ``retries``
        times if lost: best-effort inputs may drop under load; then BagError). ``on_loop`` runs at each
        loop marker (restamped replays do not go back in time, so the caller resets the graph there)."""
        result = ReplayResult(loops=1 + max((e.loop for e in events), default=0))
        t0 = time.perf_counter()
        for e in events:
            if e.kind == LOOP:
                self._event(f"loop {e.loop}", 0)
                if on_loop is not None:
                    on_loop()
                continue
            m = self.messages[e.index]
            if not deterministic:
                while (wait := e.at_s - (time.perf_counter() - t0)) > 0:
                    self.spin_once(min(wait, 0.002))
            stamp = time.time_ns() if rate_restamp else None
            if not (deterministic and m.image):
                self.publish(m, stamp)
                result.published += 1
                result.images_published += int(m.image)
                self.spin_once(0.0)
                continue
            cam = camera_of(m.topic)[0]
            for attempt in range(retries + 1):
                s = self.publish(m, stamp)
                key = (cam, s)
                before = self.received.get(key, 0)
                if self.spin_until(lambda k=key, b=before: self.received.get(k, 0) > b, frame_timeout):  # type: ignore[misc]
                    break
                if attempt == retries:
                    raise BagError(f"no detections on {cam.rstrip('/')}/detections for the frame stamped "
                                   f"{s * 1e-9:.6f} s of {m.topic} within {frame_timeout:.0f} s ({retries + 1} tries): "
                                   "is the perception node alive and subscribed to this topic?")
            result.published += 1
            result.images_published += 1
        result.wall_s = time.perf_counter() - t0
        return result

    def reset_node(self, node_name: str, timeout: float = 10.0) -> None:
        """Call ``/<node_name>/reset`` (std_srvs/Trigger): forget the node's temporal memory."""
        from std_srvs.srv import Trigger

        client = self.node.create_client(Trigger, f"/{node_name}/reset")
        try:
            if not self.spin_until(client.service_is_ready, timeout):
                raise BagError(f"service /{node_name}/reset not available: cannot reset the temporal memory "
                               "at the loop point")
            future = client.call_async(Trigger.Request())
            if not self.spin_until(future.done, timeout) or not future.result().success:
                raise BagError(f"/{node_name}/reset did not succeed at the loop point")
        finally:
            self.node.destroy_client(client)

    def drain(self, quiet_s: float = 1.0, timeout: float = 10.0) -> None:
        """Spin until no output arrived for ``quiet_s`` (or ``timeout``)."""
        self.last_output = time.monotonic()
        self.spin_until(lambda: time.monotonic() - self.last_output > quiet_s, timeout)

    def close(self) -> None:
        self.executor.remove_node(self.node)


# -- the perception node process ---------------------------------------------------------------
def node_params(cameras: Sequence[str], transport: str, input_topic: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """perception_node parameters for replaying into ``cameras`` (root-relative namespaces)."""
    params: dict[str, Any] = {
        "autostart": True, "cameras": [c.strip("/") for c in cameras], "input.topic": input_topic,
        "input.transport": transport, "diagnostics_period": 0.25,
        "model.checkpoint": str(args.get("checkpoint", "stan_s_temporal")),
        "model.threads": int(args.get("threads", 0)), "model.precision": args.get("precision", "fp32"),
        "model.backend": str(args.get("backend", "auto")),
        "detection.score_threshold": float(args.get("score_threshold", 0.3)),
        "input.qos_reliability": "reliable" if args.get("reliable_input") else "best_effort",
        "max_batch": int(args.get("max_batch", 8)),
    }
    size = args.get("input_size")
    if size:
        h, w = parse_size(str(size))
        params["model.input_height"], params["model.input_width"] = h, w
    outputs = args.get("outputs")
    if outputs is not None:
        for key, p in OUTPUT_PARAMS.items():
            params[p] = key in outputs
    params.update(args.get("extra", {}))
    return params


def wait_active(player: Player, run: NodeProcess, timeout: float = 120.0) -> None:
    """Until ``run``'s node reports ``state: active`` on /diagnostics; BagError (with its log) otherwise."""
    from perception.bag.io import deserialize

    def active() -> bool:
        for raw in player.diagnostics[-20:]:
            for st in deserialize(raw, "diagnostic_msgs/msg/DiagnosticArray").status:
                if st.name.startswith(f"{run.name}:") and any(kv.key == "state" and kv.value == "active"
                                                                for kv in st.values):
                    return True
        return False

    try:
        run.wait_ready(active, timeout, player.spin_until)
    except NodeStartError as e:
        raise BagError(f"perception node did not become active: {e}") from e


@sigterm_as_interrupt()  # SIGTERM ends a replay like Ctrl-C: the recording is closed, the node stopped
def replay(bag: Path, out: Path | None, opts: ReplayOptions, *, topics: Sequence[str] | None = None,
           remap: Mapping[str, str] | None = None, record_inputs: bool = False, start_node: bool = True,
           node_args: Mapping[str, Any] | None = None, outputs: Sequence[str] = tuple(OUTPUT_TYPES),
           frame_timeout: float = 20.0, order_check: bool = True, restamp_now: bool = False,
           storage: str = "mcap", compress: bool = False, log_dir: Path | None = None,
           domain_id: int = 0) -> ReplayResult:
    """Replay ``bag`` (see the module doc); rclpy is initialised and shut down here. ``domain_id``: the private
    ROS domain of this replay and its node (0: one derived from this process id, or the environment's when
    the localhost profile is set already); several replays at once (`perception eval --bags --ros`) each
    pass their own."""
    from perception.ros.env import apply_localhost_env, localhost_env

    messages = load_messages(bag, topics, remap or {}, order_check)
    images = sorted({m.topic for m in messages if m.image})
    cams = [camera_of(t) for t in images]
    produced = {f"{c[0].rstrip('/')}/{k}" for c in cams for k in (*OUTPUT_TYPES, "label_info")} | {"/diagnostics"}
    skipped = sorted({m.topic for m in messages if m.topic in produced})
    if skipped:  # e.g. a bag recorded from a perception graph: its old outputs would mix with the new ones
        print(f"[replay] not publishing {', '.join(skipped)}: the perception graph produces them", flush=True)
        messages = [m for m in messages if m.topic not in produced]
    events = schedule([m.log_ns for m in messages], opts)
    if domain_id or not os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        apply_localhost_env(domain_id or None)  # this process joins the private, loopback-only graph of its node
    import rclpy

    # the open chunk reaches the disk every RECORD_FLUSH_S (20 Hz): a killed player loses at most that much
    writer = BagWriter(out, storage, compress, flush_s=RECORD_FLUSH_S) if out is not None else None
    run: NodeProcess | None = None
    context = rclpy.Context()  # its own context: callers may have rclpy initialised already
    rclpy.init(context=context)
    node = rclpy.create_node(f"replay_player_{os.getpid()}", context=context)
    player = Player(node, messages, writer, record_inputs, outputs)
    try:
        if start_node:
            logs = log_dir or Path(tempfile.mkdtemp(prefix="perception_replay_"))
            logs.mkdir(parents=True, exist_ok=True)
            params = node_params([c[0] for c in cams], cams[0][2], cams[0][1], dict(node_args or {}, outputs=outputs))
            run = NodeProcess.perception_node(f"perception_replay_{os.getpid()}", params, logs / "perception_node.log",
                                              localhost_env(int(os.environ["ROS_DOMAIN_ID"])))
            wait_active(player, run)
        player.wait_for_subscribers()
        on_loop = None
        if restamp_now and opts.loops > 1:
            if run is None:
                print("[replay] --restamp with --no-node: stamps never go back, so a loop cannot reset the graph's "
                      "temporal memory", flush=True)
            else:
                on_loop = functools.partial(player.reset_node, run.name)
        result = player.play(events, opts.deterministic, restamp_now, frame_timeout, on_loop=on_loop)
        player.drain(quiet_s=1.0 if opts.deterministic else 1.5)
        if run is not None:
            player.spin_until(lambda: False, 0.3)  # one more diagnostics period
        result.outputs = dict(player.output_counts)
        seen = {(camera_of(m.topic)[0], header_stamp_ns(m.raw)) for m in messages if m.image and m.stamped}
        result.missing_frames = len([k for k in seen if k not in player.received]) if not restamp_now else 0
        result.out_bag = out
        return result
    finally:
        player.close()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        if writer is not None:
            writer.close()
        if run is not None:
            run.stop()


# -- CLI -------------------------------------------------------------------------------------------
def _remaps(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        src, sep, dst = item.partition(":=")
        if not sep or not src.startswith("/") or not dst.startswith("/"):
            raise BagError(f"--remap {item!r} must look like /from/topic:=/to/topic")
        out[src] = dst
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", type=Path, help="rosbag2 bag directory (mcap or sqlite3)")
    p.add_argument("--out", type=Path, default=None, help="record the outputs to this new MCAP bag")
    p.add_argument("--rate", type=float, default=1.0, help="playback rate multiplier (default 1: original timing)")
    p.add_argument("--deterministic", action="store_true",
                   help="every frame processed in order: wait for each frame's detections before the next (and "
                        "every planned refinement crop runs: refine.deadline_ms 0)")
    p.add_argument("--start", type=float, default=0.0, help="start offset in seconds from the bag's first message")
    p.add_argument("--duration", type=float, default=0.0, help="seconds of the bag to play (0: to the end)")
    p.add_argument("--loop", type=int, default=1, metavar="N", help="play the window N times (temporal state resets)")
    p.add_argument("--topics", nargs="*", default=None, help="topics to play (default: all)")
    p.add_argument("--remap", action="append", default=[], metavar="FROM:=TO", help="publish topic FROM as TO")
    p.add_argument("--record-inputs", action="store_true", help="also record the published inputs")
    p.add_argument("--compress", action="store_true", help="zstd-compress each recorded message (smaller bags)")
    p.add_argument("--no-node", action="store_true", help="do not start perception_node (play into a running graph)")
    p.add_argument("--checkpoint", default="stan_s_temporal", type=checkpoint_arg,
                   help="checkpoint path or shipped name for the node")
    add_model_arguments(p, "", "network input HxW (default: the checkpoint's)")
    p.add_argument("--score-threshold", type=float, default=0.3, help="node detection.score_threshold")
    p.add_argument("--refine", type=crops_arg, default=None, metavar="K",
                   help="node refine.max_regions K: attention-guided native-resolution crops (0: refine.enabled "
                        "false, one pass; default: the node's refine.*)")
    p.add_argument("--outputs", default=",".join(OUTPUT_TYPES),
                   help="node outputs to publish and record (comma list of: " + ", ".join(OUTPUT_TYPES) + ")")
    p.add_argument("--frame-timeout", type=float, default=20.0, help="deterministic mode: seconds to wait per frame")
    p.add_argument("--no-order-check", action="store_true", help="accept header stamps that go back in time")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the whole-file CRC check of the bag before playing it (rosbags still checks each chunk's "
                        "CRC as it reads it)")
    p.add_argument("--restamp", action="store_true",
                   help="stamp every message with its publish time (live-like; outputs no longer match the bag's "
                        "ground truth or a golden bag)")
    p.add_argument("--golden", type=Path, default=None,
                   help="compare the recorded outputs with this expected bag; exit 1 on regression (needs --out)")
    p.add_argument("--domain-id", type=int, default=0,
                   help="private ROS_DOMAIN_ID of the replay and its node (default: derived from the process id)")


def refine_params(k: int | None, deterministic: bool = False) -> dict[str, object]:
    """The node's ``refine.*`` for ``--refine K`` (None: the node's defaults; 0: off). Deterministic: no refinement
    deadline (``refine.deadline_ms: 0``), so every planned crop runs however busy the machine is and the outputs
    do not depend on timing (golden comparisons)."""
    params: dict[str, object] = {"refine.deadline_ms": 0.0} if deterministic else {}
    if k is not None:
        params.update({"refine.enabled": k > 0, **({"refine.max_regions": k} if k > 0 else {})})
    return params


def main(args: argparse.Namespace) -> int:
    from perception.bag.io import verify_on_read

    verify_on_read(not args.no_verify)
    try:
        outputs = tuple(o.strip() for o in args.outputs.split(",") if o.strip())
        unknown = [o for o in outputs if o not in OUTPUT_TYPES]
        if unknown:
            raise BagError(f"unknown output(s) {', '.join(unknown)}; choose from {', '.join(OUTPUT_TYPES)}")
        if args.golden is not None and args.out is None:
            raise BagError("--golden compares the recorded outputs: give --out too")
        opts = ReplayOptions(args.rate, args.deterministic, args.start, args.duration, args.loop)
        node_args = {"checkpoint": args.checkpoint, "input_size": args.input_size, "precision": args.precision,
                     "threads": args.threads, "backend": args.backend, "score_threshold": args.score_threshold,
                     "extra": refine_params(args.refine, args.deterministic)}
        result = replay(args.bag, args.out, opts, topics=args.topics, remap=_remaps(args.remap),
                        record_inputs=args.record_inputs, start_node=not args.no_node, node_args=node_args,
                        outputs=outputs, frame_timeout=args.frame_timeout, order_check=not args.no_order_check,
                        compress=args.compress, restamp_now=args.restamp, domain_id=args.domain_id)
    except BagError as e:
        print(f"perception replay: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM (run.Terminated): everything was closed on the way out
        print("perception replay: interrupted" + (f"; the recording {args.out} is closed and readable"
                                                   if args.out is not None and args.out.exists() else ""),
              file=sys.stderr, flush=True)
        return int(getattr(e, "exit_code", 130))
    print(result.summary())
    if args.golden is not None:
        from perception.eval.bags import golden_compare

        report = golden_compare(args.golden, args.out)
        print(report.summary())
        return 0 if report.ok else 1
    return 0
