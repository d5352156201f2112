"""When must a camera's temporal memory be reset? Pure functions, no state of their own.

The memory of past frames is only meaningful for a continuous stream. It is reset when
- time goes backwards (bag loop, seek back) or jumps forward more than ``max_gap_s`` (seek, dropout),
- the image content changes abruptly (a scene cut: a different camera or recording spliced in).

"The stream" is what the camera SENT, not what the pipeline processed: a node that drops frames
because inference is slower than the camera (latest frame wins) processes frames further apart
than ``max_gap_s`` while the stream itself is continuous. Such a caller passes the steps between
consecutive RECEIVED stamps since the last processed frame (:class:`StreamSteps`, kept by
:class:`ReceivedStamps`); only a jump or a step back in those is a time jump. Without them the
processed stamps are compared, which is right for callers that process every frame (eval, replay).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import cv2
import numpy as np


class ResetReason(str, Enum):
    NONE = ""
    FIRST_FRAME = "first_frame"
    TIME_BACKWARDS = "time_backwards"
    TIME_JUMP = "time_jump"
    SCENE_CUT = "scene_cut"
    REQUESTED = "requested"


@dataclass(frozen=True)
class ResetPolicy:
    max_gap_s: float = 0.5  # a forward gap larger than this resets the memory
    scene_cut_threshold: float = 0.35  # signature distance in [0, 1] above which a frame is a cut
    detect_scene_cuts: bool = True


@dataclass(frozen=True)
class StreamSteps:
    """The smallest and largest step between consecutive received stamps over an interval (seconds)."""

    min_step: float
    max_step: float


class ReceivedStamps:
    """Per stream: the steps between consecutive received stamps since the last :meth:`take`.

    Not thread-safe by itself (the caller holds its own lock)."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._steps: dict[str, StreamSteps] = {}

    def add(self, stream: str, stamp: float) -> None:
        last = self._last.get(stream)
        self._last[stream] = stamp
        if last is None:
            return
        step = stamp - last
        cur = self._steps.get(stream)
        self._steps[stream] = StreamSteps(step, step) if cur is None else StreamSteps(
            min(cur.min_step, step), max(cur.max_step, step))

    def take(self, stream: str) -> StreamSteps | None:
        """Steps since the previous take (None: no step seen, e.g. the stream's first frame)."""
        return self._steps.pop(stream, None)

    def forget(self, stream: str | None = None) -> None:
        if stream is None:
            self._last.clear()
            self._steps.clear()
        else:
            self._last.pop(stream, None)
            self._steps.pop(stream, None)


def frame_signature(rgb: np.ndarray, size: int = 16) -> np.ndarray:
    """A tiny, illumination-normalised thumbnail used to detect scene cuts (float32, size*size).

    Cheap at any resolution: 2x2-mean halvings (OpenCV's fast integer ``INTER_AREA``) down to under
    ``4 * size`` pixels, grey, then one area resize (the Perceptor passes its letterboxed input: ~0.05 ms)."""
    img = rgb
    while min(img.shape[:2]) >= 4 * size:
        hh, hw = img.shape[0] // 2, img.shape[1] // 2
        img = cv2.resize(img[: 2 * hh, : 2 * hw], (hw, hh), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    return signature_from_thumbnail(cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA))


def signature_from_thumbnail(thumbnail: np.ndarray) -> np.ndarray:
    """The signature of a grey ``size x size`` thumbnail (e.g. area-pooled on a GPU): mean removed, unit norm."""
    small = np.asarray(thumbnail, dtype=np.float32).ravel().copy()
    small -= small.mean()
    norm = float(np.linalg.norm(small))
    return small / norm if norm > 1e-6 else small


def signature_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 - correlation of two signatures, halved into [0, 1] (0 = same picture)."""
    return float(np.clip((1.0 - float(np.dot(a, b))) / 2.0, 0.0, 1.0))


def reset_reason(
    prev_stamp: float | None,
    stamp: float,
    prev_signature: np.ndarray | None,
    signature: np.ndarray | None,
    policy: ResetPolicy,
    received: StreamSteps | None = None,
) -> ResetReason:
    """Why the memory must be reset before processing this frame (``ResetReason.NONE``: keep it).

    ``received``: the steps between consecutive received stamps since ``prev_stamp`` (frames the
    caller dropped included). Given, a forward jump is judged on them, not on ``stamp - prev_stamp``.
    """
    if prev_stamp is None:
        return ResetReason.FIRST_FRAME
    dt = stamp - prev_stamp
    if dt < 0.0 or (received is not None and received.min_step < 0.0):
        return ResetReason.TIME_BACKWARDS
    if (received.max_step if received is not None else dt) > policy.max_gap_s:
        return ResetReason.TIME_JUMP
    if (
        policy.detect_scene_cuts
        and prev_signature is not None
        and signature is not None
        and signature_distance(prev_signature, signature) > policy.scene_cut_threshold
    ):
        return ResetReason.SCENE_CUT
    return ResetReason.NONE
