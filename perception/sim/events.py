"""Occlusion events in a ground-truth sequence: a track well visible, then (nearly) hidden, then back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from perception.core.types import GroundTruth


@dataclass(frozen=True)
class OcclusionEvent:
    track_id: int
    visible_before: int  # last frame index (position in the sequence) with visibility >= high
    hidden_from: int  # first frame of the hidden stretch (visibility < low or absent)
    back_at: int  # first frame after it with visibility >= high again


def occlusion_events(gts: Sequence[GroundTruth], low: float = 0.1, high: float = 0.5) -> list[OcclusionEvent]:
    """Tracks whose visibility goes >= high, then < low (or the track vanishes), then >= high.

    "Visible" (>= high) also requires the object not to be ignored (its visible box is tall
    enough), so sub-pixel flicker of distant objects does not count as an event."""
    vis: dict[int, list[float]] = {}
    n = len(gts)
    for i, gt in enumerate(gts):
        for tid, v, ign in zip(gt.track_ids.tolist(), gt.visibility.tolist(), gt.ignore.tolist()):
            # an ignored but clearly visible object is neither "visible" nor "hidden"
            vis.setdefault(int(tid), [0.0] * n)[i] = float(v) if not ign or v < low else min(float(v), high * 0.99)
    events = []
    for tid, series in sorted(vis.items()):
        last_high, hidden = -1, -1
        for i, v in enumerate(series):
            if v >= high:
                if hidden >= 0:
                    events.append(OcclusionEvent(tid, last_high, hidden, i))
                    hidden = -1
                last_high = i
            elif v < low and last_high >= 0 and hidden < 0:
                hidden = i
    return events
