"""``perception replay`` over real DDS: the golden bag through the shipped network matches the stored
outputs; loops reset the temporal memory; rate, window and remapping; bad bags fail fast.

Each replay starts a perception_node process (localhost DDS, this session's private domain) and
plays raw CDR from a real bag file into it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")

from ros_testing import TINY_MODEL, needs_model

from perception.bag import BagError
from perception.bag.io import deserialize, read_messages
from perception.bag.schedule import ReplayOptions
from perception.eval.bags import golden_compare, load_outputs
from perception.ros.tools.replay import camera_of, is_camera_input, node_params, replay

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
TINY = {"extra": {**TINY_MODEL, "model.checkpoint": ""}}


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 frames (10 Hz) of seed 11 at 160x96."""
    pytest.importorskip("perception.sim.drive")
    from perception.sim.config import SimConfig
    from perception.sim.drive import render_drive_bag

    out = tmp_path_factory.mktemp("replay") / "drive"
    render_drive_bag(out, 11, 6, SimConfig(width=160, height=96))
    return out


def _events(bag: Path) -> list[tuple[str, int, int]]:
    """(/replay/events frame_id, stamp ns, log ns)."""
    out = []
    for _, msgtype, log_ns, raw in read_messages(bag, ["/replay/events"], check_order=False):
        h = deserialize(raw, msgtype)
        out.append((str(h.frame_id), int(h.stamp.sec) * 1_000_000_000 + int(h.stamp.nanosec), log_ns))
    return out


def _last_diag(bag: Path) -> dict[str, str]:
    last: dict[str, str] = {}
    for _, msgtype, _, raw in read_messages(bag, ["/diagnostics"], check_order=False):
        for st in deserialize(raw, msgtype).status:
            if st.name.startswith("perception_replay"):
                last = {kv.key: kv.value for kv in st.values}
    return last


def test_cameras_and_node_parameters_from_topics() -> None:
    assert camera_of("/front/image_raw") == ("/front", "image_raw", "raw")
    assert camera_of("/car/left/image_raw/compressed") == ("/car/left", "image_raw", "compressed")
    assert is_camera_input("/front/image_raw", "sensor_msgs/msg/Image", "image_raw", "raw")
    assert not is_camera_input("/front/ground_truth/semantic", "sensor_msgs/msg/Image", "image_raw", "raw")
    assert not is_camera_input("/front/image_raw", "sensor_msgs/msg/Image", "image_raw", "compressed")
    p = node_params(["/front", "/car/left"], "compressed", "image_raw",
                    {"checkpoint": "stan_s", "input_size": "192x320", "outputs": ("detections",)})
    assert p["cameras"] == ["front", "car/left"] and p["input.transport"] == "compressed"
    assert (p["model.input_height"], p["model.input_width"]) == (192, 320) and p["model.checkpoint"] == "stan_s"
    assert p["output.detections"] and not p["output.segmentation"] and not p["output.attention"]
    from perception.ros.nodes.params import node_config

    cfg = node_config(p)  # the node accepts them
    assert cfg.input.cameras == ("front", "car/left")


def test_golden_bag_replays_to_the_stored_outputs(tmp_path: Path) -> None:
    """CI golden regression: the shipped network, deterministic replay, tolerances for CPU numerics."""
    needs_model()
    out = tmp_path / "outputs"
    result = replay(GOLDEN / "drive", out, ReplayOptions(deterministic=True), outputs=("detections", "segmentation"),
                    node_args={"checkpoint": "stan_s_temporal", "threads": 1})
    assert result.images_published == 12 and result.missing_frames == 0, result.summary()
    report = golden_compare(GOLDEN / "expected", out)
    assert report.ok, report.summary()


def test_loop_resets_the_temporal_memory(tmp_path: Path, small_bag: Path) -> None:
    needs_model()
    out = tmp_path / "loop"
    result = replay(small_bag, out, ReplayOptions(deterministic=True, loops=3), outputs=("detections",),
                    node_args=TINY)
    assert result.images_published == 18 and result.loops == 3
    outputs = load_outputs(out)
    assert len(outputs.receipts_ns) == 18 and len(outputs.detections) == 6 and outputs.loops == 2
    events = _events(out)
    assert [e[0] for e in events].count("loop 1") == 1 and [e[0] for e in events].count("loop 2") == 1
    published = [e for e in events if e[0].startswith("publish")]
    assert len(published) == 18 and all(e[0] == "publish /camera/image_raw" for e in published)
    # each pass starts back in time: the node reset its temporal memory at both loop points
    diag = _last_diag(out)
    assert "time_backwards=2" in diag["resets"], diag
    assert diag["processed"] == "18" and diag["dropped_stale"] == "0", diag


def test_restamped_loop_resets_through_the_service(tmp_path: Path, small_bag: Path) -> None:
    """Restamped stamps never go back in time: at the loop point the player calls the node's ~/reset."""
    needs_model()
    out = tmp_path / "restamped"
    result = replay(small_bag, out, ReplayOptions(deterministic=True, loops=2), outputs=("detections",),
                    node_args=TINY, restamp_now=True)
    assert result.images_published == 12
    stamps = sorted(load_outputs(out).detections)
    assert len(stamps) == 12 and stamps[0][1] > 1_700_000_100 * 1_000_000_000  # publish times, not the bag's
    diag = _last_diag(out)
    assert "first_frame=2" in diag["resets"] and "time_backwards" not in diag["resets"], diag


