"""Issue 10, guarantee "a fuzzer" (the short CI version of ``perception bench fuzz``).

Seeded malformed Image, CompressedImage and CameraInfo messages go from this process to two
perception_node processes (raw and compressed input, tiny untrained network), interleaved with
valid frames. The nodes must stay alive, answer every valid frame and count every malformed image
as dropped in their own /diagnostics counters. Before the issue-10 fixes a single odd-width YUY2
image killed the inference thread, after which no valid frame was answered.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")

from ros_testing import ROOT, needs_model

from perception.ros.tools import bench_fuzz


def _args(messages: int, seed: int) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    bench_fuzz.add_arguments(p)
    return p.parse_args(["--messages", str(messages), "--seed", str(seed), "--threads", "1", "--max-seconds", "60"])


def test_generator_is_seeded_and_covers_every_kind() -> None:
    a = [(i.kind, i.label, i.transport, i.camera) for i in bench_fuzz.fuzz_stream(3, 400)]
    b = [(i.kind, i.label, i.transport, i.camera) for i in bench_fuzz.fuzz_stream(3, 400)]
    assert a == b
    kinds = {k for k, *_ in a}
    assert kinds == {bench_fuzz.VALID, bench_fuzz.BAD, bench_fuzz.MUTATED, bench_fuzz.INFO_BAD, bench_fuzz.INFO_OK}
    labels = {(k, lbl) for k, lbl, *_ in a}
    for must in [("bad", "yuy2_odd_width"), ("bad", "jpeg_forged_4000x4000"), ("bad", "jpeg_truncated_eoi_appended"),
                 ("valid", "jpeg_exif_orientation_6"), ("valid", "jpeg_big_app_segments")]:
        assert must in labels
    assert sum(k != bench_fuzz.VALID and k != bench_fuzz.INFO_OK for k, *_ in a) == 400


def test_every_bad_message_is_refused_by_the_converter() -> None:
    """In process: each message labelled bad raises RosError; each valid one converts (no graph needed)."""
    from perception.ros import convert
    from perception.ros.errors import RosError

    for item in bench_fuzz.fuzz_stream(5, 600):
        if item.kind == bench_fuzz.BAD:
            with pytest.raises(RosError):
                rgb = convert.message_to_rgb(item.msg)
                if min(rgb.shape[:2]) < 8:  # the runner's minimum size
                    raise RosError("under 8x8")
        elif item.kind == bench_fuzz.VALID:
            assert convert.message_to_rgb(item.msg).shape[:2] == (48, 64 - (64 % 2))
        elif item.kind == bench_fuzz.INFO_BAD and item.label != bench_fuzz.INFO_MISMATCH:
            with pytest.raises(RosError):
                convert.camera_info_size(item.msg)


def test_fuzz_across_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    needs_model()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    args = _args(messages=300, seed=1)
    result = bench_fuzz.run_fuzz(args, tmp_path, log=lambda _: None)
    logs = "\n".join(f"--- {n}\n{text[-3000:]}" for n, text in result.logs.items())
    assert result.failures() == [], logs
    assert all(result.alive.values()), logs
    assert result.sent[bench_fuzz.VALID] >= 60 and not result.valid_unanswered
    assert result.counted() == result.malformed_images >= 200
    # the converter, not the latest-frame slot, refused most of them (they were really decoded)
    bad_input = sum(c["dropped_bad_input"] for c in result.counters.values())
    assert bad_input >= 0.8 * result.malformed_images
    # every malformed CameraInfo was refused and counted by the node that received it (failures() compares)
    assert all(n is not None for n in result.info_counted.values()), result.info_counted
    assert sum(result.info_malformed.values()) > 0
    assert "Traceback" not in logs and "Exception in thread" not in logs, logs
