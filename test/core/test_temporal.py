from __future__ import annotations

import cv2
import numpy as np

from perception.core.temporal import (
    ReceivedStamps,
    ResetPolicy,
    ResetReason,
    frame_signature,
    reset_reason,
    signature_distance,
)


def _img(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(12, 20, 3), dtype=np.uint8)
    return np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))  # blocky picture 96x160


def test_first_frame_time_backwards_and_jumps() -> None:
    p = ResetPolicy(max_gap_s=0.5)
    assert reset_reason(None, 1.0, None, None, p) is ResetReason.FIRST_FRAME
    assert reset_reason(1.0, 0.9, None, None, p) is ResetReason.TIME_BACKWARDS
    assert reset_reason(1.0, 1.6, None, None, p) is ResetReason.TIME_JUMP
    assert reset_reason(1.0, 1.1, None, None, p) is ResetReason.NONE


def test_scene_cut_detected_but_not_for_small_changes() -> None:
    p = ResetPolicy()
    a = _img(0)
    brighter = np.clip(a.astype(np.int16) + 30, 0, 255).astype(np.uint8)  # exposure change: no cut
    shifted = np.roll(a, 2, axis=1)  # small ego motion: no cut
    other = _img(1)  # a different scene
    sa = frame_signature(a)
    assert signature_distance(sa, frame_signature(a)) < 1e-6
    assert reset_reason(0.0, 0.1, sa, frame_signature(brighter), p) is ResetReason.NONE
    assert reset_reason(0.0, 0.1, sa, frame_signature(shifted), p) is ResetReason.NONE
    assert reset_reason(0.0, 0.1, sa, frame_signature(other), p) is ResetReason.SCENE_CUT
    off = ResetPolicy(detect_scene_cuts=False)
    assert reset_reason(0.0, 0.1, sa, frame_signature(other), off) is ResetReason.NONE


def test_gaps_made_by_dropped_frames_are_not_time_jumps() -> None:
    """A 10 Hz stream of which only every 8th frame is processed: 0.8 s between processed frames, but the
    stream (what was received) never jumped. A real jump among the dropped frames still counts."""
    policy = ResetPolicy(max_gap_s=0.5, detect_scene_cuts=False)
    received = ReceivedStamps()
    for i in range(9):
        received.add("a", 10.0 + 0.1 * i)
    steps = received.take("a")
    assert steps is not None and abs(steps.max_step - 0.1) < 1e-9
    assert reset_reason(10.0, 10.8, None, None, policy) is ResetReason.TIME_JUMP  # processed stamps alone
    assert reset_reason(10.0, 10.8, None, None, policy, steps) is ResetReason.NONE
    for t in (10.9, 30.0, 30.1):  # the jump happened on a frame that was dropped
        received.add("a", t)
    assert reset_reason(10.8, 30.1, None, None, policy, received.take("a")) is ResetReason.TIME_JUMP
    for t in (30.2, 29.0, 29.1):  # so did a step back
        received.add("a", t)
    assert reset_reason(30.1, 29.1, None, None, policy, received.take("a")) is ResetReason.TIME_BACKWARDS
    assert received.take("a") is None


def test_signature_is_resolution_independent() -> None:
    """The same picture at camera resolution and at network size (letterboxed input) gives one signature,
    so scene cuts are judged alike on either."""
    rng = np.random.default_rng(3)
    scene = cv2.resize(rng.integers(0, 255, (9, 16, 3), dtype=np.uint8), (1920, 1080), interpolation=cv2.INTER_CUBIC)
    small = cv2.resize(scene, (448, 252), interpolation=cv2.INTER_AREA)
    assert signature_distance(frame_signature(scene), frame_signature(small)) < 0.01
    other = cv2.resize(rng.integers(0, 255, (9, 16, 3), dtype=np.uint8), (448, 252), interpolation=cv2.INTER_CUBIC)
    assert signature_distance(frame_signature(scene), frame_signature(other)) > ResetPolicy().scene_cut_threshold
