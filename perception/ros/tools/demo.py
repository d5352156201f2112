"""``perception demo --ros``: the demo over a real ROS 2 graph.

launch/demo.launch.py's nodes (synthetic_camera, perception_node) run as separate processes over
DDS on loopback with a private domain (:mod:`perception.ros.tools.run`); this process records every
input and output topic, as the CDR bytes that crossed the wire, into an MCAP rosbag2 (rosbags),
then reads the bag back to write overlay PNGs, an overlay video and a summary. With the objects
stage on (demo.launch.py turns it on), each panel ends with a bird's-eye view of the confirmed
tracks (boxes, ids, velocity arrows) in the vehicle frame, from /camera/objects/tracked and /odom.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

TOPICS = {  # topic -> message type
    "/camera/image_raw": "sensor_msgs/msg/Image",
    "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
    "/camera/ground_truth": "vision_msgs/msg/Detection2DArray",
    "/camera/detections": "vision_msgs/msg/Detection2DArray",
    "/camera/detections/attention": "sensor_msgs/msg/Image",
    "/camera/segmentation": "sensor_msgs/msg/Image",
    "/camera/segmentation/color": "sensor_msgs/msg/Image",
    "/camera/attention": "sensor_msgs/msg/Image",
    "/camera/label_info": "vision_msgs/msg/LabelInfo",
    "/camera/objects/tracked": "autoware_perception_msgs/msg/TrackedObjects",
    "/odom": "nav_msgs/msg/Odometry",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}


def record(bag: Path, duration: float, until_frames: int, store: Any) -> dict[str, Any]:
    """Subscribe to :data:`TOPICS` (raw CDR) and write them to an MCAP bag until done."""
    import importlib

    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from rosbags.rosbag2 import StoragePlugin, Writer

    from perception.ros.qos import latched

    rclpy.init()
    node = rclpy.create_node("demo_recorder")
    counts = dict.fromkeys(TOPICS, 0)
    writer = Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    try:
        conns = {t: writer.add_connection(t, typ, typestore=store) for t, typ in TOPICS.items()}
        pending: list[tuple[str, int, bytes]] = []

        def cb(topic: str) -> Any:
            def on(data: bytes) -> None:
                now = time.time_ns()
                pending.append((topic, now, data))
                counts[topic] += 1

            return on

        for topic, typ in TOPICS.items():
            pkg, _, name = typ.split("/")
            cls = getattr(importlib.import_module(f"{pkg}.msg"), name)
            if topic.endswith("label_info"):
                qos: Any = latched()
            elif topic.endswith(("image_raw", "camera_info")):
                qos = qos_profile_sensor_data
            else:
                qos = 20
            node.create_subscription(cls, topic, cb(topic), qos, raw=True)
        t0 = time.monotonic()
        last_change, last_total = time.monotonic(), 0
        while time.monotonic() - t0 < duration:
            rclpy.spin_once(node, timeout_sec=0.05)
            for topic, ts, data in pending:
                writer.write(conns[topic], ts, data)
            pending.clear()
            total = counts["/camera/image_raw"] + counts["/camera/detections"]
            if total != last_total:
                last_change, last_total = time.monotonic(), total
            if counts["/camera/image_raw"] >= until_frames and time.monotonic() - last_change > 3.0:
                break  # the camera is done and the outputs have stopped coming
    finally:
        writer.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return {"counts": counts}


def _draw(rgb: np.ndarray, boxes: np.ndarray, ids: np.ndarray, gt: np.ndarray | None) -> np.ndarray:
    import cv2

    from perception.core.classes import DETECTION_CLASSES

    out = rgb.copy()
    if gt is not None:
        for b in gt.astype(int):
            cv2.rectangle(out, (b[0], b[1]), (b[2], b[3]), (255, 255, 255), 1, cv2.LINE_4)
    for b, c in zip(boxes.astype(int), ids):
        color = DETECTION_CLASSES[int(c)].color if 0 <= int(c) < len(DETECTION_CLASSES) else (255, 255, 0)
        cv2.rectangle(out, (b[0], b[1]), (b[2], b[3]), tuple(int(x) for x in color), 2)
    return out


def _yaw(q: Any) -> float:
    return float(np.arctan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z)))


def bev_panel(size: tuple[int, int], tracked: Any, odom: Any) -> np.ndarray:
    """Bird's-eye view (vehicle frame) of one TrackedObjects message (odom) placed with the ego pose of
    the Odometry message of the same stamp: boxes, ``#id class speed`` labels, velocity arrows."""
    from perception.core.classes import DETECTION_NAMES
    from perception.core.viz import draw_bev
    from perception.ros.objects_msgs import AUTOWARE_LABELS

    to_class = {v: k for k, v in AUTOWARE_LABELS.items()}
    p, ego_yaw = odom.pose.pose.position, _yaw(odom.pose.pose.orientation)
    c, s = np.cos(ego_yaw), np.sin(ego_yaw)
    base_R_odom = np.array([[c, s], [-s, c]])
    centers, dims, yaws, cls, vel, labels = [], [], [], [], [], []
    for o in tracked.objects:
        pose, twist = o.kinematics.pose_with_covariance.pose, o.kinematics.twist_with_covariance.twist
        centers.append(base_R_odom @ np.array([pose.position.x - p.x, pose.position.y - p.y]))
        yaw = _yaw(pose.orientation) - ego_yaw
        yaws.append(yaw)
        dims.append([o.shape.dimensions.x, o.shape.dimensions.y])
        cid = to_class.get(int(o.classification[0].label), -1) if o.classification else -1
        cls.append(cid)
        v_obj = np.array([twist.linear.x, twist.linear.y])  # the object's own frame (Autoware)
        vel.append(np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]) @ v_obj)
        name = DETECTION_NAMES[cid] if 0 <= cid < len(DETECTION_NAMES) else "?"
        # the UUID's first bytes name the track (the integer id is on objects3d and the annotations)
        labels.append(f"{bytes(o.object_id.uuid[:2]).hex()} {name} {float(np.hypot(*v_obj)):.1f} m/s")
    n = len(centers)
    img = draw_bev(size, np.array(centers).reshape(n, 2), np.array(dims).reshape(n, 2), np.array(yaws),
                   np.array(cls, np.int64), np.array(vel).reshape(n, 2), labels)  # fmt: skip
    import cv2

    cv2.putText(img, f"tracks: {n} (bird's-eye, vehicle frame)", (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (200, 200, 200), 1, cv2.LINE_AA)  # fmt: skip
    return img


def render(bag: Path, out: Path, store: Any, stills: int) -> dict[str, Any]:
    """Read the bag back: panels (image + detections | segmentation | attention) per processed frame."""
    import cv2
    from rosbags.rosbag2 import Reader

    msgs: dict[str, dict[int, Any]] = {t: {} for t in TOPICS}
    arrival: dict[str, dict[int, int]] = {t: {} for t in TOPICS}
    diags: list[Any] = []
    with Reader(bag) as reader:
        for conn, ts, raw in reader.messages():
            m = store.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == "/diagnostics":
                diags.append(m)
                continue
            key = int(m.header.stamp.sec) * 1_000_000_000 + int(m.header.stamp.nanosec)
            msgs[conn.topic][key] = m
            arrival[conn.topic].setdefault(key, ts)
    stamps = sorted(set(msgs["/camera/detections"]) & set(msgs["/camera/image_raw"]))
    panels = []
    track_counts: list[int] = []
    for key in stamps:
        img = msgs["/camera/image_raw"][key]
        rgb = np.frombuffer(img.data, np.uint8).reshape(img.height, img.width, 3)
        det = msgs["/camera/detections"][key]
        boxes = np.array([[d.bbox.center.position.x - d.bbox.size_x / 2, d.bbox.center.position.y - d.bbox.size_y / 2,
                           d.bbox.center.position.x + d.bbox.size_x / 2, d.bbox.center.position.y + d.bbox.size_y / 2]
                          for d in det.detections], np.float32).reshape(-1, 4)
        ids = np.array([int(d.results[0].hypothesis.class_id) for d in det.detections], np.int64)
        gt_msg = msgs["/camera/ground_truth"].get(key)
        gt = None
        if gt_msg is not None:
            gt = np.array([[d.bbox.center.position.x - d.bbox.size_x / 2, d.bbox.center.position.y - d.bbox.size_y / 2,
                            d.bbox.center.position.x + d.bbox.size_x / 2, d.bbox.center.position.y + d.bbox.size_y / 2]
                           for d in gt_msg.detections], np.float32).reshape(-1, 4)
        tiles = [_draw(rgb, boxes, ids, gt)]
        color = msgs["/camera/segmentation/color"].get(key)
        if color is not None:
            seg = np.frombuffer(color.data, np.uint8).reshape(color.height, color.width, 3)
            tiles.append((0.55 * seg + 0.45 * rgb).astype(np.uint8))
        att = msgs["/camera/attention"].get(key)
        if att is not None:
            a = np.frombuffer(att.data, np.float32).reshape(att.height, att.width)
            a8 = (255 * a / max(float(a.max()), 1e-6)).astype(np.uint8)
            heat = cv2.cvtColor(cv2.applyColorMap(a8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
            tiles.append((0.5 * heat + 0.5 * rgb).astype(np.uint8))
        tracked, odom = msgs["/camera/objects/tracked"].get(key), msgs["/odom"].get(key)
        if tracked is not None and odom is not None:
            tiles.append(bev_panel((rgb.shape[0], rgb.shape[0]), tracked, odom))
            track_counts.append(len(tracked.objects))
        elif msgs["/camera/objects/tracked"]:  # objects on but this frame has none: keep the panel width
            tiles.append(np.full((rgb.shape[0], rgb.shape[0], 3), 24, np.uint8))
        panels.append(np.concatenate(tiles, axis=1))
    if panels:
        h, w = panels[0].shape[:2]
        writer = cv2.VideoWriter(str(out / "ros_overlay.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (w, h))
        for p in panels:
            writer.write(cv2.cvtColor(p, cv2.COLOR_RGB2BGR))
        writer.release()
        for i in np.linspace(0, len(panels) - 1, num=max(1, min(stills, len(panels)))).astype(int):
            cv2.imwrite(str(out / f"ros_frame_{i:04d}.png"), cv2.cvtColor(panels[i], cv2.COLOR_RGB2BGR))
    # latency: image message stamped at publish time -> detections recorded here (same machine clock)
    lat = [1e-6 * (arrival["/camera/detections"][k] - k) for k in stamps]
    last_diag = {}
    for m in diags:
        for st in m.status:
            if "perception" in st.name:
                last_diag = {kv.key: kv.value for kv in st.values}
    header_ok = all(msgs["/camera/detections"][k].header.frame_id == msgs["/camera/image_raw"][k].header.frame_id
                    for k in stamps)
    sizes_ok = all((msgs[t][k].width, msgs[t][k].height) == (msgs["/camera/image_raw"][k].width,
                                                            msgs["/camera/image_raw"][k].height)
                   for t in ("/camera/segmentation", "/camera/attention") for k in stamps if k in msgs[t])
    return {
        "frames_published": len(msgs["/camera/image_raw"]),
        "frames_with_detections": len(stamps),
        "detections_mean": statistics.mean(len(msgs["/camera/detections"][k].detections) for k in stamps)
        if stamps else 0.0,
        "latency_ms_p50": statistics.median(lat) if lat else None,
        "latency_ms_max": max(lat) if lat else None,
        "headers_preserved": header_ok,
        "output_sizes_match_input": sizes_ok,
        "label_info_received": bool(msgs["/camera/label_info"]),
        "frames_with_tracks_panel": len(track_counts),
        "tracks_mean": statistics.mean(track_counts) if track_counts else 0.0,
        "node_diagnostics": last_diag,
    }


def main(args: argparse.Namespace) -> int:
    from perception.ros.env import localhost_env, share_dir
    from perception.ros.tools.launch_spec import parse_launch_file
    from perception.ros.tools.node_process import stop_processes
    from perception.ros.tools.replay import refine_params
    from perception.ros.tools.run import start_nodes

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    bag = out / "ros_demo_bag"
    if bag.exists():
        import shutil

        shutil.rmtree(bag)
    from perception.bag.typestore import typestore

    store = typestore()
    spec = parse_launch_file(share_dir() / "launch" / "demo.launch.py")
    env = localhost_env()
    # --checkpoint: a path or a shipped name; the node resolves either (perception.weights.resolve_checkpoint)
    overrides = {} if args.checkpoint is None else {"checkpoint": str(args.checkpoint)}  # None: the node's model.name
    extra = {
        "synthetic_camera": {"seed": args.seed, "num_frames": args.frames, "max_frames": args.frames, "loop": False,
                             "width": args.width, "height": args.height,
                             # the recorder and the perception node (once its model is loaded)
                             "wait_for_subscribers": 2},
        "perception": {"detection.score_threshold": 0.35, "model.precision": args.precision,
                       **refine_params(args.refine)},
    }
    print(f"[demo --ros] starting {', '.join(n.name or n.executable for n in spec.nodes)} "
          f"(ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}, DDS on loopback); recording to {bag}", flush=True)
    log = (out / "ros_nodes.log").open("wb")
    t0 = time.perf_counter()
    procs = start_nodes(spec, overrides, env, stdout=log, extra_params=extra)
    try:
        os.environ.update({k: env[k] for k in ("FASTDDS_DEFAULT_PROFILES_FILE", "ROS_AUTOMATIC_DISCOVERY_RANGE",
                                               "RMW_IMPLEMENTATION", "ROS_DOMAIN_ID")})
        rec = record(bag, duration=120.0 + args.frames * 2.0, until_frames=args.frames, store=store)
    finally:
        codes = stop_processes(procs)
        log.close()
    print(f"[demo --ros] recorded {rec['counts']} in {time.perf_counter() - t0:.1f} s; nodes exited {codes}",
          flush=True)
    summary = render(bag, out, store, args.stills)
    summary.update({"bag": str(bag), "topics": rec["counts"], "node_exit_codes": codes,
                    "node_log": str(out / "ros_nodes.log")})
    (out / "ros_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    lines = ["# ROS 2 demo", "", f"Processes: {', '.join(codes)} (separate, DDS on loopback), bag: `{bag.name}` (MCAP)",
             "", "| what | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary.items() if k not in ("node_diagnostics", "topics")]
    lines += ["", "Topics recorded: " + ", ".join(f"{k} ({v})" for k, v in rec["counts"].items())]
    (out / "ros_summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in summary.items() if k != "node_diagnostics"}, indent=2, default=str))
    ok = summary["frames_with_detections"] > 0 and summary["headers_preserved"] and summary["output_sizes_match_input"]
    print(f"[demo --ros] wrote {out}/ros_overlay.mp4, ros_frame_*.png, ros_summary.md, {bag.name}/", flush=True)
    return 0 if ok else 1
