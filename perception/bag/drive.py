"""Drives (core :class:`~perception.core.types.Frame` s) as rosbag2 bags: camera, LiDAR and ground truth on
their own topics. The frames come from the caller: ``perception sim --bag`` renders synthetic drives
(:func:`perception.sim.drive.render_drive_bag`).

Topics (camera namespace ``/camera``), every message stamped ``start + frame time``:
  /camera/image_raw (sensor_msgs/Image rgb8), /camera/image_raw/compressed (JPEG, optional),
  /camera/camera_info, /camera/points (sensor_msgs/PointCloud2, with the LiDAR),
  /camera/ground_truth (vision_msgs/Detection2DArray: id = track id, ``:ignore`` suffix for
  objects too small/occluded to score, score = visibility), /camera/ground_truth/boxes3d
  (vision_msgs/Detection3DArray, camera optical frame), /camera/ground_truth/semantic (mono8 ids).
Log time = header stamp, so a player reproduces the drive's timing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from perception.bag import messages as m
from perception.bag.io import BagWriter
from perception.core.types import Frame

DEFAULT_START_NS = 1_700_000_000 * 1_000_000_000  # a fixed start: the same seed gives the same bag


@dataclass(frozen=True)
class DriveTopics:
    camera: str = "/camera"
    frame_id: str = "camera_optical"
    lidar_frame_id: str = "lidar"

    @property
    def image(self) -> str:
        return f"{self.camera}/image_raw"

    @property
    def compressed(self) -> str:
        return f"{self.camera}/image_raw/compressed"

    @property
    def camera_info(self) -> str:
        return f"{self.camera}/camera_info"

    @property
    def points(self) -> str:
        return f"{self.camera}/points"

    @property
    def ground_truth(self) -> str:
        return f"{self.camera}/ground_truth"

    @property
    def boxes3d(self) -> str:
        return f"{self.camera}/ground_truth/boxes3d"

    @property
    def semantic(self) -> str:
        return f"{self.camera}/ground_truth/semantic"


def write_frames(
    writer: BagWriter, frames: Iterable[Frame], topics: DriveTopics = DriveTopics(), start_ns: int = DEFAULT_START_NS,
    raw: bool = True, compressed: bool = False,
) -> int:
    """Write core :class:`~perception.core.types.Frame` s to ``writer``; returns the number of frames."""
    n = 0
    for f in frames:
        t = start_ns + round(f.stamp * 1e9)
        hdr = m.header(t, topics.frame_id)
        if raw:
            writer.write(topics.image, m.image(f.rgb, hdr, "rgb8"), t)
        if compressed:
            writer.write(topics.compressed, m.compressed_image(f.rgb, hdr), t)
        writer.write(topics.camera_info, m.camera_info(f.intrinsics, hdr), t)
        if f.lidar is not None:
            writer.write(topics.points, m.pointcloud2(f.lidar, m.header(t, topics.lidar_frame_id)), t)
        writer.write(topics.ground_truth, m.ground_truth_2d(f.gt, hdr), t)
        writer.write(topics.boxes3d, m.ground_truth_3d(f.gt, hdr), t)
        if f.semantic is not None:
            writer.write(topics.semantic, m.image(f.semantic, hdr, "mono8"), t)
        n += 1
    return n


def write_drive_bag(
    out: str | Path, frames: Iterable[Frame], storage: str = "mcap", raw: bool = True, compressed: bool = False,
    compress: bool = False, start_ns: int = DEFAULT_START_NS,
) -> dict[str, int]:
    """Write a drive's frames into a new bag at ``out``; returns messages per topic. The frames come from the
    caller (e.g. :func:`perception.sim.drive.render_drive_bag` renders them): this package only writes."""
    with BagWriter(out, storage, compress) as writer:
        write_frames(writer, frames, DriveTopics(), start_ns, raw, compressed)
    return dict(writer.counts)
