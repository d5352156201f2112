"""``perception bench ros``: what the ROS layer costs on top of the model, measured side by side.

1. Model only: ``Perceptor.process`` on the frames in this process (the same config the node builds).
2. End to end: this process publishes each frame (sensor_msgs/Image) to a perception_node running
   in ANOTHER process (localhost DDS, private domain) and times publish -> Detection2DArray
   received; the next frame goes out once the node has published every output of the previous
   one, so latencies never include queueing. Goal: end-to-end median <= 1.15 x model only.
3. Conversion throughput: message -> numpy for each input encoding, and the output builders.
Model-only and end-to-end runs alternate frame by frame, so both see the same machine load.
4. The node's frame path in this process: ``PerceptionRunner.process`` on real rclpy publishers with
   subscribers, minus ``Perceptor.process_batch`` = what the ROS side costs per frame (conversion,
   message building, publishing), for: detections + attention subscribed, every output subscribed,
   every output at network resolution.
The node's own split of its frame path (receive -> convert -> Perceptor -> build + publish, p50 from
/diagnostics) is listed too. ``--subscribe`` chooses what this process subscribes to (the node builds
image outputs only for subscribers): ``attention`` (detections + attention) or ``all`` (every output).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from perception.core.config import count_arg, parse_size, warmup_arg
from perception.ros.nodes.params import add_model_arguments
from perception.weights import checkpoint_arg

GOAL_RATIO = 1.15


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("out/bench"))
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--frames", type=count_arg, default=30, help="timed frames per pass")
    p.add_argument("--warmup", type=warmup_arg, default=3)
    p.add_argument("--model", default="stan_s_temporal", help="registry name (shipped weights if any)")
    p.add_argument("--checkpoint", default=None, type=checkpoint_arg,
                   help="checkpoint path stem or shipped name (overrides --model's weights)")
    add_model_arguments(p, "384x640", "network input HxW")  # also used by the model-only timing
    p.add_argument("--skip-e2e", action="store_true", help="only conversion throughput and model time")
    p.add_argument("--pipelining", default="auto", choices=("auto", "enabled", "disabled"),
                   help="runtime.pipelining of the node")
    p.add_argument("--mask-resolution", default="full", choices=("full", "network"),
                   help="output.mask_resolution of the node")
    p.add_argument("--subscribe", default="attention", choices=("attention", "all"),
                   help="outputs this process subscribes to: detections + attention, or every output")
    p.add_argument("--frame-path-frames", type=int, default=12,
                   help="frames per scenario of the in-process frame-path split (0: skip it)")


def _frames(n: int, h: int, w: int) -> list[np.ndarray]:
    """Synthetic-world frames if the sim is available (realistic content), else smooth noise."""
    try:
        from perception.sim.config import SimConfig
        from perception.sim.drive import generate_sequence

        cfg = SimConfig(width=w, height=h)
        return [f.rgb for f in generate_sequence(4242, min(n, 12), cfg)] * (n // min(n, 12) + 1)
    except ImportError:
        import cv2

        rng = np.random.default_rng(0)
        return [cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (9, 9), 0) for _ in range(n)]


def conversion_rows(h: int, w: int, iters: int = 30) -> list[dict[str, Any]]:
    import cv2

    from perception.core.types import Detections
    from perception.ros import convert

    rgb = np.random.default_rng(1).integers(0, 255, (h, w, 3), dtype=np.uint8)
    header = convert.make_header(1.0, "cam")
    msgs: dict[str, Any] = {
        "rgb8": convert.array_to_image(rgb, header, "rgb8"),
        "bgr8": convert.array_to_image(rgb[..., ::-1], header, "bgr8"),
    }
    for enc, code in (("rgba8", cv2.COLOR_RGB2RGBA), ("bgra8", cv2.COLOR_RGB2BGRA)):
        a = cv2.cvtColor(rgb, code)
        m = convert.array_to_image(rgb, header, "rgb8")
        m.encoding, m.step, m.data = enc, w * 4, a.tobytes()
        msgs[enc] = m
    mono = convert.array_to_image(rgb[..., 0].copy(), header, "mono8")
    msgs["mono8"] = mono
    msgs["jpeg"] = convert.rgb_to_compressed(rgb, header, "jpeg", 90)
    rows = []
    for name, msg in msgs.items():
        fn = convert.message_to_rgb
        fn(msg)
        t0 = time.perf_counter()
        for _ in range(iters):
            fn(msg)
        dt = (time.perf_counter() - t0) / iters
        rows.append({"name": f"{name} -> rgb array", "ms_per_call": 1e3 * dt, "frames_per_s": 1 / dt,
                     "GB_per_s": h * w * 3 / dt / 1e9})
    n = 100
    det = Detections(np.tile([[10, 20, 110, 220]], (n, 1)).astype(np.float32), np.full(n, 0.5, np.float32),
                     np.zeros(n, np.int64), np.ones(n, np.float32))
    seg = np.zeros((h, w), np.uint8)
    att = np.zeros((h, w), np.float32)
    builders = {
        "detections_to_msg (100 objects)": lambda: convert.detections_to_msg(det, header),
        "segmentation mono8 msg": lambda: convert.array_to_image(seg, header, "mono8"),
        "attention 32FC1 msg": lambda: convert.array_to_image(att, header, "32FC1"),
        "segmentation/color (palette + rgb8 msg)": lambda: convert.array_to_image(convert.colorize(seg), header,
                                                                                  "rgb8"),
    }
    for name, build in builders.items():
        build()
        t0 = time.perf_counter()
        for _ in range(iters):
            build()
        dt = (time.perf_counter() - t0) / iters
        rows.append({"name": name, "ms_per_call": 1e3 * dt, "frames_per_s": 1 / dt})
    return rows


def frame_path_rows(args: argparse.Namespace, frames: list[np.ndarray]) -> list[dict[str, Any]]:
    """Per frame, the node's runner with real publishers (subscribed in this process): total, Perceptor and
    the rest (the ROS side), medians in ms, for three subscription / mask-resolution scenarios."""
    from perception.ros.env import apply_localhost_env

    apply_localhost_env()
    import rclpy
    from foxglove_msgs.msg import ImageAnnotations
    from sensor_msgs.msg import CameraInfo, Image
    from vision_msgs.msg import Detection2DArray

    from perception.ros import convert
    from perception.ros.nodes import outputs, queues, runner
    from perception.ros.nodes.engine import build_perceptor, release_perceptor
    from perception.ros.nodes.params import default_values, node_config
    from perception.ros.nodes.stats import NodeStats

    types: dict[str, Any] = {
        outputs.DETECTIONS: Detection2DArray, outputs.OBJECT_ATTENTION: Image, outputs.SEGMENTATION: Image,
        outputs.SEGMENTATION_COLOR: Image, outputs.ATTENTION: Image, outputs.ANNOTATIONS: ImageAnnotations,
        outputs.MASK_CAMERA_INFO: CameraInfo}
    scenarios = (("detections + attention subscribed", "full", (outputs.DETECTIONS, outputs.ATTENTION)),
                 ("every output subscribed, full resolution", "full", tuple(types)),
                 ("every output subscribed, network resolution", "network", tuple(types)))
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("bench_frame_path", context=ctx)
    rows = []
    try:
        pubs = {k: node.create_publisher(t, f"/frame_path/{k}", 2) for k, t in types.items()}
        subs: list[Any] = []
        for name, resolution, subscribed in scenarios:
            for sub in subs:
                node.destroy_subscription(sub)
            subs = [node.create_subscription(types[k], f"/frame_path/{k}", lambda m: None, 2) for k in subscribed]
            values = {**default_values(), **_node_params(args), "cameras": ["fp"], "output.mask_resolution": resolution}
            cfg = node_config(values)
            perceptor = build_perceptor(cfg)
            spent: list[float] = []
            process_batch = perceptor.process_batch

            def timed(batch: list[Any], inner: Any = process_batch, log: list[float] = spent) -> Any:
                t0 = time.perf_counter()
                try:
                    return inner(batch)
                finally:
                    log.append(time.perf_counter() - t0)

            perceptor.process_batch = timed  # type: ignore[method-assign,assignment]
            r = runner.PerceptionRunner(perceptor, cfg, lambda c, k, m: pubs[k].publish(m), NodeStats(("fp",)),
                                        warn=lambda s: None, wants=lambda c, k: pubs[k].get_subscription_count() > 0)
            totals = []
            try:
                for i, rgb in enumerate(frames[: 2 + args.frame_path_frames]):
                    msg = convert.array_to_image(rgb, convert.make_header(100.0 + 0.1 * i, "fp"), "rgb8")
                    t0 = time.perf_counter()
                    r.process([queues.Pending("fp", msg, time.monotonic(), 100.0 + 0.1 * i)])
                    totals.append(time.perf_counter() - t0)
            finally:
                release_perceptor(perceptor)
            tot, per = statistics.median(totals[2:]), statistics.median(spent[2:])
            ros = statistics.median([t - s for t, s in zip(totals[2:], spent[2:])])
            rows.append({"name": f"frame path: {name}", "median_ms": 1e3 * tot, "perceptor_ms": 1e3 * per,
                         "ros_side_ms": 1e3 * ros})
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    return rows


def _node_params(args: argparse.Namespace) -> dict[str, Any]:
    ih, iw = parse_size(args.input_size)
    return {"model.name": args.model, "model.checkpoint": args.checkpoint or "", "model.input_height": ih,
            "model.input_width": iw, "model.precision": args.precision, "model.threads": args.threads,
            "model.backend": args.backend, "runtime.pipelining": args.pipelining,
            "output.mask_resolution": args.mask_resolution,
            # one pass on both sides: refinement's crops follow a deadline, which would make the two sides differ
            "refine.enabled": False,
            "cameras": ["bench"], "autostart": True, "diagnostics_period": 1.0}


def end_to_end(args: argparse.Namespace, frames: list[np.ndarray]) -> tuple[list[float], list[float], dict[str, str]]:
    """Per frame, interleaved under the same machine load: model-only time in this process, then
    publish -> Detection2DArray received from the node in another process (seconds each)."""
    from perception.pipeline.perceptor import FrameInput
    from perception.ros.env import apply_localhost_env, localhost_env
    from perception.ros.nodes.engine import build_perceptor, release_perceptor
    from perception.ros.nodes.params import node_config
    from perception.ros.tools.node_process import NodeProcess

    domain = apply_localhost_env()  # this process too, before rclpy.init
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    from perception.ros import convert

    tmp = Path(tempfile.mkdtemp(prefix="bench_ros_"))
    node_proc = NodeProcess.perception_node("perception_bench", _node_params(args), tmp / "node.log",
                                            localhost_env(domain))
    rclpy.init()
    node = rclpy.create_node("bench_client")
    received: dict[float, float] = {}
    last_att: list[float] = []
    diag: dict[str, str] = {}

    def on_det(m: Any) -> None:
        received.setdefault(convert.stamp_to_seconds(m.header.stamp), time.perf_counter())

    def on_diag(m: Any) -> None:
        for st in m.status:
            if "perception_bench" in st.name:
                diag.clear()
                diag.update({kv.key: kv.value for kv in st.values})

    node.create_subscription(Detection2DArray, "/bench/detections", on_det, 10)
    node.create_subscription(Image, "/bench/attention", lambda m: last_att.append(convert.stamp_to_seconds(
        m.header.stamp)), 10)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    if args.subscribe == "all":
        from foxglove_msgs.msg import ImageAnnotations

        for topic, typ in (("segmentation", Image), ("segmentation/color", Image), ("detections/attention", Image),
                           ("detections/annotations", ImageAnnotations)):
            node.create_subscription(typ, f"/bench/{topic}", lambda m: None, 10)
    pub = node.create_publisher(Image, "/bench/image_raw", qos_profile_sensor_data)

    def spin_until(pred: Any, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            rclpy.spin_once(node, timeout_sec=0.002)
        return bool(pred())

    latencies: list[float] = []
    model_times: list[float] = []
    perceptor = build_perceptor(node_config(_node_params(args)))
    try:
        node_proc.wait_ready(lambda: diag.get("state") == "active", 120.0, spin_until)
        base = time.time()
        for i, rgb in enumerate(frames[: args.warmup + args.frames]):
            t0 = time.perf_counter()
            perceptor.process(FrameInput("bench", rgb, 0.1 * i))
            if i >= args.warmup:
                model_times.append(time.perf_counter() - t0)
            stamp = base + 0.1 * i
            msg = convert.array_to_image(rgb, convert.make_header(stamp, "bench"), "rgb8")
            for _attempt in range(3):  # best effort: a lost frame is re-sent, never counted
                t0 = time.perf_counter()
                pub.publish(msg)
                if spin_until(lambda s=stamp: s in received, 10.0):
                    break
            else:
                raise RuntimeError(f"no detections for frame {i}; node log: {tmp / 'node.log'}")
            if i >= args.warmup:
                latencies.append(received[stamp] - t0)
            spin_until(lambda s=stamp: bool(last_att) and last_att[-1] >= s, 5.0)
        spin_until(lambda: False, 1.1)  # one more diagnostics period
        return model_times, latencies, dict(diag)
    finally:
        release_perceptor(perceptor)
        node.destroy_node()
        rclpy.try_shutdown()
        node_proc.stop()


def run(args: argparse.Namespace) -> int:
    from perception.bench.report import Report

    h, w = args.height, args.width
    report = Report(f"ROS 2 layer at {w}x{h}: end-to-end vs model only, conversion throughput")
    frames = _frames(args.warmup + args.frames, h, w)
    rows = conversion_rows(h, w)
    if not args.skip_e2e:
        model_times, e2e, diag = end_to_end(args, frames)
        report.add_timing("model only (Perceptor.process, same process)", model_times)
        report.add_timing("end to end (publish -> Detection2DArray in another process)", e2e)
        ratio = statistics.median(e2e) / statistics.median(model_times)
        report.add_ratios("model only (Perceptor.process, same process)", column="x_model_only")
        report.add_goal("end-to-end / model-only latency (median)", ratio, f"<= {GOAL_RATIO}", ratio <= GOAL_RATIO)
        for key, what in (("convert_p50_ms", "node: message -> image (p50)"),
                          ("perceptor_p50_ms", "node: Perceptor pre + infer + post (p50)"),
                          ("infer_p50_ms", "node: of which backend infer (p50)"),
                          ("publish_p50_ms", "node: build + publish outputs (p50)"),
                          ("latency_p50_ms", "node: receive -> every output published (p50)")):
            if key in diag:
                report.add(name=what, median_ms=float(diag[key]))
        report.notes.append(
            f"model {args.model} {args.checkpoint or ''} input {args.input_size} {args.precision}, "
            f"threads {args.threads or 'default'}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
            f"node: pipelining {diag.get('pipelining', '?')}, mask resolution {args.mask_resolution}, "
            f"subscribed: {args.subscribe}, dropped_stale {diag.get('dropped_stale')}"
        )
    if args.frame_path_frames > 0:
        for r in frame_path_rows(args, frames):
            report.add(**r)
        report.notes.append("frame path rows: PerceptionRunner.process in this process on real publishers; ros_side_ms "
                            "= process - Perceptor.process_batch (conversion, message building, publishing)")
    for r in rows:
        report.add(**r)
    report.notes.append("conversion rows: one call on a 1280x720 message; rgb8 input is a zero-copy view")
    report.publish(args.out, "bench_ros")
    return 0
