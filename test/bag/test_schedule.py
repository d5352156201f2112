"""Replay scheduling: original timing, rate, window, loops with markers, deterministic order."""

from __future__ import annotations

from itertools import pairwise

import pytest

from perception.bag import BagError
from perception.bag.schedule import LOOP, MESSAGE, ReplayOptions, schedule, select

MS = 1_000_000
# a 10 Hz camera with a camera_info right after each image (same log time + 1 ms)
LOG = [t for i in range(10) for t in (5_000 * MS + i * 100 * MS, 5_000 * MS + i * 100 * MS + MS)]


def test_original_timing_and_rate() -> None:
    ev = schedule(LOG, ReplayOptions())
    assert [e.index for e in ev] == list(range(20)) and all(e.kind == MESSAGE for e in ev)
    assert ev[2].at_s == pytest.approx(0.1) and ev[19].at_s == pytest.approx(0.901)
    fast = schedule(LOG, ReplayOptions(rate=2.0))
    assert [e.at_s for e in fast] == pytest.approx([e.at_s / 2 for e in ev])


def test_window_start_offset_and_duration() -> None:
    assert select(LOG, ReplayOptions(start_offset_s=0.3, duration_s=0.2)) == [6, 7, 8, 9]
    ev = schedule(LOG, ReplayOptions(start_offset_s=0.3, duration_s=0.2))
    assert ev[0].at_s == 0.0 and ev[2].at_s == pytest.approx(0.1)
    with pytest.raises(BagError, match="no messages in the replay window"):
        schedule(LOG, ReplayOptions(start_offset_s=5.0))


def test_loops_have_markers_and_keep_the_spacing() -> None:
    ev = schedule(LOG, ReplayOptions(loops=3))
    markers = [i for i, e in enumerate(ev) if e.kind == LOOP]
    assert markers == [20, 41] and [ev[i].loop for i in markers] == [1, 2]
    assert ev[21].index == 0 and ev[21].loop == 1
    # the second pass starts one typical gap (here the 1 ms of the image -> camera_info pairs) after the first
    assert ev[21].at_s == pytest.approx(ev[19].at_s + 0.001)
    assert all(b.at_s >= a.at_s for a, b in pairwise(ev))


def test_deterministic_has_no_clock() -> None:
    ev = schedule(LOG, ReplayOptions(deterministic=True, loops=2))
    assert all(e.at_s == 0.0 for e in ev)
    assert [e.index for e in ev if e.kind == MESSAGE] == list(range(20)) * 2


@pytest.mark.parametrize("kw", [{"rate": 0.0}, {"loops": 0}, {"start_offset_s": -1.0}, {"duration_s": -2.0}])
def test_bad_options(kw: dict[str, float]) -> None:
    with pytest.raises(BagError):
        ReplayOptions(**kw)  # type: ignore[arg-type]


def test_unsorted_log_times_rejected() -> None:
    with pytest.raises(BagError, match="non-decreasing"):
        schedule([3, 2, 1], ReplayOptions())
