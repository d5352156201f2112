"""Message <-> core conversion without a ROS graph: encodings, views, bad input, round trips, type hashes."""

from __future__ import annotations

import array
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")

from sensor_msgs.msg import CompressedImage, Image

from perception.core.types import CameraIntrinsics, Detections, GroundTruth
from perception.ros import convert
from perception.ros.errors import RosError

HDR = convert.make_header(12.5, "cam")


def _rgb(h: int = 6, w: int = 10) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 255, size=(h, w, 3), dtype=np.uint8)


def _raw(data: bytes, w: int, h: int, step: int, enc: str) -> Image:
    m = Image(width=w, height=h, step=step, encoding=enc)
    m.data = data
    return m


def test_rgb8_is_a_view_of_the_message_even_with_row_padding() -> None:
    rgb = _rgb()
    msg = convert.array_to_image(rgb, HDR, "rgb8")
    out = convert.image_to_rgb(msg)
    assert np.array_equal(out, rgb) and np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    padded = np.zeros((6, 10 * 3 + 7), np.uint8)
    padded[:, :30] = rgb.reshape(6, 30)
    msg2 = _raw(padded.tobytes(), 10, 6, 37, "rgb8")
    out2 = convert.image_to_rgb(msg2)
    assert np.array_equal(out2, rgb) and np.shares_memory(out2, np.frombuffer(msg2.data, np.uint8))


@pytest.mark.parametrize("enc", ["bgr8", "rgba8", "bgra8", "mono8", "8UC3", "yuv422_yuy2"])
def test_encodings_convert_to_rgb(enc: str) -> None:
    rgb = _rgb()
    if enc in ("bgr8", "8UC3"):
        arr = np.ascontiguousarray(rgb[..., ::-1])
        expect = rgb
    elif enc == "rgba8":
        arr, expect = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]), rgb
    elif enc == "bgra8":
        arr, expect = np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 7, np.uint8)]), rgb
    elif enc == "mono8":
        arr = rgb[..., 0].copy()
        expect = np.repeat(arr[..., None], 3, axis=2)
    else:
        arr = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV), cv2.COLOR_YUV2RGB)  # not used for equality
        yuyv = np.zeros((6, 10, 2), np.uint8)
        yuyv[..., 0] = 128
        yuyv[..., 1] = 128
        msg = _raw(yuyv.tobytes(), 10, 6, 20, enc)
        out = convert.image_to_rgb(msg)
        assert out.shape == (6, 10, 3) and abs(int(out.mean()) - 128) < 3
        return
    ch = 1 if arr.ndim == 2 else arr.shape[2]
    out = convert.image_to_rgb(_raw(arr.tobytes(), 10, 6, 10 * ch, enc))
    assert out.shape == (6, 10, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expect)


@pytest.mark.parametrize(
    ("w", "h", "step", "enc", "nbytes", "match"),
    [
        (10, 6, 30, "rgb16", 360, "unsupported image encoding"),
        (10, 6, 20, "rgb8", 360, "step 20 is smaller"),
        (10, 6, 30, "rgb8", 100, "truncated"),
        (0, 6, 0, "rgb8", 0, "zero size"),
        (100000, 100000, 300000, "rgb8", 10, "more than"),
    ],
)
def test_bad_raw_images_raise(w: int, h: int, step: int, enc: str, nbytes: int, match: str) -> None:
    with pytest.raises(RosError, match=match):
        convert.image_to_rgb(_raw(bytes(nbytes), w, h, step, enc))


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_round_trip(fmt: str) -> None:
    yy, xx = np.mgrid[0:48, 0:64]
    rgb = np.dstack([xx * 3, yy * 4, 255 - xx * 2]).astype(np.uint8)  # smooth: JPEG keeps it close
    msg = convert.rgb_to_compressed(rgb, HDR, fmt, quality=98)
    out = convert.compressed_to_rgb(msg)
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() < (3 if fmt == "jpeg" else 0.01)
    assert convert._compressed_dims(np.frombuffer(msg.data, np.uint8)) == (64, 48)


def test_corrupt_and_oversized_compressed_images_raise() -> None:
    good = convert.rgb_to_compressed(_rgb(48, 64), HDR, "jpeg")
    corrupt = CompressedImage(format="jpeg")
    corrupt.data = bytes(good.data)[:40]  # header present, scan data missing
    with pytest.raises(RosError, match="corrupt"):
        convert.compressed_to_rgb(corrupt)
    garbage = CompressedImage(format="jpeg")
    garbage.data = b"not an image at all"
    with pytest.raises(RosError, match="neither JPEG nor PNG"):
        convert.compressed_to_rgb(garbage)
    big = convert.rgb_to_compressed(_rgb(48, 64), HDR, "png")
    with pytest.raises(RosError, match="more than"):
        convert.compressed_to_rgb(big, max_pixels=1000)
    with pytest.raises(RosError, match="no data"):
        convert.compressed_to_rgb(CompressedImage(format="png"))


