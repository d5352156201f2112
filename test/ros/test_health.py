"""Diagnostics levels that follow the drop and answer rates, and libjpeg's stderr spam captured."""

from __future__ import annotations

import os
import time

import cv2
import numpy as np
import pytest

from perception.core.fdcapture import StderrCapture
from perception.ros.nodes.stats import HealthThresholds, NodeStats


def _stats(**kw: float) -> NodeStats:
    return NodeStats(("a",), HealthThresholds(**kw))  # type: ignore[arg-type]


def test_levels_follow_stale_bad_and_failed_shares() -> None:
    s = _stats()
    for i in range(20):  # 75 % stale: inference keeps up with one frame in four
        s.received("a")
        if i % 4:
            s.dropped("a", "stale")
        else:
            s.processed("a", 10.0, 10.0, 5.0, "", (48, 64))
    v = s.snapshot()["a"]
    assert v["level"] == "warn" and "75 % of frames dropped stale" in v["message"]
    assert v["window_received"] == 20 and v["window_dropped_stale"] == 15

    s = _stats()
    for _ in range(20):  # 25 % stale: fine
        s.received("a")
        s.processed("a", 10.0, 10.0, 5.0, "", (48, 64))
    s.received("a")
    s.dropped("a", "bad", "RosError: bad step", "RosError")  # 1 bad of 21: under 10 %
    s.received("a")
    s.processed("a", 10.0, 10.0, 5.0, "", (48, 64))
    assert s.snapshot()["a"]["level"] == "ok"
    for _ in range(4):
        s.received("a")
        s.dropped("a", "bad", "RosError: bad step", "RosError")
    v = s.snapshot()["a"]
    assert v["level"] == "warn" and "bad input" in v["message"] and v["drop_reasons"] == "bad:RosError=5"

    s = _stats()
    s.received("a")
    s.dropped("a", "failed", "RuntimeError: backend", "RuntimeError")
    s.received("a")
    s.processed("a", 10.0, 10.0, 5.0, "", (48, 64))
    v = s.snapshot()["a"]
    assert v["level"] == "warn" and "failed in the pipeline/backend" in v["message"]  # judged at any count


def test_nothing_answered_while_input_arrives_is_an_error_and_pausing_is_not() -> None:
    s = _stats(stall_s=0.2)
    assert s.snapshot()["a"]["level"] == "ok"  # no input: nothing owed
    s.received("a")
    s.dropped("a", "bad", "error: cv2", "cv2.error")
    time.sleep(0.3)
    v = s.snapshot()["a"]
    assert v["level"] == "error" and "nothing answered for" in v["message"] and "cv2" in v["message"]
    s.processed("a", 10.0, 10.0, 5.0, "", (48, 64))
    assert s.snapshot()["a"]["level"] != "error"
    s = _stats(stall_s=0.2, window_s=0.5)  # a stream that stops: no longer owed answers, but said
    s.received("a")
    time.sleep(0.6)
    v = s.snapshot()["a"]
    assert v["level"] == "warn" and "no input for" in v["message"]
    s = _stats(stall_s=0.2)
    s.received("a")
    s.dropped("a", "paused")
    time.sleep(0.3)
    assert s.snapshot()["a"]["level"] == "ok"
    with pytest.raises(ValueError, match="drop kind"):
        s.dropped("a", "whatever")


def _corrupt_jpeg() -> bytes:
    rgb = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    data = cv2.imencode(".jpg", rgb)[1].tobytes()
    return data[: len(data) // 2] + b"\xff\xd9"  # truncated, with an end marker: libjpeg warns and decodes


def test_decoder_warnings_are_captured_and_other_stderr_passes(capfd: pytest.CaptureFixture[str]) -> None:
    capture = StderrCapture()
    with capture() as lines:
        img = cv2.imdecode(np.frombuffer(_corrupt_jpeg(), np.uint8), cv2.IMREAD_COLOR)
        os.write(2, b"another thread's log line\n")
    capture.close()
    assert img is not None
    assert lines and lines[0].startswith("Corrupt JPEG data")
    err = capfd.readouterr().err
    assert "Corrupt JPEG" not in err and "another thread's log line" in err


def test_the_runner_keeps_libjpeg_spam_off_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("rclpy")
    pytest.importorskip("vision_msgs.msg")
    from sensor_msgs.msg import CompressedImage

    from perception.ros import convert
    from perception.ros.nodes import queues, runner
    from perception.ros.nodes.params import node_config

    cfg = node_config({"cameras": ["a"]})
    stats = NodeStats(("a",))
    warnings: list[str] = []
    r = runner.PerceptionRunner(None, cfg, lambda c, k, m: None, stats, warn=warnings.append)  # type: ignore[arg-type]
    msg = CompressedImage(format="jpeg", data=_corrupt_jpeg())
    msg.header = convert.make_header(1.0, "cam")
    for _ in range(20):  # a camera sending damaged frames
        r._to_frame(queues.Pending("a", msg, time.monotonic()))
    assert "Corrupt JPEG" not in capfd.readouterr().err
    # decoded (with a throttled log line), or refused by a decoder that checks the data first: either way no spam
    assert len(warnings) <= 2
