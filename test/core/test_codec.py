"""Compressed images from a hostile sender: header limits before decoding, truncation, forged sizes,
EXIF orientation ignored, any number and size of APP/COM segments; CoreError is the only exception."""

from __future__ import annotations

import struct
import time
import zlib

import cv2
import numpy as np
import pytest

from perception.core import codec
from perception.core.boxes import CoreError


def _rgb(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (5, 5), 0)


def _jpeg(rgb: np.ndarray, *params: int) -> bytes:
    ok, enc = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95, *params])
    assert ok
    return enc.tobytes()


def _png(rgb: np.ndarray) -> bytes:
    ok, enc = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return enc.tobytes()


@pytest.mark.parametrize("params", [(), (cv2.IMWRITE_JPEG_PROGRESSIVE, 1), (cv2.IMWRITE_JPEG_OPTIMIZE, 1),
                                    (cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444)])
def test_valid_jpegs_pass_every_check(params: tuple[int, ...]) -> None:
    rgb = _rgb(37, 53)  # sizes that are not multiples of the MCU
    data = _jpeg(rgb, *params)
    assert codec.image_header(data, check_structure=True) == codec.ImageHeader("jpeg", 53, 37)
    out = codec.decode_rgb(data)
    assert out.shape == (37, 53, 3) and np.abs(out.astype(int) - rgb).mean() < 6