@pytest.mark.parametrize(("enc", "dtype"), [("mono8", np.uint8), ("32FC1", np.float32), ("rgb8", np.uint8)])
def test_output_images_round_trip(enc: str, dtype: type) -> None:
    shape = (7, 11, 3) if enc == "rgb8" else (7, 11)
    a = (np.random.default_rng(0).random(shape) * 200).astype(dtype)
    msg = convert.array_to_image(a, HDR, enc)
    assert (msg.width, msg.height, msg.encoding) == (11, 7, enc) and msg.header == HDR
    np.testing.assert_array_equal(convert.image_to_array(msg), a)


def test_detections_round_trip_in_pixels_with_numeric_class_ids() -> None:
    det = Detections(np.array([[10, 20, 50, 80], [0, 0, 5, 5]], np.float32), np.array([0.9, 0.4], np.float32),
                     np.array([2, 0]), np.array([1.5, 0.5], np.float32))
    msg = convert.detections_to_msg(det, HDR)
    assert msg.header == HDR and len(msg.detections) == 2
    d = msg.detections[0]
    assert d.header == HDR and d.id == ""
    assert (d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.size_x, d.bbox.size_y) == (30, 50, 40, 60)
    assert d.results[0].hypothesis.class_id == "2" and d.results[0].hypothesis.score == pytest.approx(0.9)
    back = convert.msg_to_detections(msg)
    np.testing.assert_allclose(back.boxes, det.boxes)
    np.testing.assert_array_equal(back.class_ids, det.class_ids)
    att = convert.image_to_array(convert.object_attention_msg(det, HDR))
    np.testing.assert_allclose(att, [[1.5, 0.5]])
    kept = convert.filter_classes(det, [2])
    assert len(kept) == 1 and kept.attention is not None and kept.attention[0] == pytest.approx(1.5)


def test_label_info_ground_truth_camera_info_and_points() -> None:
    li = convert.label_info_msg(HDR, 0.3)
    assert [(c.class_id, c.class_name) for c in li.class_map][:2] == [(0, "car"), (1, "truck")]
    assert li.threshold == pytest.approx(0.3)
    gt = GroundTruth(boxes=np.array([[1, 2, 3, 4]], np.float32), class_ids=np.array([3]), track_ids=np.array([17]))
    g = convert.ground_truth_to_msg(gt, HDR)
    assert g.detections[0].id == "17" and g.detections[0].results[0].hypothesis.class_id == "3"
    intr = CameraIntrinsics.from_fov(640, 384, 90.0)
    assert convert.camera_info_to_intrinsics(convert.intrinsics_to_camera_info(intr, HDR)) == intr
    pts = np.random.default_rng(0).random((50, 4)).astype(np.float32)
    pc = convert.points_to_pointcloud2(pts, HDR)
    np.testing.assert_array_equal(convert.pointcloud2_to_points(pc), pts)


def test_stamps_round_trip() -> None:
    for t in (0.0, 1.5, 1795558367.467111349, 3.999999999):
        s = convert.seconds_to_stamp(t)
        assert 0 <= s.nanosec < 1_000_000_000
        assert convert.stamp_to_seconds(s) == pytest.approx(t, abs=2e-9 * max(1.0, t / 1e9) + 1e-6)


# Type hashes of the public vision_msgs 4.x interfaces (from a colcon build of ros-perception/vision_msgs):
# the compatibility package must produce the same, or other ROS 2 processes would not match our topics.
PUBLIC_HASHES = {
    "BoundingBox2D": "RIHS01_008eacbb0cf8f26e83795547bed013eec3675485ef386ec056d80eaaf1c1ce2f",
    "BoundingBox2DArray": "RIHS01_2464e82838009386d371b523211c21c91d74d313fcdd6788223c531d621cf691",
    "BoundingBox3D": "RIHS01_bbb73a65c163d7f9bb29009c7bde9f7faa576bd2d23299c4511d19230dab4698",
    "Detection3D": "RIHS01_ddd703be132ab0b69d33121f1bb034132bfbb3b0ac5f9fb1516005ba1c8a265b",
    "LabelInfo": "RIHS01_3d37df4015cdf660cc851c51897f2acd957e1ca6205ba0a99aebffb9406b0783",
    "ObjectHypothesis": "RIHS01_51da43cec11c01957a64d1e05a24acd18aae7745ec30b74348ad5f6d634f7f90",
    "ObjectHypothesisWithPose": "RIHS01_41c12344c0396c48b81df12467c192d99b2a0eb1463c5c37194e4223251c80bc",
    "Point2D": "RIHS01_eab0e83f44ab4de92ceaf76dd7d0e7638f2bdd1d16ffbe16c7a136c48e407247",
    "Pose2D": "RIHS01_b0b5d1d7b4c20dd4fcde3ed1d4b289a919290572007d67a97043814db25d3648",
    "VisionClass": "RIHS01_1e4a11f0fed50b5623cb8ff26ca0e37952a48a9c074d16f804b44e9164c2037a",
}


