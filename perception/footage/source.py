"""Real footage as core :class:`Frame` s: a video file (cv2.VideoCapture) or a folder of images,
optionally restricted to a frame range (``600:795``), without ground truth."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from perception.core.letterbox import MIN_SIDE
from perception.core.types import CameraIntrinsics, Frame
from perception.footage import GET_DATA, FootageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def list_images(directory: Path) -> list[Path]:
    """Image files under ``directory`` (recursively), sorted by path."""
    return sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


@dataclass(frozen=True)
class FrameRange:
    """Frames ``[start, stop)`` of a footage; ``stop=None`` runs to its end."""

    start: int = 0
    stop: int | None = None

    def __post_init__(self) -> None:
        if self.start < 0 or (self.stop is not None and self.stop <= self.start):
            raise FootageError(f"frame range {self} is empty or negative; use FIRST:LAST with 0 <= FIRST < LAST")

    def __str__(self) -> str:
        return f"{self.start}:{'' if self.stop is None else self.stop}"

    @staticmethod
    def parse(value: object) -> FrameRange:
        """``"A:B"`` (B exclusive), ``"A:"`` (to the end), ``":B"``, ``"N"`` (the first N frames),
        ``[A, B]`` (as in training configs) or ``None`` (everything)."""
        if value is None:
            return FrameRange()
        if isinstance(value, FrameRange):
            return value
        try:
            if isinstance(value, (list, tuple)):
                if len(value) != 2:
                    raise ValueError
                first, last = int(value[0]), None if value[1] is None else int(value[1])
            elif ":" in str(value):
                a, b = str(value).strip().split(":")
                first, last = int(a) if a else 0, int(b) if b else None
            else:
                first, last = 0, int(str(value))
        except (TypeError, ValueError) as e:
            raise FootageError(
                f"frames must look like FIRST:LAST (LAST exclusive, e.g. 600:795), FIRST:, or a count N, not {value!r}"
            ) from e
        return FrameRange(first, last)

    def resolve(self, count: int, name: str) -> tuple[int, int]:
        """``(start, stop)`` within a footage of ``count`` frames, or a FootageError naming its length."""
        stop = count if self.stop is None else self.stop
        if self.start >= count or stop > count:
            raise FootageError(f"frame range {self} lies outside {name}, which has {count} frames (0:{count})")
        return self.start, stop


@dataclass(frozen=True)
class FootageInfo:
    path: str
    kind: str  # "video" | "images"
    frames: int  # in the whole footage
    fps: float
    width: int
    height: int


class Footage:
    """Frames ``range`` of a video file or an image folder, iterated in order as core Frames.

    Each Frame has ``sequence`` 0, ``index`` = its frame number in the footage, ``stamp`` =
    index / fps, ``scene_cut`` on the first frame of the range, no ground truth, and nominal
    pinhole intrinsics from ``hfov_deg`` (real footage comes without calibration). Image folders
    play at ``fps`` (default 10); videos at their own rate unless ``fps`` is given.
    """

    def __init__(self, path: str | Path, frames: FrameRange | str | None = None, fps: float | None = None,
                 hfov_deg: float = 60.0) -> None:
        self.path = Path(path).expanduser()
        self.hfov_deg = hfov_deg
        self._images: list[Path] = []
        if self.path.is_dir():
            self._images = list_images(self.path)
            if not self._images:
                raise FootageError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {self.path}")
            first = _read_image(self._images[0])
            h, w = first.shape[:2]
            self.info = FootageInfo(str(self.path), "images", len(self._images), fps or 10.0, w, h)
        elif self.path.is_file():
            cap = _open_video(self.path)
            try:
                count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
                w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
                rate = float(cap.get(cv2.CAP_PROP_FPS))
                ok, _ = cap.read()
            finally:
                cap.release()
            if not ok or count <= 0 or min(w, h) <= 0:
                raise FootageError(f"cannot decode any frame of {self.path}; check that it is a video OpenCV reads "
                                   "(AVI, MP4, MKV with a common codec)")
            self.info = FootageInfo(str(self.path), "video", count, fps or (rate if rate > 0 else 10.0), w, h)
        else:
            raise FootageError(f"no video file or image folder at {self.path}"
                               + (f"; fetch OpenCV's sample video with `{GET_DATA}`" if self.path.name == "vtest.avi"
                                  else ""))
        self.range = FrameRange.parse(frames)
        self.start, self.stop = self.range.resolve(self.info.frames, str(self.path))
        self.intrinsics = CameraIntrinsics.from_fov(self.info.width, self.info.height, hfov_deg)

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def indices(self) -> range:
        return range(self.start, self.stop)

    def _frame(self, index: int, rgb: np.ndarray) -> Frame:
        intr = self.intrinsics
        if rgb.shape[:2] != (intr.height, intr.width):  # image folders may mix sizes
            intr = CameraIntrinsics.from_fov(rgb.shape[1], rgb.shape[0], self.hfov_deg)
        return Frame(sequence=0, index=index, stamp=index / self.info.fps, rgb=rgb, intrinsics=intr,
                     scene_cut=index == self.start)

    def __iter__(self) -> Iterator[Frame]:
        if self.info.kind == "images":
            for i in self.indices:
                yield self._frame(i, _read_image(self._images[i]))
            return
        cap = _open_video(self.path)
        try:
            # decode from the start instead of seeking: exact for every codec, ~0.5 ms a frame
            for i in range(self.start):
                if not cap.grab():
                    raise FootageError(f"{self.path} ended after {i} frames, before frame {self.start}")
            for i in self.indices:
                ok, bgr = cap.read()
                if not ok:
                    raise FootageError(f"{self.path} ended after {i} frames although it reports "
                                       f"{self.info.frames}; use --frames {self.start}:{i}")
                yield self._frame(i, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        finally:
            cap.release()


def _open_video(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FootageError(f"cannot open {path} as a video; check that it is a video file OpenCV reads "
                           "(AVI, MP4, MKV with a common codec), or pass a folder of images with --images")
    return cap


def _read_image(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FootageError(f"cannot read image {path}; check that it is a PNG/JPEG/BMP file")
    if min(bgr.shape[:2]) < MIN_SIDE:
        raise FootageError(f"image {path} is {bgr.shape[1]}x{bgr.shape[0]} pixels; the network takes images of at "
                           f"least {MIN_SIDE}x{MIN_SIDE}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
