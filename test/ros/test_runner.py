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
from perception.ros.nodes import runner
from perception.ros.nodes.params import node_config
from perception.ros.nodes.stats import NodeStats


class FakePerceptor:
    """Boxes around the image centre; records batch sizes; refuses images with a red top-left pixel."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.resets: list[str | None] = []

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
            out.append(PerceptionResult(f.camera_id, f.stamp, det, np.ones((h, w), np.uint8),
                                        np.full((h, w), 0.5, np.float32), ResetReason.NONE, {"infer": 1.0}))
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
    slots = runner.LatestFrameSlots(("a", "b"))
    assert not slots.put(runner.Pending("a", 1, 1.0))
    assert slots.put(runner.Pending("a", 2, 2.0))  # replaced an untaken frame
    assert not slots.put(runner.Pending("b", 3, 1.5))
    got = slots.take(0.01)
    assert [(p.camera, p.msg) for p in got] == [("b", 3), ("a", 2)]  # oldest first, one per camera
    assert slots.take(0.01) == []
    t0 = time.monotonic()
    threading.Timer(0.05, lambda: slots.put(runner.Pending("b", 4, 3.0))).start()
    assert [p.msg for p in slots.take(2.0)] == [4] and time.monotonic() - t0 < 1.0


def test_runner_publishes_every_output_with_the_input_header_and_filters_classes() -> None:
    r, _fake, published, stats = _runner(**{"detection.classes": ["car"]})
    msg = image_msg(rgb_image(40, 60), 5.5, "cam_a")
    r.process([runner.Pending("a", msg, time.monotonic())])
    keys = [k for _, k, _ in published]
    assert keys[0] == runner.DETECTIONS  # detections first: the latency-critical output
    assert set(keys) == {runner.DETECTIONS, runner.OBJECT_ATTENTION, runner.SEGMENTATION, runner.SEGMENTATION_COLOR,
                         runner.ATTENTION, runner.ANNOTATIONS}
    assert all(m.header == msg.header for _, k, m in published if k != runner.ANNOTATIONS)
    (ann,) = [m for _, k, m in published if k == runner.ANNOTATIONS]  # no header: each annotation is stamped
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
    r.process([runner.Pending("a", bad, 0.0), runner.Pending("b", image_msg(rgb_image(30, 30), 1.0), 0.0)])
    good_b = image_msg(rgb_image(30, 30), 2.0)
    r.process([runner.Pending("a", image_msg(red, 2.0), 0.0), runner.Pending("b", good_b, 0.0)])
    snap = stats.snapshot()
    assert snap["a"]["dropped_bad_input"] == 2 and snap["a"]["last_error"] == "PipelineError: red pixel"
    assert snap["b"]["processed"] == 2 and snap["a"]["processed"] == 0
    assert fake.batches == [["b"], ["b"]]  # the second batch was retried one by one after the pipeline refused it


def test_worker_batches_cameras_and_temporal_off_resets_each_frame() -> None:
    r, fake, _published, _stats = _runner(**{"temporal.enabled": False, "max_batch": 2})
    slots = runner.LatestFrameSlots(("a", "b"))
    slots.put(runner.Pending("a", image_msg(rgb_image(20, 20), 1.0), 0.0))
    slots.put(runner.Pending("b", image_msg(rgb_image(20, 20), 1.0), 0.0))
    worker = runner.InferenceWorker(slots, r, max_batch=2)
    worker.start()
    deadline = time.monotonic() + 5
    while not fake.batches and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    assert fake.batches[0] == ["a", "b"]  # ready together -> one inference
    assert fake.resets == ["a", "b"]
