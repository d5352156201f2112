from __future__ import annotations

import numpy as np

from perception.core.temporal import ResetPolicy, ResetReason, frame_signature, reset_reason, signature_distance


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