def test_vision_msgs_type_hashes_match_the_public_interfaces() -> None:
    import vision_msgs

    # <prefix>/lib/pythonX.Y/site-packages/vision_msgs -> <prefix>/share/vision_msgs (venv or /opt/ros/<distro>)
    share = Path(vision_msgs.__file__).resolve().parents[4] / "share" / "vision_msgs" / "msg"
    for name, expected in PUBLIC_HASHES.items():
        data = json.loads((share / f"{name}.json").read_text())
        assert data["type_hashes"][0]["hash_string"] == expected, name


# -- issue 10: hostile input (each failed before the fix) -------------------------------------------
def test_yuy2_with_odd_width_is_a_ros_error_not_a_cv2_error() -> None:
    msg = _raw(bytes(638 * 240), 319, 240, 638, "yuv422_yuy2")  # step and data length consistent
    with pytest.raises(RosError, match="width must be even"):
        convert.message_to_rgb(msg)


def _smooth_jpeg(h: int, w: int) -> bytes:
    noise = np.random.default_rng(2).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return bytes(convert.rgb_to_compressed(cv2.GaussianBlur(noise, (5, 5), 0), HDR, "jpeg", 90).data)


def _compressed(data: bytes, fmt: str = "jpeg") -> CompressedImage:
    m = CompressedImage(format=fmt)
    m.data = data
    return m


def test_decompression_bomb_is_refused_before_decoding() -> None:
    from perception.core import codec

    forged = codec.with_jpeg_size(_smooth_jpeg(256, 256), 4000, 4000)  # 4000x4000 claimed, ~60 kB of data
    with pytest.raises(RosError, match="4000x4000"):
        convert.message_to_rgb(_compressed(forged))
    with pytest.raises(RosError, match="more than"):
        convert.message_to_rgb(_compressed(forged), max_pixels=4000 * 3999)


def test_truncated_jpeg_with_an_eoi_appended_is_refused() -> None:
    data = _smooth_jpeg(240, 320)
    with pytest.raises(RosError, match="premature end of data segment"):
        convert.message_to_rgb(_compressed(data[: int(0.8 * len(data))] + b"\xff\xd9"))


def test_exif_orientation_6_is_accepted_in_sensor_orientation() -> None:
    from perception.core import codec

    plain = _smooth_jpeg(48, 64)
    out = convert.message_to_rgb(_compressed(codec.insert_after_soi(plain, codec.exif_orientation_segment(6))))
    assert out.shape == (48, 64, 3)
    np.testing.assert_array_equal(out, convert.message_to_rgb(_compressed(plain)))


def test_more_than_64_kib_of_app_and_com_segments_before_the_frame_header() -> None:
    from perception.core import codec

    segments = [codec.jpeg_segment(0xE1, b"x" * 65533), codec.jpeg_segment(0xFE, b"comment" * 9000)]
    data = codec.insert_after_soi(_smooth_jpeg(48, 64), *segments)
    assert convert.message_to_rgb(_compressed(data)).shape == (48, 64, 3)
    assert convert._compressed_dims(np.frombuffer(data, np.uint8)) == (64, 48)


def test_any_malformed_input_message_raises_only_ros_error() -> None:
    """Seeded: every encoding with random sizes, steps and data lengths; damaged JPEG/PNG bytes."""
    rng = np.random.default_rng(10)
    encodings = [*convert.SUPPORTED_ENCODINGS, "rgb16", "", "yuv422"]
    jpeg, png = _smooth_jpeg(24, 32), bytes(convert.rgb_to_compressed(_rgb(24, 32), HDR, "png").data)
    outcomes = {"ok": 0, "refused": 0}
    for i in range(600):
        if i % 2:
            w, h = (int(v) for v in rng.choice([0, 1, 2, 3, 7, 8, 31, 319, 65535, 2**31], 2))
            step = int(rng.choice([0, w, 2 * w, 3 * w + 1, 4 * w, w * 2 - 1, 2**32 - 1]))
            msg: Image | CompressedImage = _raw(bytes(int(rng.integers(0, 4000))), w, h, step,
                                                str(rng.choice(encodings)))
        else:
            data = bytearray(jpeg if i % 4 else png)
            for _ in range(int(rng.integers(1, 4))):
                pos = int(rng.integers(len(data)))
                data[pos] = int(rng.integers(256)) if rng.random() < 0.6 else data[pos]
                if rng.random() < 0.3:
                    del data[pos:]
            msg = _compressed(bytes(data))
        try:
            out = convert.message_to_rgb(msg, max_pixels=1 << 20)
            assert out.ndim == 3 and out.shape[2] == 3
            outcomes["ok"] += 1
        except RosError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 200


