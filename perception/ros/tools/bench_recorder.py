"""``perception bench recorder``: the incident recorder under a vehicle's load (issue 20 part 4's goal).

This process publishes, for ``--cameras`` cameras at ``--rate`` Hz, what a perception graph carries:
``/<cam>/image_raw/compressed`` (JPEG, ``--width`` x ``--height``, sensor-data QoS), ``/<cam>/detections``
(8 boxes), ``/<cam>/detections/attention`` and ``/<cam>/attention`` (32FC1 at ``--attention`` size: the node's
``output.mask_resolution: network``), plus ``/objects3d`` and ``/objects/tracked`` at 10 Hz, ``/tf`` and ``/odom``
at 50 Hz, ``/tf_static`` once and ``/diagnostics`` at 1 Hz. Messages are serialized once and restamped per
publish (header stamp = a per-camera sequence number x the period). The ``incident_recorder`` runs in ANOTHER
process (localhost DDS, private domain) with every one of those topics.

Three triggers, one of each kind (the ``~/snapshot`` service, the trigger topic, a /diagnostics status turning
ERROR), spread over ``--duration``; then a fourth, and the recorder is killed with SIGKILL while that one is
being written. Measured: each snapshot's window (first / last message against its ends, frames missing
per camera: the header sequence numbers must be consecutive), the recorder's RSS (every 0.5 s) against its
RSS before any data and its budget, its CPU time over the run as % of one core, and after the kill: the
three snapshots read back completely (every CRC) and the fourth absent from the listing.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from perception.core.config import parse_size

BASE_NS = 1_700_000_000 * 1_000_000_000
GOAL_CPU_PCT = 10.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("out/bench"))
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--rate", type=float, default=30.0, help="frames per second per camera")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=384)
    p.add_argument("--attention", default="48x80", help="attention map HxW (32FC1)")
    p.add_argument("--quality", type=int, default=85, help="JPEG quality of the camera images")
    p.add_argument("--duration", type=float, default=120.0, help="seconds of publishing before the kill phase")
    p.add_argument("--before", type=float, default=20.0, help="recorder before_s")
    p.add_argument("--after", type=float, default=10.0, help="recorder after_s")
    p.add_argument("--budget-mb", type=float, default=384.0, help="recorder budget_mb")
    p.add_argument("--dir", type=Path, default=None, help="snapshot directory (default: a temporary one)")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (``/proc/<pid>/stat``), seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def camera_frames(n: int, h: int, w: int, quality: int, seed: int) -> list[bytes]:
    """``n`` JPEGs of a textured moving scene (sizes like a real camera's at this quality)."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    texture = cv2.GaussianBlur(rng.integers(0, 255, (h, 2 * w, 3), dtype=np.uint8), (0, 0), 1.2)
    sky = np.dstack([140 + 0 * xx, 170 + 0 * xx, 200 + 40 * yy // h]).astype(np.uint8)
    out = []
    for k in range(n):
        img = texture[:, 7 * k:7 * k + w].copy()
        img[: h // 3] = (0.7 * sky[: h // 3] + 0.3 * img[: h // 3]).astype(np.uint8)
        for _ in range(6):
            x, y = int(rng.integers(0, w - 60)), int(rng.integers(h // 3, h - 40))
            cv2.rectangle(img, (x, y), (x + 60, y + 40), tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
        _, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        out.append(buf.tobytes())
    return out


class Load:
    """The publishers and the pre-serialized messages (restamped per publish)."""

    def __init__(self, node: Any, cams: list[str], args: argparse.Namespace) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
        from geometry_msgs.msg import TransformStamped
        from nav_msgs.msg import Odometry
        from rclpy.qos import qos_profile_sensor_data
        from rclpy.serialization import serialize_message
        from sensor_msgs.msg import CompressedImage
        from tf2_msgs.msg import TFMessage
        from vision_msgs.msg import Detection2D, Detection2DArray, Detection3D, Detection3DArray

        from perception.ros import convert
        from perception.ros.qos import latched, qos_profile

        try:
            from autoware_perception_msgs.msg import TrackedObject, TrackedObjects
        except ImportError:  # not built here: the tracks are left out (said in the report)
            TrackedObjects = None
        rel = qos_profile("reliable", 10)
        hdr = convert.make_header(0.0, "")
        ah, aw = parse_size(args.attention)
        self.period_ns = round(1e9 / args.rate)
        self.cams = cams
        self.topics: list[str] = []
        self.sizes: dict[str, int] = {}

        def pub(msg_type: Any, topic: str, qos: Any) -> Any:
            self.topics.append(topic)
            return node.create_publisher(msg_type, topic, qos)

        self.per_cam: dict[str, list[tuple[Any, list[bytes]]]] = {}
        for k, cam in enumerate(cams):
            hdr.frame_id = f"{cam}_optical"
            jpegs = [serialize_message(CompressedImage(header=hdr, format="jpeg", data=j))
                     for j in camera_frames(10, args.height, args.width, args.quality, k)]
            det = Detection2DArray(header=hdr, detections=[Detection2D(header=hdr) for _ in range(8)])
            att = convert.array_to_image(np.random.default_rng(k).random((ah, aw), np.float32), hdr, "32FC1")
            obj_att = convert.array_to_image(np.ones((1, 8), np.float32), hdr, "32FC1")
            self.per_cam[cam] = [
                (pub(CompressedImage, f"/{cam}/image_raw/compressed", qos_profile_sensor_data), jpegs),
                (pub(Detection2DArray, f"/{cam}/detections", rel), [serialize_message(det)]),
                (pub(type(att), f"/{cam}/detections/attention", rel), [serialize_message(obj_att)]),
                (pub(type(att), f"/{cam}/attention", rel), [serialize_message(att)]),
            ]
            self.sizes["camera image (mean)"] = int(np.mean([len(j) for j in jpegs]))
            self.sizes["attention"] = len(serialize_message(att))
            self.sizes["detections"] = len(serialize_message(det))
        hdr.frame_id = "base_link"
        self.slow: list[tuple[Any, bytes, bool]] = []  # 10 Hz: (publisher, message, stamped)
        dets3d = Detection3DArray(header=hdr, detections=[Detection3D(header=hdr) for _ in range(10)])
        self.slow.append((pub(Detection3DArray, "/objects3d", rel), serialize_message(dets3d), True))
        if TrackedObjects is not None:
            tracks = TrackedObjects(header=hdr, objects=[TrackedObject() for _ in range(10)])
            self.slow.append((pub(TrackedObjects, "/objects/tracked", rel), serialize_message(tracks), True))
        tf = TransformStamped(header=hdr, child_frame_id="imu")
        self.fast = [(pub(TFMessage, "/tf", rel), serialize_message(TFMessage(transforms=[tf])), False),
                     (pub(Odometry, "/odom", rel), serialize_message(Odometry(header=hdr, child_frame_id="base_link")),
                      True)]
        static = pub(TFMessage, "/tf_static", latched())
        static.publish(TFMessage(transforms=[TransformStamped(header=hdr, child_frame_id=f"{c}_optical")
                                             for c in cams]))
        self.diag = pub(DiagnosticArray, "/diagnostics", qos_profile("reliable", 10))
        self.diag_cls, self.status_cls = DiagnosticArray, DiagnosticStatus
        self.diag_level = DiagnosticStatus.OK
        self.seq = dict.fromkeys(cams, 0)
        self.published = 0

    def camera(self, cam: str) -> None:
        from perception.bag.cdr import restamp

        self.seq[cam] += 1
        n = self.seq[cam]
        stamp = BASE_NS + n * self.period_ns
        for publisher, msgs in self.per_cam[cam]:
            publisher.publish(bytes(restamp(msgs[n % len(msgs)], stamp)))
        self.published += len(self.per_cam[cam])

    def others(self, group: list[tuple[Any, bytes, bool]]) -> None:
        from perception.bag.cdr import restamp

        now = time.time_ns()
        for publisher, raw, stamped in group:
            publisher.publish(bytes(restamp(raw, now)) if stamped else raw)
        self.published += len(group)

    def diagnostics(self) -> None:
        st = self.status_cls(level=self.diag_level, name="bench_camera_driver",
                             message="ok" if self.diag_level == self.status_cls.OK else "frames stalled")
        msg = self.diag_cls(status=[st])
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 1_000_000_000)
        self.diag.publish(msg)
        self.published += 1


def start_recorder(params: dict[str, Any], env: dict[str, str], log: Path) -> Any:
    """The recorder as its own process (it gets SIGTERM if this process dies); its Popen."""
    from perception.ros.tools.node_process import NodeProcess

    return NodeProcess.node("perception.ros.nodes.recorder", "bench_recorder", params, log, env).proc


def trigger_times(args: argparse.Namespace) -> list[float]:
    """Three trigger times (s after publishing starts): the first after a full before-window, the last with
    its after-window finished 8 s before ``--duration``, none close enough to merge."""
    first = args.before + 3.0
    last = args.duration - args.after - 8.0
    if last - first < 2 * (args.after + 2.0):
        need = first + 2 * (args.after + 2.0) + args.after + 8.0
        raise SystemExit(f"--duration {args.duration:g} is too short for three separate snapshots with --before "
                         f"{args.before:g} --after {args.after:g}: use at least {need:g}")
    return [first, (first + last) / 2, last]


def run_bench(args: argparse.Namespace, tmp: Path, log: Any = print) -> dict[str, Any]:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String
    from std_srvs.srv import Trigger

    from perception.ros.env import apply_localhost_env, localhost_env
    from perception.ros.tools.bench_soak import rss_kib
    from perception.vehicle.snapshots import PARTIAL, completed

    times = trigger_times(args)
    domain = apply_localhost_env()
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f"bench_recorder_load_{os.getpid()}", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    cams = [f"cam{c}" for c in range(args.cameras)]
    load = Load(node, cams, args)
    directory = args.dir or tmp / "incidents"
    diag: dict[str, str] = {}

    def on_diag(msg: Any) -> None:
        for st in msg.status:
            if st.name == "bench_recorder: recorder":
                diag.update({kv.key: kv.value for kv in st.values})

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)
    trigger_pub = node.create_publisher(String, "/bench_recorder/trigger", 10)
    client: Any = node.create_client(Trigger, "/bench_recorder/snapshot")
    params = {"directory": str(directory), "topics": load.topics, "before_s": args.before, "after_s": args.after,
              "budget_mb": args.budget_mb, "max_message_mb": min(16.0, args.budget_mb / 2), "quota_gb": 50.0,
              "min_free_gb": 0.5, "max_snapshot_s": max(120.0, args.before + args.after)}
    env = localhost_env(domain)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(Path(__file__).resolve().parents[3]),
                                                    env.get("PYTHONPATH", "")] if p)
    proc = start_recorder(params, env, tmp / "recorder.log")
    out: dict[str, Any] = {"cameras": cams, "topics": load.topics, "sizes": load.sizes, "trigger_times": times,
                           "log": str(tmp / "recorder.log"), "directory": str(directory)}

    def spin(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.01)

    try:
        deadline = time.monotonic() + 60.0
        while diag.get("topics_recording") != str(len(load.topics)) and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("recorder exited:\n" + (tmp / "recorder.log").read_text()[-3000:])
            spin(0.1)
        if diag.get("topics_recording") != str(len(load.topics)):
            raise RuntimeError(f"recorder subscribed {diag.get('topics_recording')} of {len(load.topics)} topics")
        spin(1.0)
        out["rss_idle_mib"] = (rss_kib(proc.pid) or 0) / 1024
        cpu0 = cpu_seconds(proc.pid) or 0.0
        log(f"recorder ready ({len(load.topics)} topics), RSS {out['rss_idle_mib']:.0f} MiB; publishing "
            f"{len(cams)} cameras x {args.rate:g} Hz for {args.duration:g} s, triggers at {times} s")
        period = 1.0 / args.rate
        t0 = time.monotonic()
        next_cam = {c: t0 + k * period / len(cams) for k, c in enumerate(cams)}
        next_slow, next_fast, next_diag, next_rss = t0, t0, t0, t0
        rss: list[tuple[float, float, float]] = []  # t, RSS MiB, ring MB (recorder's own figure)
        pending = list(zip(times, ("service", "topic", "diagnostics"), strict=True))
        fired: list[tuple[str, float]] = []
        late = 0
        while (now := time.monotonic()) < t0 + args.duration:
            for c in cams:
                if now >= next_cam[c]:
                    load.camera(c)
                    if now - next_cam[c] > period:
                        late += 1
                    next_cam[c] = max(next_cam[c] + period, now - period)
            if now >= next_fast:
                load.others(load.fast)
                next_fast += 0.02
            if now >= next_slow:
                load.others(load.slow)
                next_slow += 0.1
            if now >= next_diag:
                load.diagnostics()
                next_diag += 1.0
            if now >= next_rss:
                rss.append((now - t0, (rss_kib(proc.pid) or 0) / 1024, float(diag.get("ring_mb", "nan"))))
                next_rss += 0.5
                if proc.poll() is not None:
                    raise RuntimeError("recorder died:\n" + (tmp / "recorder.log").read_text()[-3000:])
            if pending and now - t0 >= pending[0][0]:
                _, kind = pending.pop(0)
                if kind == "service":
                    client.call_async(Trigger.Request())
                elif kind == "topic":
                    trigger_pub.publish(String(data="bench: planner braked hard"))
                else:
                    load.diag_level = load.status_cls.ERROR
                    load.diagnostics()
                    load.diag_level = load.status_cls.OK
                fired.append((kind, now - t0))
                log(f"  {now - t0:5.1f} s: trigger {kind}")
            wait = min([*next_cam.values(), next_fast, next_slow, next_diag]) - time.monotonic()
            executor.spin_once(timeout_sec=max(0.0, min(wait, 0.005)))
        seconds = time.monotonic() - t0
        cpu1 = cpu_seconds(proc.pid) or 0.0
        out.update(seconds=seconds, published=load.published, late_frames=late, rss=rss, fired=fired,
                   cpu_pct=100.0 * (cpu1 - cpu0) / seconds, frames_per_camera=load.seq.copy(),
                   recorder_diag=dict(diag))
        log(f"published {load.published} messages in {seconds:.1f} s; recorder CPU {out['cpu_pct']:.1f} % of a core")
        # the three must be complete before the kill
        deadline = time.monotonic() + 60.0
        while len(completed(directory)) < 3 and time.monotonic() < deadline:
            spin(0.2)
        done = [p.name for p in completed(directory)]
        # kill phase: keep publishing, trigger a fourth, SIGKILL while it is being written
        future = client.call_async(Trigger.Request())
        t_kill = time.monotonic()
        while not future.done() and time.monotonic() - t_kill < 10.0:
            for c in cams:
                load.camera(c)
            spin(period)
        answer = future.result() if future.done() else None
        name = answer.message.split()[1] if answer is not None else ""
        t_kill = time.monotonic()
        while time.monotonic() - t_kill < min(2.0, args.after / 2):
            for c in cams:
                load.camera(c)
            spin(period)
        partial = directory / PARTIAL / name
        out["kill"] = {"snapshot": name, "partial_existed": bool(name) and partial.is_dir(),
                       "partial_bytes": sum(f.stat().st_size for f in partial.rglob("*") if f.is_file())
                       if partial.is_dir() else 0}
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        out["kill"]["listed_after"] = [p.name for p in completed(directory)]
        out["kill"]["completed_before"] = done
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except Exception:
                proc.kill()
        executor.remove_node(node)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    return out


def check_snapshots(res: dict[str, Any], period_ns: int) -> list[dict[str, Any]]:
    """Each completed snapshot read back (CRCs) and measured (see the module doc)."""
    from perception.bag.cdr import header_stamp_ns
    from perception.bag.io import read_messages
    from perception.vehicle.incidents import window_report

    rows = []
    for name in res["kill"]["completed_before"]:
        path = Path(res["directory"]) / name
        row: dict[str, Any] = {"name": name}
        try:
            inc, topics = window_report(path)
            seqs: dict[str, list[int]] = {}  # every per-camera topic carries the camera's sequence number
            per_cam = [t.topic for t in topics if t.topic.split("/")[1] in res["cameras"]]
            for topic, _, _, raw in read_messages(path, per_cam, check_order=False):
                seqs.setdefault(topic, []).append(round((header_stamp_ns(raw) - BASE_NS) / period_ns))
            gaps = {t: (max(s) - min(s) + 1) - len(set(s)) for t, s in seqs.items()}
            cams = [t for t in topics if t.topic.endswith("/image_raw/compressed")]
            row.update(trigger=inc.trigger, window_s=inc.duration_s, before_held_s=inc.before_held_s,
                       frames=sum(t.messages for t in cams),
                       camera_frames_missing=sum(n for t, n in gaps.items() if t.endswith("/compressed")),
                       outputs_missing=sum(n for t, n in gaps.items() if not t.endswith("/compressed")),
                       first_after_start_ms=1e3 * max(t.first_s for t in cams),
                       last_before_end_ms=1e3 * max(t.last_s for t in cams),
                       outside_window=sum(t.outside for t in topics if t.topic != "/tf_static"),
                       size_mb=inc.bytes / 1e6, readable=True)
        except Exception as e:  # a damaged snapshot is a result, not a crash of the benchmark
            row.update(readable=False, error=f"{type(e).__name__}: {e}")
        rows.append(row)
    return rows


def report(res: dict[str, Any], snaps: list[dict[str, Any]], args: argparse.Namespace) -> Any:
    from perception.bench.report import Report

    rep = Report(f"Incident recorder: {args.cameras} cameras x {args.rate:g} Hz {args.width}x{args.height} JPEG + "
                 f"outputs for {res['seconds']:.0f} s, three triggers, kill -9")
    for s in snaps:
        rep.add(**s)
    rss = res["rss"]
    steady = [r for t, r, _ in rss if t > args.before + 2] or [r for _, r, _ in rss]
    rss_max = max(r for _, r, _ in rss)
    ring_max = max((m for _, _, m in rss if m == m), default=float("nan"))
    growth = rss_max - res["rss_idle_mib"]
    budget_mib = args.budget_mb
    ok = [s for s in snaps if s.get("readable")]
    rep.add_goal("snapshots complete and readable (every CRC)", float(len(ok)), "3", len(ok) == 3)
    gaps = sum(s.get("camera_frames_missing", 0) + s.get("outputs_missing", 0) for s in ok)
    rep.add_goal("camera frames and per-camera outputs missing inside the windows (header sequence numbers)",
                 float(gaps), "0", gaps == 0)
    edge = max([max(s["first_after_start_ms"], s["last_before_end_ms"]) for s in ok], default=float("nan"))
    rep.add_goal("worst distance of a camera's first/last frame from the window's ends, ms", edge,
                 f"<= 2 frame periods ({2e3 / args.rate:.0f} ms)", edge <= 2e3 / args.rate)
    rep.add_goal(f"recorder RSS growth over its idle RSS ({res['rss_idle_mib']:.0f} MiB), max MiB", growth,
                 f"<= budget ({budget_mib:g} MiB)", growth <= budget_mib)
    rep.add_goal("ring buffer size (recorder's own figure), max MB", ring_max,
                 f"<= budget ({args.budget_mb * 1.048576:.0f} MB)", ring_max <= args.budget_mb * 1.048576)
    rep.add_goal("recorder CPU over the run, % of one core", res["cpu_pct"], f"<= {GOAL_CPU_PCT:g}",
                 res["cpu_pct"] <= GOAL_CPU_PCT)
    kill = res["kill"]
    kept = kill["listed_after"] == kill["completed_before"] and kill["snapshot"] not in kill["listed_after"]
    rep.add_goal(f"kill -9 while writing {kill['snapshot'] or '(no 4th snapshot)'} "
                 f"({kill['partial_bytes'] / 1e6:.0f} MB written): the earlier three listed, it is not", float(kept),
                 "yes", kept and kill["partial_existed"])
    expected = res["seconds"] * args.rate
    rep.notes.append(f"published {res['published']} messages in {res['seconds']:.1f} s; frames per camera "
                     f"{sorted(res['frames_per_camera'].values())} (expected {expected:.0f}), late frames "
                     f"{res['late_frames']}; message sizes (bytes): {res['sizes']}")
    rep.notes.append(f"RSS: idle {res['rss_idle_mib']:.0f} MiB, max {rss_max:.0f} MiB, median after the first "
                     f"before-window {statistics.median(steady):.0f} MiB; budget_mb {args.budget_mb:g}")
    rep.notes.append(f"topics ({len(res['topics'])}): {', '.join(res['topics'])}")
    rep.notes.append(f"triggers fired at (s): {[(k, round(t, 1)) for k, t in res['fired']]}; recorder log "
                     f"{res['log']}; recorder diagnostics at the end: "
                     f"{ {k: v for k, v in res['recorder_diag'].items() if v} }")
    rep.notes.append(f"{os.cpu_count()} cores shared by the load publisher (this process), the recorder and "
                     f"whatever else runs; load average {os.getloadavg()[0]:.1f} at the end")
    return rep


def run(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench_recorder_"))
    res = run_bench(args, tmp)
    snaps = check_snapshots(res, round(1e9 / args.rate))
    rep = report(res, snaps, args)
    rep.publish(args.out, "bench_recorder")
    return 0 if all(g["met"] for g in rep.goals) else 1
