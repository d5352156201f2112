"""``perception bench fuzz``: malformed messages from another process into running perception_nodes.

A seeded generator (:func:`fuzz_stream`) makes Image, CompressedImage and CameraInfo messages:

* **bad**: malformed on purpose, each of a known kind that must be refused: odd-width YUY2, steps
  too small, data too short, unknown encodings, zero and huge sizes, images under 8x8, empty data;
  JPEGs cut short (with and without an EOI appended), headers forged to claim 4000x4000 (the
  decompression bomb), sizes beyond the pixel limit, zero heights, segment lengths past the end,
  garbage, truncated PNGs and PNGs failing their header CRC;
* **mutated**: valid messages with random bytes changed (the node may answer or refuse them);
* **valid**: frames that must be answered, including JPEGs with EXIF Orientation 6 and with more
  than 64 KiB of APP/COM segments before the frame header, progressive JPEGs, PNGs, rgb8 with row
  padding, bgr8, mono8, even-width YUY2;
* **camera_info**: CameraInfo with zero, huge or mismatched sizes and NaN matrices, and valid ones.

Two perception_node processes run the tiny network (localhost DDS, private domain): one takes raw
``Image`` input, one ``CompressedImage``, each serving several camera namespaces (messages go round
robin over them, so a malformed message is taken by the worker before the next one for its camera
arrives). Every image carries a unique stamp. After each valid frame the client waits for its
detections. At the end, the node's own counters (``/diagnostics``) must account for every image:
``received`` = images sent, ``processed`` = answers, and the malformed ones counted as dropped
(``dropped_bad_input``, or ``dropped_stale`` where a later frame replaced one before the worker
took it). Figures: nodes alive, valid frames answered, malformed ones counted. Bounded in messages
and seconds.
"""

from __future__ import annotations

import argparse
import math
import random
import struct
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.core import codec
from perception.core.config import parse_size
from perception.ros.nodes.params import add_model_arguments
from perception.weights import checkpoint_arg

VALID, BAD, MUTATED, INFO_BAD, INFO_OK = "valid", "bad", "mutated", "camera_info_bad", "camera_info_ok"
INFO_MISMATCH = "size_mismatch"  # a well-formed CameraInfo whose size disagrees with the images (not malformed)
INFO_COUNTER = "dropped_bad_camera_info"  # the node's counter of refused CameraInfo, where it has one
RAW, COMPRESSED = "raw", "compressed"


@dataclass(frozen=True)
class FuzzItem:
    kind: str  # VALID, BAD, MUTATED, INFO_BAD, INFO_OK
    label: str  # what was done to the message
    transport: str  # RAW or COMPRESSED: which node it goes to
    camera: int  # index of the camera namespace on that node
    msg: Any


# -- the generator (pure messages, no graph) ----------------------------------------------------------
class _Maker:
    def __init__(self, seed: int, width: int, height: int) -> None:
        self.rng = random.Random(seed)
        self.nprng = np.random.default_rng(seed)
        self.w, self.h = width, height
        yy, xx = np.mgrid[0:height, 0:width]
        self.base = np.dstack([xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1),
                               (xx + yy) % 256]).astype(np.uint8)

    def rgb(self) -> np.ndarray:
        return np.roll(self.base, self.rng.randrange(self.w), axis=1)

    def jpeg(self, *params: int) -> bytes:
        ok, enc = cv2.imencode(".jpg", self.rgb(), [cv2.IMWRITE_JPEG_QUALITY, 85, *params])
        assert ok
        return enc.tobytes()

    def png(self) -> bytes:
        ok, enc = cv2.imencode(".png", self.rgb())
        assert ok
        return enc.tobytes()


def _image(w: int, h: int, step: int, encoding: str, data: bytes) -> Any:
    from sensor_msgs.msg import Image

    m = Image(width=int(w), height=int(h), step=int(step), encoding=encoding)
    m.data = data
    return m