def test_rate_window_and_remap(tmp_path: Path, small_bag: Path, capsys: pytest.CaptureFixture[str]) -> None:
    needs_model()
    out = tmp_path / "rate"
    opts = ReplayOptions(rate=2.0, start_offset_s=0.1, duration_s=0.3)  # frames 1, 2, 3 at 20 Hz
    result = replay(small_bag, out, opts, remap={"/camera/image_raw": "/front/image_raw"},
                    topics=["/camera/image_raw", "/camera/camera_info"], outputs=("detections",), node_args=TINY,
                    record_inputs=True)
    assert result.images_published == 3 and result.published == 6
    published = [e for e in _events(out) if e[0] == "publish /front/image_raw"]
    assert [e[1] - published[0][1] for e in published] == [0, 100_000_000, 200_000_000]  # original stamps
    gaps = np.diff([e[2] for e in published]) * 1e-9
    assert 0.035 < gaps.mean() < 0.075 and gaps.max() < 0.15, gaps  # 10 Hz at 2x: 50 ms apart (1x would be 100)
    counts: dict[str, int] = {}
    for topic, _, _, _ in read_messages(out, check_order=False):
        counts[topic] = counts.get(topic, 0) + 1
    assert counts["/front/image_raw"] == 3 and counts["/camera/camera_info"] == 3
    assert counts.get("/front/detections", 0) >= 2  # timed mode: a frame may be dropped under load
    # that recording replays in turn; its old outputs are not published over the new ones
    again = replay(out, tmp_path / "again", ReplayOptions(deterministic=True), outputs=("detections",),
                   node_args=TINY)
    assert again.images_published == 3 and again.missing_frames == 0
    assert again.outputs == {"/front/detections": 3}  # only the new node's answers, none of the recorded ones
    assert "not publishing /diagnostics, /front/detections" in capsys.readouterr().out


def test_compressed_images_from_a_sqlite3_bag(tmp_path: Path) -> None:
    """A sqlite3 bag holding only CompressedImage: the node is started on the compressed transport."""
    needs_model()
    from perception.sim.config import SimConfig
    from perception.sim.drive import render_drive_bag

    bag = tmp_path / "jpeg_sqlite3"
    render_drive_bag(bag, 12, 3, SimConfig(width=160, height=96), storage="sqlite3", raw=False, compressed=True)
    out = tmp_path / "out"
    result = replay(bag, out, ReplayOptions(deterministic=True), outputs=("detections", "segmentation"),
                    node_args=TINY)
    assert result.images_published == 3 and result.missing_frames == 0, result.summary()
    outputs = load_outputs(out)
    assert len(outputs.detections) == 3 and {k[0] for k in outputs.detections} == {"/camera"}
    assert all(mask.shape == (96, 160) for mask in outputs.masks.values())
    assert len(outputs.latencies_ms()) == 3


def test_two_cameras_in_one_bag(tmp_path: Path) -> None:
    """One node serves every camera of the bag; each camera's frames are answered on its own namespace."""
    needs_model()
    from perception.bag.drive import DriveTopics, write_frames
    from perception.bag.io import BagWriter
    from perception.sim.config import SimConfig
    from perception.sim.drive import generate_sequence

    bag = tmp_path / "two_cams"
    frames = list(generate_sequence(13, 3, SimConfig(width=160, height=96)))
    with BagWriter(bag) as w:
        write_frames(w, frames, DriveTopics(camera="/front"))
        write_frames(w, frames, DriveTopics(camera="/rear"), start_ns=1_700_000_000 * 1_000_000_000 + 5_000_000)
    out = tmp_path / "out"
    result = replay(bag, out, ReplayOptions(deterministic=True), outputs=("detections",), node_args=TINY)
    assert result.images_published == 6 and result.missing_frames == 0, result.summary()
    assert result.outputs == {"/front/detections": 3, "/rear/detections": 3}


def test_bad_bags_fail_fast(tmp_path: Path, small_bag: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from perception.cli import main

    cut = tmp_path / "cut"
    shutil.copytree(small_bag, cut)
    f = next(cut.glob("*.mcap"))
    f.write_bytes(f.read_bytes()[:50_000])
    t0 = time.monotonic()
    assert main(["replay", str(cut), "--no-node"]) == 2
    assert main(["replay", str(small_bag), "--topics", "/nope/image_raw", "--no-node"]) == 2
    assert main(["replay", str(small_bag), "--topics", "/camera/camera_info", "--no-node"]) == 2
    err = capsys.readouterr().err
    assert "truncated" in err and "/nope/image_raw not found" in err and "no camera images" in err
    assert time.monotonic() - t0 < 30
    with pytest.raises(BagError, match="--remap"):
        replay(small_bag, None, ReplayOptions(), remap={"/camera/image_raw": "/camera/image"}, start_node=False)


def test_deterministic_replay_reports_a_dead_graph(small_bag: Path) -> None:
    """A node that never answers: a clear error after the frame timeout, not a hang."""
    needs_model()
    args: dict[str, Any] = {"extra": {**TINY["extra"], "output.detections": False}}
    t0 = time.monotonic()
    with pytest.raises(BagError, match="no detections on /camera/detections"):
        replay(small_bag, None, ReplayOptions(deterministic=True), node_args=args, outputs=("segmentation",),
               frame_timeout=1.0)
    assert time.monotonic() - t0 < 60
    with pytest.raises(BagError, match="did not become active"):  # a node that cannot configure: no 120 s wait
        replay(small_bag, None, ReplayOptions(deterministic=True), node_args={"extra": {"model.input_height": 33}})
