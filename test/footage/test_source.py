"""Real-footage sources: frame ranges, video files and image folders as core Frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.footage import FootageError
from perception.footage.source import Footage, FrameRange


def _frames(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """Distinct RGB frames: a bright square moving right on a dark background."""
    out = []
    for i in range(n):
        f = np.full((h, w, 3), 30, np.uint8)
        f[10:30, 4 + 8 * i : 20 + 8 * i] = (250, 120, 20)
        out.append(f)
    return out


def _video(path: Path, frames: list[np.ndarray], fps: float = 5.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [("600:795", (600, 795)), ("600:", (600, None)), (":20", (0, 20)), ("6", (0, 6)), ([0, 600], (0, 600)),
     (None, (0, None))],
)
def test_frame_range_parse(text: object, expected: tuple[int, int | None]) -> None:
    r = FrameRange.parse(text)
    assert (r.start, r.stop) == expected
    assert FrameRange.parse(str(r)) == r


@pytest.mark.parametrize("text", ["a:b", "5:2", "3:3", "-1:4", "1:2:3", [1, 2, 3], "0"])
def test_frame_range_rejects_bad_text(text: object) -> None:
    with pytest.raises(FootageError, match="frame"):
        FrameRange.parse(text)


def test_frame_range_resolve_names_the_length() -> None:
    assert FrameRange(600).resolve(795, "v.avi") == (600, 795)
    with pytest.raises(FootageError, match=r"v\.avi, which has 795 frames"):
        FrameRange(600, 900).resolve(795, "v.avi")
    with pytest.raises(FootageError, match="795 frames"):
        FrameRange(795).resolve(795, "v.avi")


def test_video_range_yields_exact_frames(tmp_path: Path) -> None:
    src = _frames(6)
    path = _video(tmp_path / "clip.avi", src)
    fo = Footage(path, "2:5")
    assert (fo.info.kind, fo.info.frames, fo.info.fps, fo.info.width, fo.info.height) == ("video", 6, 5.0, 64, 48)
    frames = list(fo)
    assert [f.index for f in frames] == [2, 3, 4] and len(fo) == 3
    assert [f.scene_cut for f in frames] == [True, False, False]
    assert frames[1].stamp == pytest.approx(3 / 5.0)
    for f in frames:
        assert f.rgb.shape == (48, 64, 3) and f.rgb.dtype == np.uint8 and len(f.gt) == 0
        assert np.abs(f.rgb.astype(int) - src[f.index]).mean() < 6  # MJPEG, RGB order kept
    with pytest.raises(FootageError, match="which has 6 frames"):
        Footage(path, "4:9")


def test_image_folder(tmp_path: Path) -> None:
    for i, f in enumerate(_frames(4)):
        cv2.imwrite(str(tmp_path / f"img_{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not an image")
    fo = Footage(tmp_path, "1:", fps=2.0)
    assert fo.info.kind == "images" and fo.info.frames == 4 and len(fo) == 3
    frames = list(fo)
    assert [f.index for f in frames] == [1, 2, 3] and frames[0].stamp == pytest.approx(0.5)
    assert np.array_equal(frames[0].rgb, _frames(4)[1])


def test_bad_inputs_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(FootageError, match="no video file or image folder"):
        Footage(tmp_path / "missing.avi")
    with pytest.raises(FootageError, match=r"get_real_data\.sh"):
        Footage(tmp_path / "vtest.avi")
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"RIFF" + bytes(range(256)) * 40)
    with pytest.raises(FootageError, match=r"cannot (open|decode)"):
        Footage(garbage)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FootageError, match="no images"):
        Footage(empty)
    (empty / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(FootageError, match="cannot read image"):
        Footage(empty)
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    cv2.imwrite(str(tiny / "a.png"), np.full((20, 20, 3), 9, np.uint8))
    cv2.imwrite(str(tiny / "b.png"), np.full((7, 300, 3), 9, np.uint8))  # a later image, smaller than 8x8
    fo = Footage(tiny)
    with pytest.raises(FootageError, match=r"b\.png is 300x7 pixels; the network takes images of at least 8x8"):
        list(fo)


def test_vtest(vtest: Path) -> None:
    fo = Footage(vtest, "793:")
    assert (fo.info.frames, fo.info.width, fo.info.height, fo.info.fps) == (795, 768, 576, 10.0)
    frames = list(fo)
    assert [f.index for f in frames] == [793, 794] and frames[0].intrinsics.width == 768