def _compressed(data: bytes, fmt: str = "jpeg") -> Any:
    from sensor_msgs.msg import CompressedImage

    m = CompressedImage(format=fmt)
    m.data = data
    return m


def _valid_raw(mk: _Maker) -> tuple[str, Any]:
    rgb, w, h = mk.rgb(), mk.w, mk.h
    kind = mk.rng.choice(["rgb8", "rgb8_padded", "bgr8", "mono8", "yuv422_yuy2", "bgra8"])
    if kind == "rgb8_padded":
        pad = np.zeros((h, w * 3 + 5), np.uint8)
        pad[:, : w * 3] = rgb.reshape(h, -1)
        return kind, _image(w, h, w * 3 + 5, "rgb8", pad.tobytes())
    if kind == "bgr8":
        return kind, _image(w, h, w * 3, kind, np.ascontiguousarray(rgb[..., ::-1]).tobytes())
    if kind == "mono8":
        return kind, _image(w, h, w, kind, np.ascontiguousarray(rgb[..., 0]).tobytes())
    if kind == "yuv422_yuy2":
        return kind, _image(w - w % 2, h, 2 * (w - w % 2), kind, bytes(mk.nprng.integers(0, 256, 2 * w * h,
                                                                                          np.uint8)))
    if kind == "bgra8":
        return kind, _image(w, h, w * 4, kind, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA).tobytes())
    return kind, _image(w, h, w * 3, "rgb8", rgb.tobytes())


def _valid_compressed(mk: _Maker) -> tuple[str, Any]:
    kind = mk.rng.choice(["jpeg", "jpeg_exif_orientation_6", "jpeg_big_app_segments", "jpeg_progressive", "png"])
    if kind == "jpeg_exif_orientation_6":
        return kind, _compressed(codec.insert_after_soi(mk.jpeg(), codec.exif_orientation_segment(6)))
    if kind == "jpeg_big_app_segments":
        segs = [codec.jpeg_segment(0xE1, b"Exif\x00\x00" + bytes(65527)), codec.jpeg_segment(0xFE, b"x" * 30000)]
        return kind, _compressed(codec.insert_after_soi(mk.jpeg(), *segs))
    if kind == "jpeg_progressive":
        return kind, _compressed(mk.jpeg(cv2.IMWRITE_JPEG_PROGRESSIVE, 1))
    if kind == "png":
        return kind, _compressed(mk.png(), "png")
    return kind, _compressed(mk.jpeg())


def _bad_raw(mk: _Maker) -> tuple[str, Any]:
    r, w, h = mk.rng, mk.w, mk.h
    kind = r.choice(["yuy2_odd_width", "step_too_small", "short_data", "unknown_encoding", "zero_size", "huge_size",
                     "under_8x8", "step_overflow", "empty_data", "rgba_short_rows"])
    if kind == "yuy2_odd_width":
        ow = w - 1 if w % 2 == 0 else w
        return kind, _image(ow, h, 2 * ow, "yuv422_yuy2", bytes(2 * ow * h))
    if kind == "step_too_small":
        return kind, _image(w, h, r.randrange(0, 3 * w), "rgb8", bytes(3 * w * h))
    if kind == "short_data":
        return kind, _image(w, h, 3 * w, "rgb8", bytes(r.randrange(0, 3 * w * (h - 1))))
    if kind == "unknown_encoding":
        enc = r.choice(["rgb16", "bayer_rggb8", "", "16UC1", "jpeg", "32FC1", "RGB8", "yuv422", "bgr8 "])
        return kind, _image(w, h, 3 * w, enc, bytes(3 * w * h))
    if kind == "zero_size":
        zw, zh = r.choice([(0, h), (w, 0), (0, 0)])
        return kind, _image(zw, zh, 3 * zw, "rgb8", bytes(r.randrange(0, 64)))
    if kind == "huge_size":
        hw = r.choice([70000, 2**31 - 1, 2**32 - 1])
        return kind, _image(hw, r.choice([hw, 5000, 1 << 20]), 3 * hw % 2**32, "rgb8", bytes(3 * w))
    if kind == "under_8x8":
        tw, th = r.randrange(1, 8), r.randrange(1, 8)
        return kind, _image(tw, th, 3 * tw, "rgb8", bytes(3 * tw * th))
    if kind == "step_overflow":
        return kind, _image(w, h, 2**32 - 1, "mono8", bytes(w * h))
    if kind == "empty_data":
        return kind, _image(w, h, 3 * w, r.choice(["rgb8", "bgr8", "mono8", "yuv422_yuy2"]), b"")
    return kind, _image(w, h, 4 * w, "rgba8", bytes(4 * w * h - r.randrange(1, 4 * w)))


