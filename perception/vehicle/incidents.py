"""The incident recorder's snapshots after the fact (no rclpy): list them, check their windows, render one.

* :func:`list_incidents`: every completed snapshot under a directory (time, trigger(s), duration, topics,
  size) from its ``incident.json``; what is in ``.partial`` (being written, or left by a killed recorder)
  is not listed.
* :func:`window_report`: reads a snapshot's bag (every CRC checked) and measures, per topic, the log times
  against the window and the gaps in the header stamps (an interval over 1.5 x the topic's median period
  counts as missing frames).
* :func:`render`: an overlay video of one camera: the image with its detections (``<cam>/detections``)
  next to its attention map (``<cam>/attention``) blended over it, the time relative to the trigger in
  the caption, frames at the trigger marked; the project's own drawing (:mod:`perception.core.viz`).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perception.bag.cdr import header_stamp_ns
from perception.bag.io import IMAGE_TYPES, is_stamped, open_bag, read_messages
from perception.vehicle.errors import VehicleError
from perception.vehicle.snapshots import INDEX, PARTIAL, completed, dir_bytes


@dataclass(frozen=True)
class Incident:
    path: Path
    name: str
    utc: str  # the (first) trigger's time
    trigger: str  # kind of the first trigger
    reasons: tuple[str, ...]  # one per merged trigger: "kind: reason"
    duration_s: float
    before_held_s: float
    topics: dict[str, int]  # topic -> messages
    bytes: int
    index: dict[str, Any]


def load_incident(path: Path) -> Incident:
    try:
        index = json.loads((path / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise VehicleError(f"{path}: no readable {INDEX} ({e}); not a snapshot of the incident recorder") from e
    return Incident(path, path.name, index["triggers"][0]["utc"], index["trigger"],
                    tuple(f"{t['kind']}: {t['reason']}" for t in index["triggers"]), float(index["duration_s"]),
                    float(index["before_held_s"]), {t: int(v["count"]) for t, v in index["topics"].items()},
                    dir_bytes(path), index)


def list_incidents(directory: str | Path) -> list[Incident]:
    """The completed snapshots under ``directory``, oldest first."""
    d = Path(directory)
    if not d.is_dir():
        raise VehicleError(f"{d} is not a directory; give the recorder's directory (recording.directory)")
    return [load_incident(p) for p in completed(d)]


def table(incidents: list[Incident]) -> str:
    lines = [f"{'time (UTC)':<24} {'trigger':<11} {'duration':>8} {'size MB':>8}  topics (messages)  name"]
    for i in incidents:
        topics = ", ".join(f"{t} ({n})" for t, n in sorted(i.topics.items()))
        more = f" +{len(i.reasons) - 1} merged" if len(i.reasons) > 1 else ""
        lines.append(f"{i.utc:<24} {i.trigger + more:<11} {i.duration_s:>7.1f}s {i.bytes / 1e6:>8.1f}  {topics}  "
                     f"{i.name}")
    return "\n".join(lines)


def in_progress(directory: str | Path) -> list[str]:
    d = Path(directory) / PARTIAL
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


# -- checking a window -----------------------------------------------------------------------------------------
@dataclass
class TopicWindow:
    topic: str
    messages: int
    first_s: float  # log time - window start
    last_s: float  # window end - log time
    outside: int  # log times outside the window (latched topics carried in: expected)
    median_period_ms: float  # of the header stamps (stamped topics), else of the log times
    missing: int  # frames missing: intervals over 1.5 x the median period, counted in periods
    max_interval_ms: float


def window_report(path: str | Path) -> tuple[Incident, list[TopicWindow]]:
    """See the module doc; raises BagError for a damaged snapshot."""
    inc = load_incident(Path(path))
    info = open_bag(path)
    start, end = int(inc.index["start_ns"]), int(inc.index["end_ns"])
    logs: dict[str, list[int]] = {t: [] for t in info.topics}
    stamps: dict[str, list[int]] = {t: [] for t in info.topics}
    stamped = {t: is_stamped(m) for t, m in info.topics.items()}
    for topic, _, log_ns, raw in read_messages(path, check_order=False):
        logs[topic].append(log_ns)
        if stamped[topic] and (stamp := header_stamp_ns(raw)):  # unset stamps (0) say nothing
            stamps[topic].append(stamp)
    rows = []
    for topic in sorted(info.topics):
        inside = [t for t in logs[topic] if start <= t <= end]
        series = sorted(stamps[topic]) if stamped[topic] and any(stamps[topic]) else sorted(inside)
        steps = np.diff(np.asarray(series, np.int64)) if len(series) > 1 else np.zeros(0, np.int64)
        steps = steps[steps > 0]
        median = float(statistics.median(steps.tolist())) if len(steps) else 0.0
        missing = int(sum(round(s / median) - 1 for s in steps if s > 1.5 * median)) if median else 0
        rows.append(TopicWindow(topic, len(logs[topic]), (inside[0] - start) * 1e-9 if inside else float("nan"),
                                (end - inside[-1]) * 1e-9 if inside else float("nan"), len(logs[topic]) - len(inside),
                                median * 1e-6, missing, float(steps.max()) * 1e-6 if len(steps) else 0.0))
    return inc, rows


# -- rendering -------------------------------------------------------------------------------------------------
def camera_topics(topics: dict[str, str]) -> dict[str, str]:
    """camera namespace -> its image topic (``/<cam>/<image>[/compressed]`` with ``/<cam>/detections`` beside)."""
    cams: dict[str, str] = {}
    for topic, msgtype in sorted(topics.items()):
        if msgtype not in IMAGE_TYPES or topic.endswith(("/attention", "/segmentation", "/color")):
            continue
        parts = topic.strip("/").split("/")
        for k in range(len(parts) - 1, 0, -1):  # the longest namespace with the camera's outputs in it
            ns = "/" + "/".join(parts[:k])
            if f"{ns}/detections" in topics or f"{ns}/attention" in topics:
                cams.setdefault(ns.strip("/"), topic)
                break
    return cams


def render(path: str | Path, out: str | Path, camera: str = "", fps: float = 0.0) -> dict[str, Any]:
    """Write ``out`` (mp4): ``camera``'s frames (default: the first camera) with detections | attention overlay.
    Returns what was drawn (frames, with detections, with attention, the camera, the file)."""
    import cv2

    from perception.bag.io import deserialize
    from perception.bag.messages import detections_from_msg, image_array, rgb_of
    from perception.core.viz import draw_detections, overlay_heatmap, side_by_side

    inc = load_incident(Path(path))
    info = open_bag(path)
    cams = camera_topics(info.topics)
    if not cams:
        raise VehicleError(f"{path}: no camera image topic with detections or attention beside it; it has "
                           + ", ".join(sorted(info.topics)))
    cam = camera or next(iter(cams))
    if cam not in cams:
        raise VehicleError(f"{path}: camera {cam!r} not in this snapshot; it has {', '.join(cams)}")
    image_topic, det_topic, att_topic = cams[cam], f"/{cam}/detections", f"/{cam}/attention"
    wanted = [t for t in (image_topic, det_topic, att_topic) if t in info.topics]
    dets: dict[int, Any] = {}
    atts: dict[int, np.ndarray] = {}
    images: list[tuple[int, bytes, str, int]] = []  # header stamp, message, type, receive time
    for topic, msgtype, log_ns, raw in read_messages(path, wanted, check_order=False):
        stamp = header_stamp_ns(raw)
        if topic == image_topic:
            images.append((stamp, raw, msgtype, log_ns))
        elif topic == det_topic:
            dets[stamp] = detections_from_msg(deserialize(raw, msgtype))
        else:
            atts[stamp] = image_array(deserialize(raw, msgtype)).astype(np.float32)
    if not images:
        raise VehicleError(f"{path}: camera {cam} has no images in this snapshot")
    trig_ns = int(inc.index["triggers"][0]["time_ns"])
    stamps = [s for s, _, _, _ in images]
    period = float(np.median(np.diff(stamps))) if len(stamps) > 1 else 1e8
    rate = fps or min(60.0, max(1.0, 1e9 / period))
    writer = None
    drawn = with_det = with_att = 0
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        for stamp, raw, msgtype, log_ns in images:
            rgb = rgb_of(deserialize(raw, msgtype), msgtype)
            det = dets.get(stamp)
            tiles, titles = [], []
            rel = (log_ns - trig_ns) * 1e-9  # the trigger is a receive time: placed by the frames' receive times
            mark = " TRIGGER" if abs(rel) <= 0.5 / rate else ""
            tiles.append(draw_detections(rgb, det) if det is not None else rgb)
            titles.append(f"{cam} t{rel:+.2f} s{mark} ({len(det) if det is not None else 'no'} detections)")
            with_det += det is not None
            att = atts.get(stamp)
            if att is not None:
                tiles.append(overlay_heatmap(rgb, att, normalize=False))
                titles.append("attention")
                with_att += 1
            elif atts:
                tiles.append(np.zeros_like(rgb))
                titles.append("attention (none for this frame)")
            panel = side_by_side(tiles, titles)
            if mark:
                cv2.rectangle(panel, (0, 0), (panel.shape[1] - 1, panel.shape[0] - 1), (255, 0, 0), 6)
            if writer is None:
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), rate,
                                         (panel.shape[1], panel.shape[0]))
            writer.write(cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
            drawn += 1
    finally:
        if writer is not None:
            writer.release()
    return {"video": str(out), "camera": cam, "frames": drawn, "with_detections": with_det,
            "with_attention": with_att, "fps": rate, "trigger": inc.reasons[0]}
