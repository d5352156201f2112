"""Latest-frame-wins slots, the worker and the runner without a ROS graph (a fake Perceptor)."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("perception.core.decode")  # the pipeline module (lands from another branch)

from ros_testing import image_msg, rgb_image

from perception.core.temporal import ResetReason
from perception.core.types import Detections
from perception.pipeline.perceptor import PerceptionResult, PipelineError
from perception.ros import convert
from perception.ros.errors import RosError
from perception.ros.nodes import outputs, queues, runner
from perception.ros.nodes.params import node_config
from perception.ros.nodes.stats import NodeStats
from perception.ros.nodes.worker import InferenceWorker, pipelining_enabled


class FakePerceptor:
    """Boxes around the image centre; records batch sizes; refuses images with a red top-left pixel."""

    def __init__(self, lowres: tuple[int, int] | None = None) -> None:
        self.batches: list[list[str]] = []
        self.resets: list[str | None] = []
        self.lowres = lowres  # (h, w) of network-resolution maps to return instead of input-resolution ones

    def reset(self, camera_id: str | None = None) -> None:
        self.resets.append(camera_id)

    def process(self, f: Any) -> PerceptionResult:
        return self.process_batch([f])[0]

    def process_batch(self, frames: list[Any]) -> list[PerceptionResult]:
        if any(tuple(f.rgb[0, 0]) == (255, 0, 0) for f in frames):
            raise PipelineError("red pixel")
        self.batches.append([f.camera_id for f in frames])
        out = []
        for f in frames:
            h, w = f.rgb.shape[:2]
            det = Detections(np.array([[w / 4, h / 4, w / 2, h / 2], [0, 0, 4, 4]], np.float32),
                             np.array([0.9, 0.8], np.float32), np.array([0, 2]), np.array([2.0, 0.5], np.float32))
            if self.lowres is None:
                out.append(PerceptionResult(f.camera_id, f.stamp, det, np.ones((h, w), np.uint8),
                                            np.full((h, w), 0.5, np.float32), ResetReason.NONE, {"infer": 1.0}))
                continue
            lh, lw = self.lowres
            out.append(PerceptionResult(f.camera_id, f.stamp, det, reset=ResetReason.NONE, timings_ms={"infer": 1.0},
                                        segmentation_lowres=np.ones((lh, lw), np.uint8),
                                        attention_lowres=np.full((lh, lw), 0.5, np.float32),
                                        lowres_scale=(w / lw, h / lh)))
        return out


def _runner(**params: Any) -> tuple[runner.PerceptionRunner, FakePerceptor, list[tuple[str, str, Any]], NodeStats]:
    cfg = node_config({"cameras": ["a", "b"], **params})
    fake = FakePerceptor()
    published: list[tuple[str, str, Any]] = []
    stats = NodeStats(cfg.input.cameras)
    r = runner.PerceptionRunner(fake, cfg, lambda c, k, m: published.append((c, k, m)), stats,  # type: ignore[arg-type]
                                warn=lambda s: None)
    return r, fake, published, stats


def test_latest_frame_wins_and_counts_stale_drops() -> None:
    slots = queues.LatestFrameSlots(("a", "b"))
    assert not slots.put(queues.Pending("a", 1, 1.0))
    assert slots.put(queues.Pending("a", 2, 2.0))  # replaced an untaken frame
    assert not slots.put(queues.Pending("b", 3, 1.5))
    got = slots.take(0.01)
    assert [(p.camera, p.msg) for p in got] == [("b", 3), ("a", 2)]  # oldest first, one per camera
    assert slots.take(0.01) == []
    t0 = time.monotonic()
    threading.Timer(0.05, lambda: slots.put(queues.Pending("b", 4, 3.0))).start()
    assert [p.msg for p in slots.take(2.0)] == [4] and time.monotonic() - t0 < 1.0


def test_runner_publishes_every_output_with_the_input_header_and_filters_classes() -> None:
    r, _fake, published, stats = _runner(**{"detection.classes": ["car"]})
    msg = image_msg(rgb_image(40, 60), 5.5, "cam_a")
    r.process([queues.Pending("a", msg, time.monotonic())])
    keys = [k for _, k, _ in published]
    assert keys[0] == outputs.DETECTIONS  # detections first: the latency-critical output
    assert set(keys) == {outputs.DETECTIONS, outputs.OBJECT_ATTENTION, outputs.SEGMENTATION, outputs.SEGMENTATION_COLOR,
                         outputs.ATTENTION, outputs.ANNOTATIONS}
    assert all(m.header == msg.header for _, k, m in published if k != outputs.ANNOTATIONS)
    (ann,) = [m for _, k, m in published if k == outputs.ANNOTATIONS]  # no header: each annotation is stamped
    assert len(ann.points) == 1 and all(a.timestamp == msg.header.stamp for a in [*ann.points, *ann.texts])
    det = published[0][2]
    assert len(det.detections) == 1 and det.detections[0].results[0].hypothesis.class_id == "0"
    assert convert.image_to_array(published[1][2]).tolist() == [[2.0]]
    assert stats.snapshot()["a"]["processed"] == 1


def test_bad_frames_are_dropped_and_the_rest_of_the_batch_survives() -> None:
    r, fake, _published, stats = _runner()
    bad = image_msg(rgb_image(40, 60), 1.0)
    bad.encoding = "weird"
    red = rgb_image(40, 60)
    red[0, 0] = (255, 0, 0)
    r.process([queues.Pending("a", bad, 0.0), queues.Pending("b", image_msg(rgb_image(30, 30), 1.0), 0.0)])
    good_b = image_msg(rgb_image(30, 30), 2.0)
    r.process([queues.Pending("a", image_msg(red, 2.0), 0.0), queues.Pending("b", good_b, 0.0)])
    snap = stats.snapshot()
    assert snap["a"]["dropped_bad_input"] == 2 and snap["a"]["last_error"] == "PipelineError: red pixel"
    assert snap["b"]["processed"] == 2 and snap["a"]["processed"] == 0
    assert fake.batches == [["b"], ["b"]]  # the second batch was retried one by one after the pipeline refused it


def test_worker_batches_cameras_and_temporal_off_resets_each_frame() -> None:
    r, fake, _published, _stats = _runner(**{"temporal.enabled": False, "max_batch": 2})
    slots = queues.LatestFrameSlots(("a", "b"))
    slots.put(queues.Pending("a", image_msg(rgb_image(20, 20), 1.0), 0.0))
    slots.put(queues.Pending("b", image_msg(rgb_image(20, 20), 1.0), 0.0))
    worker = InferenceWorker(slots, r, max_batch=2)
    worker.start()
    deadline = time.monotonic() + 5
    while not fake.batches and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    assert fake.batches[0] == ["a", "b"]  # ready together -> one inference
    assert fake.resets == ["a", "b"]


def test_image_outputs_nobody_subscribes_to_are_not_built() -> None:
    cfg = node_config({"cameras": ["a"]})
    fake = FakePerceptor()
    published: list[tuple[str, str, Any]] = []
    subscribed = {outputs.DETECTIONS, outputs.ATTENTION}
    stats = NodeStats(("a",))
    r = runner.PerceptionRunner(fake, cfg, lambda c, k, m: published.append((c, k, m)), stats,  # type: ignore[arg-type]
                                warn=lambda s: None, wants=lambda cam, key: key in subscribed)
    r.process([queues.Pending("a", image_msg(rgb_image(40, 60), 1.0), time.monotonic())])
    assert [k for _, k, _ in published] == [outputs.DETECTIONS, outputs.ATTENTION]
    subscribed = {outputs.DETECTIONS}
    r.process([queues.Pending("a", image_msg(rgb_image(40, 60), 2.0), time.monotonic())])
    assert [k for _, k, _ in published][2:] == [outputs.DETECTIONS]
    assert stats.snapshot()["a"]["image_size"] == "60x40"  # the input's size, with no map published


def test_network_masks_come_at_the_network_size_with_a_scaled_camera_info() -> None:
    cfg = node_config({"cameras": ["a"], "output.mask_resolution": "network"})
    fake = FakePerceptor(lowres=(32, 43))  # 96x128 letterboxed into 32x64: scale 1/3, content 43x32
    published: dict[str, Any] = {}
    r = runner.PerceptionRunner(fake, cfg, lambda c, k, m: published.__setitem__(k, m), NodeStats(("a",)),  # type: ignore[arg-type]
                                warn=lambda s: None)
    from perception.core.types import CameraIntrinsics

    r.camera_infos["a"] = convert.intrinsics_to_camera_info(CameraIntrinsics(128, 96, 100.0, 90.0, 64.0, 48.0),
                                                             convert.make_header(0.0, "cam"))
    r.camera_sizes["a"] = (96, 128)
    r.process([queues.Pending("a", image_msg(rgb_image(96, 128), 1.0), time.monotonic())])
    seg, color, att, info = (published[k] for k in (outputs.SEGMENTATION, outputs.SEGMENTATION_COLOR, outputs.ATTENTION,
                                                    outputs.MASK_CAMERA_INFO))
    assert {(m.height, m.width) for m in (seg, color, att, info)} == {(32, 43)}
    k = np.asarray(info.k).reshape(3, 3)
    np.testing.assert_allclose([k[0, 0], k[0, 2], k[1, 1], k[1, 2]],
                               [100 * 43 / 128, 64 * 43 / 128, 90 / 3, 48 / 3])
    assert info.header == seg.header and convert.image_to_array(seg).min() == 1


def test_the_perceptor_computes_only_the_maps_a_subscribed_output_needs() -> None:
    torch = pytest.importorskip("torch")
    from perception.models.registry import build_model
    from perception.pipeline.perceptor import Perceptor, PerceptorConfig
    from perception.runtime.select import ModelSource, RuntimeConfig, build_backend

    torch.manual_seed(0)
    backend = build_backend(ModelSource(module_factory=lambda: build_model("stan_tiny_temporal"), input_size=(64, 128)),
                            RuntimeConfig(backend="torch", threads=1))
    cfg = node_config({"cameras": ["a"]})
    subscribed: set[str] = {outputs.DETECTIONS}
    results: list[Any] = []
    perceptor = Perceptor(backend, PerceptorConfig())
    r = runner.PerceptionRunner(perceptor, cfg, lambda c, k, m: None, NodeStats(("a",)), warn=lambda s: None,
                                wants=lambda cam, key: key in subscribed)
    for i, wanted in enumerate(({outputs.DETECTIONS}, {outputs.SEGMENTATION_COLOR}, {outputs.OBJECT_ATTENTION})):
        subscribed = wanted
        results += r.infer(r.convert([queues.Pending("a", image_msg(rgb_image(48, 64), 1.0 + 0.1 * i), 0.0)]))
    maps = [(res.segmentation is not None, res.attention is not None) for _, res in results]
    assert maps == [(False, False), (True, False), (False, True)]
    backend.close()


def test_converted_frames_newest_wins_per_camera_and_keeps_the_dropped_steps() -> None:
    from perception.core.temporal import StreamSteps
    from perception.pipeline.perceptor import FrameInput

    frames = queues.ConvertedFrames()
    rgb = rgb_image(8, 8)

    def item(cam: str, t: float, steps: StreamSteps | None) -> tuple[queues.Pending, FrameInput]:
        return queues.Pending(cam, None, t), FrameInput(cam, rgb, t, received=steps)

    assert frames.put([item("a", 1.0, StreamSteps(0.1, 0.1)), item("b", 1.1, None)]) == []
    replaced = frames.put([item("a", 2.0, StreamSteps(0.1, 0.9))])  # only a's frame is replaced, b's stays
    assert [(p.received, why) for p, why in replaced] == [(1.0, "stale")]
    got = frames.take(0.0)
    assert [(p.camera, f.stamp) for p, f in got] == [("b", 1.1), ("a", 2.0)]
    assert got[1][1].received == StreamSteps(0.1, 0.9)
    frames.put([item("a", 3.0, StreamSteps(0.7, 0.7))])
    frames.put([item("a", 4.0, StreamSteps(0.1, 0.1))])
    assert frames.take(0.0)[0][1].received == StreamSteps(0.1, 0.7)  # the replaced frame's jump is not lost


def test_handoff_applies_backpressure_and_close_releases_a_waiting_put() -> None:
    h = queues.Handoff()
    assert h.put(1)
    done: list[bool] = []
    t = threading.Thread(target=lambda: done.append(h.put(2)))
    t.start()
    time.sleep(0.15)
    assert done == []  # waits: the first item was not taken yet
    assert h.take(0.1) == 1
    t.join(2.0)
    assert done == [True] and h.take(0.1) == 2
    h.put(3)
    t = threading.Thread(target=lambda: done.append(h.put(4)))
    t.start()
    h.close()
    t.join(2.0)
    assert not t.is_alive() and done[-1] is False


def test_pipelined_worker_flows_counts_replaced_frames_and_stops_every_stage() -> None:
    r, _fake, _published, stats = _runner(max_batch=2)
    slots = queues.LatestFrameSlots(("a", "b"))
    worker = InferenceWorker(slots, r, max_batch=2, pipelined=True)
    worker.start()
    assert worker.alive() and len({t.name for t in threading.enumerate()} & {
        "perception-convert", "perception-inference", "perception-publish"}) == 3
    for i in range(40):
        for cam in ("a", "b"):
            stats.received(cam)
            if slots.put(queues.Pending(cam, image_msg(rgb_image(20, 20), 1.0 + 0.01 * i), time.monotonic())):
                stats.dropped(cam, "stale")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        snap = stats.snapshot()
        if all(snap[c]["processed"] + snap[c]["dropped_stale"] == 40 for c in ("a", "b")):
            break
        time.sleep(0.02)
    snap = stats.snapshot()
    assert all(snap[c]["processed"] + snap[c]["dropped_stale"] == 40 for c in ("a", "b")), snap
    assert all(snap[c]["processed"] >= 1 for c in ("a", "b"))
    assert worker.health() == ("ok", "")
    worker.stop()
    assert not worker.alive() and not any(t.name.startswith("perception-") for t in threading.enumerate())


def test_pipelining_auto_follows_the_cpus() -> None:
    assert pipelining_enabled("auto", cpus=2) and not pipelining_enabled("auto", cpus=1)
    assert pipelining_enabled("enabled", cpus=1) and not pipelining_enabled("disabled", cpus=8)
    with pytest.raises(RosError):
        pipelining_enabled("on")


def test_take_gathers_the_other_cameras_frames_for_a_batch() -> None:
    slots = queues.LatestFrameSlots(("a", "b", "c"))
    slots.put(queues.Pending("a", 1, 1.0))
    threading.Timer(0.02, lambda: slots.put(queues.Pending("b", 2, 1.1))).start()
    threading.Timer(0.04, lambda: slots.put(queues.Pending("c", 3, 1.2))).start()
    t0 = time.monotonic()
    assert [p.camera for p in slots.take(1.0, limit=2, gather_s=0.5)] == ["a", "b"]  # full at max_batch 2
    assert time.monotonic() - t0 < 0.4
    assert [p.camera for p in slots.take(1.0, gather_s=0.5)] == ["c"]  # b was taken: only c waits
    slots.put(queues.Pending("a", 4, 2.0))
    t0 = time.monotonic()
    assert [p.camera for p in slots.take(1.0, gather_s=0.05)] == ["a"]  # nobody else sends: bounded wait
    assert 0.04 <= time.monotonic() - t0 < 0.5
    r, _fake, _published, _stats = _runner(max_batch=2)
    assert r.gather_s(1) == 0.0 and 0.0 <= r.gather_s(2) <= runner.GATHER_MAX_S


def test_slots_shed_by_the_declared_policy_and_say_why() -> None:
    from perception.core.shedding import FrameScheduler, SheddingPolicy

    policy = SheddingPolicy(priority={"a": 1}, max_rate_hz={"b": 2.0}, max_wait_s=60.0)
    slots = queues.LatestFrameSlots(("a", "b"), FrameScheduler(("a", "b"), policy))
    t = time.monotonic()
    assert slots.put(queues.Pending("b", 1, t)) is None
    assert slots.put(queues.Pending("b", 2, t + 0.01)) == "rate_cap"  # 100 Hz into a 2 Hz cap: not queued
    assert slots.put(queues.Pending("a", 3, t)) is None
    assert slots.put(queues.Pending("a", 4, t + 0.02)) == "stale"  # a (priority 1) lost a frame: b yields
    assert [p.msg for p in slots.take(0.0, limit=8)] == [4]
    assert slots.put(queues.Pending("b", 5, t + 1.0)) == "priority"  # b's frame, held back, replaced
    assert [p.msg for p in slots.take(0.0, limit=8)] == [5]  # nothing of a waits: b is taken, never starved


def test_shed_frames_are_counted_with_their_reason() -> None:
    stats = NodeStats(("a",))
    for _ in range(4):
        stats.received("a")
    stats.shed("a", "stale")
    stats.shed("a", "priority")
    stats.shed("a", "rate_cap")
    v = stats.snapshot()["a"]
    assert (v["dropped_stale"], v["shed"], v["window_shed"]) == (1, 3, 3)
    assert v["shed_reasons"] == "priority=1, rate_cap=1, stale=1"
    assert v["shedding"] == "shed by rule: priority 1 of 4 frames, rate_cap 1 of 4 frames"
    assert v["level"] == "ok"  # declared shedding is said, not a fault