def _png_with_size(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return codec.PNG_SIGNATURE + chunk + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


def _bad_compressed(mk: _Maker) -> tuple[str, Any]:
    r = mk.rng
    kind = r.choice(["jpeg_truncated", "jpeg_truncated_eoi_appended", "jpeg_forged_4000x4000", "jpeg_over_pixel_limit",
                     "jpeg_zero_height", "jpeg_segment_past_end", "garbage", "empty", "png_truncated",
                     "png_bad_header_crc", "png_huge_header"])
    if kind == "jpeg_truncated":
        j = mk.jpeg()
        return kind, _compressed(j[: r.randrange(2, len(j) - 2)])
    if kind == "jpeg_truncated_eoi_appended":
        j = mk.jpeg()
        return kind, _compressed(j[: r.randrange(len(j) // 3, len(j) - 40)] + b"\xff\xd9")
    if kind == "jpeg_forged_4000x4000":
        return kind, _compressed(codec.with_jpeg_size(mk.jpeg(), 4000, 4000))
    if kind == "jpeg_over_pixel_limit":
        return kind, _compressed(codec.with_jpeg_size(mk.jpeg(), 65000, 65000))
    if kind == "jpeg_zero_height":
        return kind, _compressed(codec.with_jpeg_size(mk.jpeg(), mk.w, 0))
    if kind == "jpeg_segment_past_end":
        return kind, _compressed(b"\xff\xd8\xff\xe1\xff\xf0" + bytes(r.randrange(0, 1000)))
    if kind == "garbage":
        return kind, _compressed(bytes(mk.nprng.integers(0, 256, r.randrange(1, 5000), np.uint8)),
                                 r.choice(["jpeg", "png", "", "rgb8; jpeg compressed bgr8"]))
    if kind == "empty":
        return kind, _compressed(b"", r.choice(["jpeg", "png"]))
    if kind == "png_truncated":
        p = mk.png()
        return kind, _compressed(p[: r.randrange(8, len(p) - 12)], "png")
    if kind == "png_bad_header_crc":
        damaged = bytearray(mk.png())
        damaged[r.randrange(16, 29)] ^= 1 << r.randrange(8)
        return kind, _compressed(bytes(damaged), "png")
    return kind, _compressed(_png_with_size(r.choice([0, 70000]), 70000), "png")


def _mutated(mk: _Maker, transport: str) -> tuple[str, Any]:
    """A valid message with a few random bytes changed (and maybe cut): answered or refused."""
    _, msg = _valid_raw(mk) if transport == RAW else _valid_compressed(mk)
    data = bytearray(msg.data)
    for _ in range(mk.rng.randrange(1, 6)):
        if data:
            data[mk.rng.randrange(len(data))] = mk.rng.randrange(256)
    if mk.rng.random() < 0.3 and data:
        del data[mk.rng.randrange(len(data)):]
    msg.data = bytes(data)
    return "bytes_changed", msg


def _camera_info(mk: _Maker, bad: bool) -> tuple[str, Any]:
    from sensor_msgs.msg import CameraInfo

    from perception.core.types import CameraIntrinsics
    from perception.ros import convert

    w, h = mk.w, mk.h
    m: Any = convert.intrinsics_to_camera_info(CameraIntrinsics(w, h, 50.0, 50.0, w / 2, h / 2),
                                               convert.make_header(0.0, "cam"))
    if not bad:
        return "valid", m
    kind = mk.rng.choice(["zero_size", "huge_size", INFO_MISMATCH, "nan_k", "inf_p", "empty_message"])
    if kind == "zero_size":
        m.width = 0
    elif kind == "huge_size":
        m.width = m.height = 2**32 - 1
    elif kind == INFO_MISMATCH:
        m.width, m.height = w * 2 + 1, h + 3
    elif kind == "nan_k":
        m.k = [math.nan] * 9
    elif kind == "inf_p":
        m.p = [math.inf] * 12
    else:
        m = CameraInfo()
    return kind, m


def fuzz_stream(seed: int, messages: int, valid_every: int = 4, cameras: int = 4, width: int = 64,
                height: int = 48) -> Iterator[FuzzItem]:
    """``messages`` malformed (bad, mutated and bad CameraInfo) messages, with a valid image after every
    ``valid_every`` of them and a valid CameraInfo now and then. Deterministic for a seed."""
    mk = _Maker(seed, width, height)
    counter = {RAW: 0, COMPRESSED: 0}

    def cam(transport: str) -> int:
        counter[transport] += 1
        return counter[transport] % cameras

    for i in range(messages):
        transport = RAW if mk.rng.random() < 0.5 else COMPRESSED
        roll = mk.rng.random()
        if roll < 0.12:
            label, msg = _camera_info(mk, bad=True)
            yield FuzzItem(INFO_BAD, label, transport, mk.rng.randrange(cameras), msg)
        elif roll < 0.27:
            label, msg = _mutated(mk, transport)
            yield FuzzItem(MUTATED, label, transport, cam(transport), msg)
        else:
            label, msg = _bad_raw(mk) if transport == RAW else _bad_compressed(mk)
            yield FuzzItem(BAD, label, transport, cam(transport), msg)
        if (i + 1) % valid_every == 0:
            transport = RAW if mk.rng.random() < 0.5 else COMPRESSED
            if mk.rng.random() < 0.1:
                label, msg = _camera_info(mk, bad=False)
                yield FuzzItem(INFO_OK, label, transport, mk.rng.randrange(cameras), msg)
            label, msg = _valid_raw(mk) if transport == RAW else _valid_compressed(mk)
            yield FuzzItem(VALID, label, transport, cam(transport), msg)


# -- the graph -------------------------------------------------------------------------------------
def node_name(transport: str) -> str:
    return f"perception_fuzz_{transport}"


def camera_names(transport: str, cameras: int) -> list[str]:
    return [f"fuzz_{transport}{c}" for c in range(cameras)]


def node_parameters(transport: str, cameras: int, args: argparse.Namespace) -> dict[str, Any]:
    ih, iw = parse_size(args.input_size)
    return {
        "autostart": True, "cameras": camera_names(transport, cameras), "input.transport": transport,
        "input.camera_info": True, "input.qos_reliability": "reliable", "input.qos_depth": 100,
        "model.name": args.model, "model.allow_untrained": True, "model.checkpoint": args.checkpoint or "",
        "model.input_height": ih, "model.input_width": iw, "model.threads": args.threads,
        "model.precision": args.precision, "model.backend": args.backend,
        "detection.score_threshold": 0.0, "detection.max_detections": 10, "max_batch": cameras,
        "diagnostics_period": 0.2, "output.segmentation_color": False, "output.attention": False,
        "output.object_attention": False,
    }


# -- the run ---------------------------------------------------------------------------------------
@dataclass
class FuzzResult:
    sent: Counter[str] = field(default_factory=Counter)  # kind -> messages
    labels: Counter[str] = field(default_factory=Counter)  # "kind/transport/label" -> messages
    valid_unanswered: list[str] = field(default_factory=list)
    mutated_answered: int = 0
    counters: dict[str, dict[str, int]] = field(default_factory=dict)  # node -> summed diagnostics counters
    images_sent: dict[str, int] = field(default_factory=dict)  # node -> images published to it
    answered: dict[str, int] = field(default_factory=dict)  # node -> distinct stamps answered
    alive: dict[str, bool] = field(default_factory=dict)
    settled: bool = False
    seconds: float = 0.0
    stopped_early: bool = False
    levels: dict[str, dict[int, int]] = field(default_factory=dict)
    last_errors: dict[str, str] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    info_malformed: dict[str, int] = field(default_factory=dict)  # node -> malformed CameraInfo sent to it
    info_counted: dict[str, int | None] = field(default_factory=dict)  # node -> its INFO_COUNTER (None: no such key)

    @property
    def malformed_images(self) -> int:
        return self.sent[BAD] + self.sent[MUTATED] - self.mutated_answered

    def counted(self) -> int:
        """Malformed images the nodes counted as dropped (bad input or replaced before inference)."""
        return sum(c["dropped_bad_input"] + c["dropped_stale"] for c in self.counters.values())

    def failures(self) -> list[str]:
        out = []
        for node, ok in self.alive.items():
            if not ok:
                out.append(f"node {node} died")
        if self.valid_unanswered:
            out.append(f"{len(self.valid_unanswered)} valid frames unanswered: {self.valid_unanswered[:5]}")
        if not self.settled:
            out.append("the nodes' counters did not account for every image sent")
        for node, c in self.counters.items():
            if c["received"] != self.images_sent.get(node, 0):
                out.append(f"{node}: received {c['received']} of {self.images_sent.get(node, 0)} images sent")
            if c["processed"] != self.answered.get(node, 0):
                out.append(f"{node}: processed {c['processed']} but {self.answered.get(node, 0)} answered")
        if self.counted() != self.malformed_images:
            out.append(f"{self.counted()} drops counted for {self.malformed_images} malformed images")
        for node, n in self.info_counted.items():
            if n is not None and n != self.info_malformed.get(node, 0):
                out.append(f"{node}: {INFO_COUNTER} {n} for {self.info_malformed.get(node, 0)} malformed CameraInfo")
        return out


def _stamp(i: int) -> Any:
    from builtin_interfaces.msg import Time

    ns = 1_700_000_000_000_000_000 + i * 10_000_000  # 100 Hz: unique per message, never back in time
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def run_fuzz(args: argparse.Namespace, tmp: Path, log: Any = print) -> FuzzResult:
    """Start the two nodes, send the stream, wait until the counters settle; never raises for a finding."""
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    from perception.ros.tools.graph import Graph

    cams = {t: camera_names(t, args.cameras) for t in (RAW, COMPRESSED)}
    nodes = {node_name(t): node_parameters(t, args.cameras, args) for t in (RAW, COMPRESSED)}
    result = FuzzResult()
    graph = Graph(nodes, tmp, "fuzz_client")
    try:
        for t in (RAW, COMPRESSED):
            for c in cams[t]:
                graph.watch(c)
                graph.publisher(Image if t == RAW else CompressedImage, f"/{c}/image_raw" + (
                    "/compressed" if t == COMPRESSED else ""))
                graph.publisher(CameraInfo, f"/{c}/camera_info")
        t_start = time.monotonic()
        graph.wait_active({node_name(t): cams[t] for t in cams})
        graph.wait_subscribed()
        log(f"nodes active after {time.monotonic() - t_start:.1f} s; sending {args.messages} malformed messages "
            f"(seed {args.seed})")
        t0 = time.monotonic()
        sent_per_node: Counter[str] = Counter()
        pending_mutated: list[tuple[str, int]] = []
        for i, item in enumerate(fuzz_stream(args.seed, args.messages, args.valid_every, args.cameras,
                                             args.width, args.height)):
            if time.monotonic() - t0 > args.max_seconds:
                result.stopped_early = True
                log(f"stopped after {args.max_seconds:.0f} s (--max-seconds) at message {i}")
                break
            if i % 200 == 0 and i:
                log(f"  {i} messages, {result.sent[VALID]} valid answered so far "
                    f"{result.sent[VALID] - len(result.valid_unanswered)}")
            camera = cams[item.transport][item.camera]
            stamp = _stamp(i)
            item.msg.header.stamp = stamp
            item.msg.header.frame_id = camera
            result.sent[item.kind] += 1
            result.labels[f"{item.kind}/{item.transport}/{item.label}"] += 1
            if item.kind in (INFO_BAD, INFO_OK):
                graph.publisher(CameraInfo, f"/{camera}/camera_info").publish(item.msg)
                if item.kind == INFO_BAD and item.label != INFO_MISMATCH:
                    n = node_name(item.transport)
                    result.info_malformed[n] = result.info_malformed.get(n, 0) + 1
                graph.spin_until(lambda: False, args.gap_ms / 1000.0)
                continue
            topic = f"/{camera}/image_raw" + ("/compressed" if item.transport == COMPRESSED else "")
            graph.publisher(type(item.msg), topic).publish(item.msg)
            sent_per_node[node_name(item.transport)] += 1
            key = stamp.sec * 1_000_000_000 + stamp.nanosec
            if item.kind == VALID:
                if not graph.spin_until(lambda c=camera, k=key: k in graph.answers[c], args.answer_timeout):
                    result.valid_unanswered.append(f"{camera} {item.label} #{i}")
                    if not all(graph.alive(n) for n in nodes):
                        log("a node died: stopping")
                        break
            else:
                if item.kind == MUTATED:
                    pending_mutated.append((camera, key))
                graph.spin_until(lambda: False, args.gap_ms / 1000.0)
        result.seconds = time.monotonic() - t0
        result.images_sent = dict(sent_per_node)

        def totals() -> dict[str, dict[str, int]]:
            out = {}
            for n in nodes:
                t = RAW if n == node_name(RAW) else COMPRESSED
                vals = [graph.values(n, c) for c in cams[t]]
                out[n] = {k: sum(int(v.get(k, 0)) for v in vals) for k in
                          ("received", "processed", "dropped_bad_input", "dropped_stale", "dropped_paused")}
            return out

        def settled() -> bool:
            tot = totals()
            return all(
                tot[n]["received"] == sent_per_node[n]
                and tot[n]["processed"] + tot[n]["dropped_bad_input"] + tot[n]["dropped_stale"]
                + tot[n]["dropped_paused"] == tot[n]["received"] for n in nodes)

        result.settled = graph.spin_until(settled, 15.0)
        graph.spin_until(lambda: False, 0.5)  # one more diagnostics period: counters final
        result.counters = totals()
        result.mutated_answered = sum(k in graph.answers[c] for c, k in pending_mutated)
        for n in nodes:
            t = RAW if n == node_name(RAW) else COMPRESSED
            result.answered[n] = sum(len(graph.answers[c]) for c in cams[t])
            infos = [graph.values(n, c).get(INFO_COUNTER) for c in cams[t]]
            result.info_counted[n] = sum(int(v) for v in infos if v is not None) if any(
                v is not None for v in infos) else None
            result.alive[n] = graph.alive(n)
            for c in cams[t]:
                result.levels[f"{n}: {c}"] = dict(graph.levels.get(f"{n}: {c}", {}))
                result.last_errors[f"{n}: {c}"] = graph.values(n, c).get("last_error", "")
    finally:
        graph.close()
        result.logs = {n: r.output() for n, r in graph.runs.items()}
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("out/bench"))
    p.add_argument("--messages", type=int, default=2000, help="malformed messages (valid frames come on top)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--valid-every", type=int, default=4, help="one valid frame after every N malformed messages")
    p.add_argument("--cameras", type=int, default=4, help="camera namespaces per node (messages go round robin)")
    p.add_argument("--width", type=int, default=64, help="valid frame width")
    p.add_argument("--height", type=int, default=48)
    p.add_argument("--gap-ms", type=float, default=3.0, help="pause after each malformed image")
    p.add_argument("--answer-timeout", type=float, default=10.0, help="seconds to wait for a valid frame's answer")
    p.add_argument("--max-seconds", type=float, default=900.0, help="stop sending after this long")
    p.add_argument("--model", default="stan_tiny_temporal", help="registry name (untrained: plumbing, not accuracy)")
    p.add_argument("--checkpoint", default=None, type=checkpoint_arg, help="checkpoint instead of --model")
    add_model_arguments(p, "64x128", "network input HxW (tiny: fast)")
    p.set_defaults(backend="torch")


def report(result: FuzzResult, args: argparse.Namespace) -> Any:
    from perception.bench.report import Report

    rep = Report(f"Fuzz: {sum(result.sent[k] for k in (BAD, MUTATED, INFO_BAD))} malformed messages into two "
                 "perception_nodes in another process, interleaved with valid frames")
    for label, n in sorted(result.labels.items()):
        rep.add(name=label, messages=n)
    for node, c in result.counters.items():
        rep.add(name=f"node {node} counters", images_sent=result.images_sent.get(node, 0), **c,
                answered=result.answered.get(node, 0), alive=result.alive.get(node))
    valid = result.sent[VALID]
    answered = valid - len(result.valid_unanswered)
    rep.add_goal("nodes alive at the end", float(all(result.alive.values())), "all", all(result.alive.values()))
    rep.add_goal("valid frames answered", float(answered), f"= {valid}", answered == valid)
    rep.add_goal("malformed images counted as dropped (bad input or stale)", float(result.counted()),
                 f"= {result.malformed_images} (bad {result.sent[BAD]} + mutated refused "
                 f"{result.sent[MUTATED] - result.mutated_answered})", result.counted() == result.malformed_images)
    rep.add_goal("malformed messages sent", float(result.sent[BAD] + result.sent[MUTATED] + result.sent[INFO_BAD]),
                 f">= {args.messages}", result.sent[BAD] + result.sent[MUTATED] + result.sent[INFO_BAD]
                 >= args.messages)
    bad_input = sum(c["dropped_bad_input"] for c in result.counters.values())
    rep.notes.append(
        f"seed {args.seed}, {args.cameras} cameras per node, one valid frame per {args.valid_every} malformed "
        "messages, "
        f"{args.gap_ms:g} ms after each malformed image, {result.seconds:.1f} s; model {args.checkpoint or args.model} "
        f"input {args.input_size} {args.backend}; {bad_input} refused by the converter (dropped_bad_input), "
        f"{result.counted() - bad_input} replaced by a later frame before the worker took them (dropped_stale); "
        f"{result.mutated_answered} of {result.sent[MUTATED]} "
        f"mutated messages still decoded and were answered; CameraInfo: {result.sent[INFO_BAD]} bad (malformed, or a "
        f"size other than the images') + {result.sent[INFO_OK]} valid sent")
    for node, counted in result.info_counted.items():
        rep.notes.append(f"{node}: {result.info_malformed.get(node, 0)} malformed CameraInfo sent; the node's "
                         f"{INFO_COUNTER}: {'no such counter in /diagnostics' if counted is None else counted}")
    if result.stopped_early:
        rep.notes.append(f"stopped early by --max-seconds {args.max_seconds:g}")
    seen = sorted({lvl for lv in result.levels.values() for lvl in lv})
    rep.notes.append(f"diagnostics levels seen (0 OK, 1 WARN, 2 ERROR, 3 STALE): {seen}; last errors: "
                     + "; ".join(f"{k}: {v}" for k, v in sorted(result.last_errors.items()) if v and v != "none")[:800])
    for f in result.failures():
        rep.notes.append(f"FAILED: {f}")
    return rep


def run(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench_fuzz_"))
    result = run_fuzz(args, tmp)
    rep = report(result, args)
    rep.publish(args.out, "bench_fuzz")
    failures = result.failures()
    if failures:
        print(f"node logs under {tmp}")
    return 1 if failures else 0