def test_camera_info_checks() -> None:
    from sensor_msgs.msg import CameraInfo

    good = convert.intrinsics_to_camera_info(CameraIntrinsics(64, 48, 50.0, 50.0, 32.0, 24.0), HDR)
    assert convert.camera_info_size(good) == (48, 64)
    bad = convert.intrinsics_to_camera_info(CameraIntrinsics(64, 48, 50.0, 50.0, 32.0, 24.0), HDR)
    bad.k = [float("nan")] * 9
    with pytest.raises(RosError, match="finite"):
        convert.camera_info_size(bad)
    with pytest.raises(RosError, match="calibrated"):
        convert.camera_info_to_intrinsics(bad)
    with pytest.raises(RosError, match="zero size"):
        convert.camera_info_size(CameraInfo())


def test_output_image_data_is_a_byte_array() -> None:
    att = np.random.default_rng(2).random((7, 9), dtype=np.float32)
    msg = convert.array_to_image(att, HDR, "32FC1")
    assert msg.data.typecode == "B" and bytes(msg.data) == att.tobytes()
    data = convert.array_bytes(att)
    assert isinstance(data, array.array) and data.typecode == "B" and data.tobytes() == att.tobytes()
    assert len(convert.array_bytes(np.zeros((1, 0), np.float32))) == 0  # no detections: an empty 1 x 0 image
    assert np.array_equal(convert.image_to_array(convert.array_to_image(att[:, ::2], HDR, "32FC1")), att[:, ::2])


def test_colorize_matches_the_palette_lookup() -> None:
    from perception.core.classes import semantic_palette

    mask = np.random.default_rng(3).integers(0, 256, (33, 47), dtype=np.uint8)
    assert np.array_equal(convert.colorize(mask), semantic_palette()[mask])
    assert np.array_equal(convert.colorize(mask[:, ::3]), semantic_palette()[mask[:, ::3]])


def test_scaled_camera_info_follows_image_proc_resize() -> None:
    info = convert.intrinsics_to_camera_info(CameraIntrinsics(1280, 720, 1000.0, 990.0, 640.0, 360.0), HDR)
    out = convert.scaled_camera_info(info, HDR, 160, 90, (8.0, 8.0), (720, 1280))
    assert (out.width, out.height, out.header) == (160, 90, HDR)
    assert list(out.k) == [125.0, 0.0, 80.0, 0.0, 123.75, 45.0, 0.0, 0.0, 1.0]
    assert list(out.p)[:4] == [125.0, 0.0, 80.0, 0.0] and list(out.r) == list(info.r)
    assert (out.binning_x, out.binning_y) == (0, 0)
    bare = convert.scaled_camera_info(None, HDR, 160, 90, (8.0, 8.0), (720, 1280))
    assert not any(bare.k) and (bare.width, bare.height) == (160, 90)  # uncalibrated
    other = convert.scaled_camera_info(info, HDR, 160, 90, (8.0, 8.0), (1080, 1920))  # calibration of another size
    assert not any(other.k)
    with pytest.raises(RosError):
        convert.scaled_camera_info(info, HDR, 160, 90, (0.0, 8.0), (720, 1280))


def test_transform_messages_round_trip_and_bad_ones_are_ros_errors() -> None:
    from geometry_msgs.msg import TransformStamped

    from perception.core.transforms import pose_matrix, quaternion_to_rotation
    from perception.ros import frames

    base_T_cam = pose_matrix(quaternion_to_rotation((0.5, -0.5, 0.5, -0.5)), (1.5, 0.1, 1.4))
    msg = frames.transform_msg(base_T_cam, convert.make_header(1.0, "base_link"), "camera_optical_frame")
    np.testing.assert_allclose(frames.transform_to_matrix(msg), base_T_cam, atol=1e-12)
    tree = frames.StaticTransforms()
    tree.add_msg(msg)
    np.testing.assert_allclose(tree.lookup("base_link", "camera_optical_frame"), base_T_cam, atol=1e-12)
    zero = TransformStamped(header=convert.make_header(1.0, "base_link"), child_frame_id="lidar")
    zero.transform.rotation.w = 0.0  # an all-zero quaternion: not a rotation
    with pytest.raises(RosError, match="not a rotation"):
        tree.add_msg(zero)
    with pytest.raises(RosError, match="two different"):
        tree.add_msg(frames.transform_msg(base_T_cam, convert.make_header(1.0, "lidar"), "lidar"))
    assert len(tree) == 1