def test_png_header_and_structure() -> None:
    data = _png(_rgb())
    assert codec.image_header(data, check_structure=True) == codec.ImageHeader("png", 64, 48)
    assert np.array_equal(codec.decode_rgb(data), _rgb())
    with pytest.raises(CoreError, match="truncated"):
        codec.decode_rgb(data[: len(data) // 2])
    bad_crc = bytearray(data)
    bad_crc[20] ^= 1  # inside IHDR
    with pytest.raises(CoreError, match="CRC"):
        codec.decode_rgb(bytes(bad_crc))


def test_exif_orientation_is_ignored_sensor_orientation_kept() -> None:
    rgb = _rgb(40, 64)
    plain = _jpeg(rgb)
    rotated = codec.insert_after_soi(plain, codec.exif_orientation_segment(6))
    # what a plain OpenCV decode does with the tag: rotates, so the shape disagrees with the header
    assert cv2.imdecode(np.frombuffer(rotated, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (64, 40)
    out = codec.decode_rgb(rotated)
    assert out.shape == (40, 64, 3)
    assert np.array_equal(out, codec.decode_rgb(plain))


def test_app_and_com_segments_of_any_total_size_before_the_frame_header() -> None:
    rgb = _rgb()
    big = [codec.jpeg_segment(0xFE, b"c" * 65533), codec.jpeg_segment(0xE2, bytes(range(256)) * 255),
           codec.exif_orientation_segment(1), codec.jpeg_segment(0xFE, b"\xff" * 40000),
           codec.jpeg_segment(0xE1, b"Exif\x00\x00" + _jpeg(_rgb(16, 16)))]  # a thumbnail: SOI..EOI inside APP1
    data = codec.insert_after_soi(_jpeg(rgb), *big)
    assert len(data) > 2 * 65536
    assert codec.image_header(data, check_structure=True) == codec.ImageHeader("jpeg", 64, 48)
    assert codec.decode_rgb(data).shape == (48, 64, 3)


def test_forged_size_is_refused_before_decoding() -> None:
    small = _jpeg(_rgb(256, 256))
    forged = codec.with_jpeg_size(small, 4000, 4000)  # 16 M pixels claimed, data for 64 K
    t0 = time.perf_counter()
    with pytest.raises(CoreError, match="forged header"):
        codec.decode_rgb(forged)
    assert time.perf_counter() - t0 < 0.1  # nothing was decoded
    with pytest.raises(CoreError, match="more than 1000000 pixels"):
        codec.decode_rgb(forged, max_pixels=1_000_000)


def test_truncated_jpeg_with_and_without_eoi() -> None:
    data = _jpeg(_rgb(240, 320, seed=3))
    cut = data[: int(len(data) * 0.8)]
    with pytest.raises(CoreError, match="without an EOI marker: truncated"):
        codec.decode_rgb(cut)
    # an EOI appended: the structure is fine and the bound is met, libjpeg reports the missing data
    with pytest.raises(CoreError, match="premature end of data segment"):
        codec.decode_rgb(cut + b"\xff\xd9")
    # the same image without the strict checks decodes (what a plain decoder would publish)
    assert codec.decode_rgb(cut + b"\xff\xd9", strict=False).shape == (240, 320, 3)


def test_stderr_is_restored_and_foreign_output_passed_on(capfd: pytest.CaptureFixture[str]) -> None:
    data = _jpeg(_rgb(240, 320, seed=3))
    cut = data[: int(len(data) * 0.8)] + b"\xff\xd9"
    with pytest.raises(CoreError):
        codec.decode_rgb(cut)
    import os

    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert "after" in err and "Corrupt JPEG" not in err  # libjpeg's warning became the error message


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "no data"),
        (b"GIF89a....", "neither JPEG nor PNG"),
        (b"\xff\xd8\xff", "no frame header"),
        (b"\xff\xd8\xff\xe0\x00\x02\xff\xd9", "before any frame header"),
        (b"\xff\xd8\xff\xe0\xff\xff", "claims 65535 bytes"),
        (codec.PNG_SIGNATURE + b"\x00" * 30, "IHDR"),
    ],
)
def test_malformed_headers(data: bytes, match: str) -> None:
    with pytest.raises(CoreError, match=match):
        codec.decode_rgb(data)


def test_zero_and_huge_png_sizes_refused_from_the_header() -> None:
    for w, h, match in ((0, 10, "zero size"), (100_000, 100_000, "more than")):
        ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
        chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
        with pytest.raises(CoreError, match=match):
            codec.decode_rgb(codec.PNG_SIGNATURE + chunk)


def test_random_damage_raises_only_core_error() -> None:
    """Seeded: bytes flipped, cut, duplicated, segments inserted; every outcome an image or a CoreError."""
    rng = np.random.default_rng(7)
    seeds = [_jpeg(_rgb(32, 48)), _jpeg(_rgb(32, 48), cv2.IMWRITE_JPEG_PROGRESSIVE, 1), _png(_rgb(32, 48))]
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(300):
        data = bytearray(seeds[int(rng.integers(len(seeds)))])
        for _k in range(int(rng.integers(1, 4))):
            op = int(rng.integers(4))
            pos = int(rng.integers(len(data)))
            if op == 0:
                data[pos] = int(rng.integers(256))
            elif op == 1:
                del data[pos:]
            elif op == 2:
                data[pos:pos] = data[pos : pos + int(rng.integers(1, 64))]
            else:
                data[pos:pos] = bytes([0xFF, int(rng.integers(256))]) + bytes(rng.integers(0, 256, 4, np.uint8))
        try:
            out = codec.decode_rgb(bytes(data), max_pixels=4096 * 4096)
            assert out.ndim == 3 and out.shape[2] == 3
            outcomes["ok"] += 1
        except CoreError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 100 and sum(outcomes.values()) == 300


def _without_segments(jpeg: bytes, marker: int) -> bytes:
    out, i = bytearray(jpeg[:2]), 2
    while jpeg[i + 1] != 0xDA:
        (length,) = struct.unpack(">H", jpeg[i + 2 : i + 4])
        if jpeg[i + 1] != marker:
            out += jpeg[i : i + 2 + length]
        i += 2 + length
    return bytes(out + jpeg[i:])


def test_motion_jpeg_without_huffman_tables_is_accepted() -> None:
    """USB cameras' MJPEG frames omit DHT (the standard tables apply); they must not be refused."""
    rgb = _rgb(48, 64)
    full = _jpeg(rgb)
    mjpeg = _without_segments(full, 0xC4)
    assert b"\xff\xc4" not in mjpeg[: mjpeg.index(b"\xff\xda")]
    assert np.array_equal(codec.decode_rgb(mjpeg), codec.decode_rgb(full))
    with pytest.raises(CoreError, match="premature end"):  # the checks still apply
        codec.decode_rgb(mjpeg[: int(0.8 * len(mjpeg))] + b"\xff\xd9")
