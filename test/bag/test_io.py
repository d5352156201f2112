"""rosbag2 read/write: sim drives round-trip through mcap and sqlite3, the MCAP project's ROS 2 reader
reads them, and every kind of bad bag raises a BagError that says what is wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from bag_testing import SMALL

from perception.bag import BagError
from perception.bag import messages as m
from perception.bag.cdr import header_stamp_ns, image_view, restamp
from perception.bag.drive import DEFAULT_START_NS, DriveTopics, write_drive_bag
from perception.bag.io import BagWriter, deserialize, open_bag, read_messages
from perception.sim.drive import generate_sequence

TOPICS = DriveTopics()


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_drive_bag_round_trip(tmp_path: Path, storage: str) -> None:
    frames = list(generate_sequence(7, 3, SMALL))
    bag = tmp_path / storage
    counts = write_drive_bag(bag, frames, storage=storage, compressed=True)
    info = open_bag(bag)
    assert info.storage == storage
    assert set(counts) == {TOPICS.image, TOPICS.compressed, TOPICS.camera_info, TOPICS.points, TOPICS.ground_truth,
                           TOPICS.boxes3d, TOPICS.semantic}
    assert all(n == 3 for n in info.counts.values())
    assert info.topics[TOPICS.boxes3d] == "vision_msgs/msg/Detection3DArray"
    got: dict[str, list[object]] = {}
    for topic, msgtype, log_ns, raw in read_messages(bag):
        msg = deserialize(raw, msgtype)
        assert log_ns == m.stamp_ns(msg) == header_stamp_ns(raw)
        got.setdefault(topic, []).append(msg)
    for i, f in enumerate(frames):
        assert m.stamp_ns(got[TOPICS.image][i]) == DEFAULT_START_NS + round(f.stamp * 1e9)
        np.testing.assert_array_equal(m.image_array(got[TOPICS.image][i]), f.rgb)
        np.testing.assert_array_equal(m.image_array(got[TOPICS.semantic][i]), f.semantic)
        gt = m.ground_truth_from_msg(got[TOPICS.ground_truth][i])
        np.testing.assert_allclose(gt.boxes, f.gt.boxes, atol=1e-3)
        np.testing.assert_array_equal(gt.class_ids, f.gt.class_ids)
        np.testing.assert_array_equal(gt.track_ids, f.gt.track_ids)
        np.testing.assert_array_equal(gt.ignore, f.gt.ignore)
        np.testing.assert_allclose(gt.visibility, f.gt.visibility, atol=1e-6)
        assert len(got[TOPICS.boxes3d][i].detections) == len(f.gt)
        cloud = got[TOPICS.points][i]
        assert cloud.width == len(f.lidar) and cloud.point_step == 16
        info_msg = got[TOPICS.camera_info][i]
        assert (info_msg.width, info_msg.height) == (160, 96)


def test_mcap_ros2_reader_reads_drive_bags(drive_bag: Path) -> None:
    reader = pytest.importorskip("mcap_ros2.reader")
    seen: dict[str, int] = {}
    for msg in reader.read_ros2_messages(str(next(drive_bag.glob("*.mcap")))):
        seen[msg.channel.topic] = seen.get(msg.channel.topic, 0) + 1
        if msg.channel.topic == TOPICS.image:
            assert (msg.ros_msg.width, msg.ros_msg.height, msg.ros_msg.encoding) == (160, 96, "rgb8")
        if msg.channel.topic == TOPICS.ground_truth:
            assert all(d.id for d in msg.ros_msg.detections)
    assert seen == open_bag(drive_bag).counts


def test_cdr_helpers_match_rosbags(drive_bag: Path) -> None:
    for _, msgtype, _, raw in read_messages(drive_bag, [TOPICS.image]):
        stamp, enc, view = image_view(raw)
        msg = deserialize(raw, msgtype)
        assert stamp == m.stamp_ns(msg) and enc == "rgb8"
        np.testing.assert_array_equal(view, m.image_array(msg))
        moved = restamp(raw, 123_456_789_012)
        assert header_stamp_ns(moved) == 123_456_789_012
        assert m.stamp_ns(deserialize(bytes(moved), msgtype)) == 123_456_789_012
        np.testing.assert_array_equal(m.image_array(deserialize(bytes(moved), msgtype)), view)


# -- bad bags ------------------------------------------------------------------------------------------
def test_missing_bag_and_missing_metadata(tmp_path: Path, drive_bag: Path) -> None:
    with pytest.raises(BagError, match="does not exist"):
        open_bag(tmp_path / "nope")
    bag = tmp_path / "nometa"
    shutil.copytree(drive_bag, bag)
    (bag / "metadata.yaml").unlink()
    with pytest.raises(BagError, match=r"no metadata\.yaml"):
        open_bag(bag)
    with pytest.raises(BagError, match="is a file"):
        open_bag(next(bag.glob("*.mcap")))


@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_truncated_bag(tmp_path: Path, drive_bag: Path, keep: float) -> None:
    bag = tmp_path / "cut"
    shutil.copytree(drive_bag, bag)
    f = next(bag.glob("*.mcap"))
    data = f.read_bytes()
    f.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(BagError, match=r"truncated|damaged"):
        open_bag(bag)
        list(read_messages(bag))


def test_unknown_type_and_topic_not_found(tmp_path: Path, drive_bag: Path) -> None:
    with pytest.raises(BagError, match=r"not found.*has: /camera/camera_info"):
        open_bag(drive_bag, ["/front/image_raw"])
    bag = tmp_path / "unknown"
    shutil.copytree(drive_bag, bag)
    meta = bag / "metadata.yaml"
    meta.write_text(meta.read_text().replace("vision_msgs/msg/Detection3DArray", "acme_msgs/msg/Widget"))
    with pytest.raises(BagError, match="acme_msgs/msg/Widget"):
        open_bag(bag)


def test_timestamps_out_of_order(tmp_path: Path) -> None:
    frames = list(generate_sequence(7, 3, SMALL))
    bag = tmp_path / "backwards"
    with BagWriter(bag) as w:
        for log_ns, stamp in ((1_000, 2_000_000_000), (2_000, 3_000_000_000), (3_000, 2_500_000_000)):
            w.write(TOPICS.image, m.image(frames[0].rgb, m.header(stamp, "cam"), "rgb8"), log_ns)
    with pytest.raises(BagError, match=r"goes back in time at message 3.*out of order"):
        list(read_messages(bag))
    assert len(list(read_messages(bag, check_order=False))) == 3


def test_writer_refuses_to_overwrite(drive_bag: Path) -> None:
    with pytest.raises(BagError, match="already exists"):
        BagWriter(drive_bag)
    with pytest.raises(BagError, match="storage"):
        BagWriter(drive_bag.parent / "x", storage="rosbag1")


def test_sim_cli_writes_bags(tmp_path: Path) -> None:
    from perception.cli import main

    out = tmp_path / "cli_bag"
    assert main(["sim", "--seed", "3", "--frames", "2", "--width", "128", "--height", "80", "--bag", "--storage",
                 "sqlite3", "--image", "compressed", "--out", str(out)]) == 0
    info = open_bag(out)
    assert info.storage == "sqlite3" and TOPICS.compressed in info.topics and TOPICS.image not in info.topics
    assert main(["sim", "--frames", "2", "--bag", "--out", str(out)]) == 2  # never overwrites a bag
