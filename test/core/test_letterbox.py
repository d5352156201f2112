from __future__ import annotations

import cv2
import numpy as np
import pytest

from perception.core.boxes import CoreError
from perception.core.letterbox import LetterboxMap, letterbox, letterbox_into, resize_image, resize_labels


def test_letterbox_geometry_and_padding() -> None:
    img = np.full((100, 200, 3), 7, np.uint8)
    out, m = letterbox(img, 128, 128)
    assert out.shape == (128, 128, 3)
    assert (m.new_w, m.new_h, m.pad_x, m.pad_y) == (128, 64, 0, 32)
    assert m.scale_x == pytest.approx(0.64) and m.scale_y == pytest.approx(0.64)
    assert (out[:32] == 114).all() and (out[96:] == 114).all() and (out[32:96] == 7).all()


def test_plain_resize_mode() -> None:
    img = np.zeros((100, 200), np.uint8)
    out, m = letterbox(img, 64, 32, keep_aspect=False)
    assert out.shape == (32, 64)
    assert (m.pad_x, m.pad_y) == (0, 0)
    np.testing.assert_allclose(m.boxes_to_dst(np.array([[0, 0, 200, 100]])), [[0, 0, 64, 32]])


@pytest.mark.parametrize("keep_aspect", [True, False])
@pytest.mark.parametrize("src", [(480, 640), (720, 1280), (300, 200)])
def test_box_round_trip(src: tuple[int, int], keep_aspect: bool) -> None:
    m = LetterboxMap.compute(src[1], src[0], 320, 256, keep_aspect)
    boxes = np.array([[10, 20, 100, 150], [0, 0, src[1], src[0]]], np.float32)
    np.testing.assert_allclose(m.boxes_to_src(m.boxes_to_dst(boxes)), boxes, atol=1e-3)
    full = m.boxes_to_dst(boxes[1:])
    np.testing.assert_allclose(full, [[m.pad_x, m.pad_y, m.pad_x + m.new_w, m.pad_y + m.new_h]], atol=1e-3)


def test_mask_round_trip_to_source_resolution() -> None:
    src = np.zeros((90, 160), np.uint8)
    src[30:60, 40:120] = 3
    m = LetterboxMap.compute(160, 90, 64, 64)
    dst = resize_labels(src, m, fill=255)
    assert dst.shape == (64, 64) and (dst[: m.pad_y] == 255).all()
    back = m.mask_to_src(dst)
    assert back.shape == (90, 160)
    assert (back == src).mean() > 0.97
    # a quarter-resolution float map is cropped proportionally
    att = np.zeros((16, 16), np.float32)
    att[8, 8] = 1.0
    up = m.mask_to_src(att, cv2.INTER_LINEAR)
    assert up.shape == (90, 160) and up.dtype == np.float32
    y, x = np.unravel_index(np.argmax(up), up.shape)
    assert abs(x - 85) < 12 and abs(y - 50) < 12


def test_bad_input() -> None:
    with pytest.raises(CoreError, match="positive"):
        LetterboxMap.compute(0, 10, 10, 10)
    with pytest.raises(CoreError):
        letterbox(np.zeros((2, 2, 2, 2), np.uint8), 4, 4)


def test_resize_image_shrinks_like_inter_area_and_writes_into_a_view() -> None:
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (45, 80, 3), dtype=np.uint8), (1280, 720), interpolation=cv2.INTER_CUBIC)
    img = np.clip(base + rng.integers(0, 30, base.shape), 0, 255).astype(np.uint8)  # aliases unless averaged
    ref = cv2.resize(img, (448, 252), interpolation=cv2.INTER_AREA)
    out = resize_image(img, 448, 252)
    assert out.shape == ref.shape
    assert np.abs(out.astype(int) - ref).mean() < 3.0
    nearest = cv2.resize(img, (448, 252), interpolation=cv2.INTER_NEAREST)  # no antialiasing: much further off
    assert np.abs(nearest.astype(int) - ref).mean() > 2 * np.abs(out.astype(int) - ref).mean()
    canvas = np.zeros((256, 448, 3), np.uint8)
    view = canvas[2:254]
    assert resize_image(img, 448, 252, dst=view) is view
    np.testing.assert_array_equal(canvas[2:254], out)
    small = img[:100, :100]
    np.testing.assert_array_equal(resize_image(small, 150, 150),
                                  cv2.resize(small, (150, 150), interpolation=cv2.INTER_LINEAR))  # enlarging


def test_letterbox_into_a_reused_canvas_matches_letterbox() -> None:
    rng = np.random.default_rng(1)
    canvas = np.zeros((64, 128, 3), np.uint8)
    for shape in [(90, 160, 3), (200, 100, 3), (64, 128, 3)]:
        img = rng.integers(0, 255, shape, dtype=np.uint8)
        ref, m = letterbox(img, 128, 64)
        canvas[:] = 0  # stale content from the previous frame must be overwritten
        letterbox_into(img, canvas, m)
        np.testing.assert_array_equal(canvas, ref)
    with pytest.raises(CoreError, match="does not fit"):
        letterbox_into(img, np.zeros((64, 64, 3), np.uint8), m)
