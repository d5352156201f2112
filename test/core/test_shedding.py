"""The load-shedding scheduler (perception.core.shedding) on its own and in a simulated overloaded node.

The simulation is deterministic (simulated time, no clock, no threads): cameras send at fixed rates into
latest-frame-wins slots, one worker runs batches whose cost grows with the batch (a CPU), and the scheduler
decides what each batch takes. Counts, not timings, are asserted.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from perception.core.shedding import FrameScheduler, SheddingPolicy


@dataclass
class Sim:
    answered: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)
    shed: Counter[tuple[str, str]] = field(default_factory=Counter)  # (camera, reason)
    answered_at: dict[str, list[float]] = field(default_factory=dict)

    def share(self, cam: str) -> float:
        return self.answered[cam] / self.sent[cam]

    def longest_gap(self, cam: str, start: float, end: float) -> float:
        times = [start] + [t for t in self.answered_at.get(cam, []) if start <= t <= end] + [end]
        return max(b - a for a, b in itertools.pairwise(times))


def simulate(rates: dict[str, float], policy: SheddingPolicy | None = None, seconds: float = 20.0,
             per_frame_s: float = 0.067, max_batch: int = 8, stop: dict[str, float] | None = None,
             jitter_s: float = 0.0, seed: int = 0, fifo: bool = False) -> Sim:
    """Cameras at ``rates`` (Hz, phases staggered) into one slot each; a batch of n costs n * ``per_frame_s``.
    ``stop[camera]``: it sends nothing after that time. ``fifo``: the order before shedding (oldest received
    first), for comparison."""
    rng = random.Random(seed)
    sched = FrameScheduler(rates, policy)
    arrivals = sorted((k / hz + i * 0.003 + rng.uniform(0, jitter_s), cam) for i, (cam, hz) in enumerate(rates.items())
                      for k in range(int(seconds * hz)) if k / hz < (stop or {}).get(cam, seconds))
    slots: dict[str, float] = {}
    sim = Sim()
    busy_until, running, i, now = 0.0, list[str](), 0, 0.0
    while True:
        next_arrival = arrivals[i][0] if i < len(arrivals) else float("inf")
        if running and busy_until <= next_arrival:  # the batch ends: answered
            now = busy_until
            for cam in running:
                sim.answered[cam] += 1
                sim.answered_at.setdefault(cam, []).append(now)
            running = []
        elif not running and slots:  # the worker is free and frames wait: the next batch
            running = sorted(slots, key=slots.__getitem__)[:max_batch] if fifo else sched.choose(slots, max_batch, now)
            assert running, "frames wait and nothing was taken"
            for cam in running:
                del slots[cam]
            busy_until = now + per_frame_s * len(running)
        elif i < len(arrivals):  # a frame arrives
            now, cam = arrivals[i]
            i += 1
            sim.sent[cam] += 1
            if not sched.admit(cam, now):
                sim.shed[cam, "rate_cap"] += 1
                continue
            if cam in slots:
                sim.shed[cam, sched.replaced(cam, now)] += 1
            slots[cam] = now
        else:
            break
    return sim


def test_defaults_take_every_waiting_camera_in_one_batch_in_arrival_order() -> None:
    s = FrameScheduler(("a", "b", "c"))
    assert s.choose({"c": 1.0, "a": 3.0, "b": 2.0}, limit=8, now=3.0) == ["c", "b", "a"]
    assert s.admit("a", 0.0) and s.admit("a", 0.0)  # no cap: everything admitted
    assert s.replaced("a", 4.0) == "stale"  # nothing declared: a replaced frame is plain stale


def test_rate_cap_holds_the_rate_however_the_frames_jitter() -> None:
    for jitter in (0.0, 0.004):
        sim = simulate({"cam": 30.0}, SheddingPolicy(max_rate_hz={"cam": 10.0}), seconds=20.0, per_frame_s=0.001,
                       jitter_s=jitter)
        assert 199 <= sim.answered["cam"] <= 201, (jitter, sim.answered)  # 10 Hz of 30 Hz for 20 s
        assert sim.shed["cam", "rate_cap"] == sim.sent["cam"] - sim.answered["cam"]
    # a cap above the camera's rate sheds nothing
    sim = simulate({"cam": 12.0}, SheddingPolicy(max_rate_hz={"cam": 15.0}), seconds=10.0, per_frame_s=0.001,
                   jitter_s=0.01)
    assert sim.answered["cam"] == sim.sent["cam"]


def test_a_rate_cap_on_one_camera_frees_the_worker_for_the_others() -> None:
    rates = {"front": 10.0, "rear": 30.0}
    free = simulate(rates, per_frame_s=0.06)  # front + rear in every batch: 120 ms, longer than front's period
    capped = simulate(rates, SheddingPolicy(max_rate_hz={"rear": 5.0}), per_frame_s=0.06)
    assert capped.share("front") > 0.95 > free.share("front")
    assert 95 <= capped.answered["rear"] <= 101  # 5 Hz for 20 s


def test_priority_keeps_the_high_priority_camera_answered_without_starving_the_others() -> None:
    rates = {"front": 10.0, "left": 10.0, "right": 10.0}  # 30 frames/s into a worker that does 15
    equal = simulate(rates)
    policy = SheddingPolicy(priority={"front": 1}, max_wait_s=1.0)
    prio = simulate(rates, policy)
    assert prio.share("front") >= 0.9 > equal.share("front") + 0.2, (prio.share("front"), equal.share("front"))
    for side in ("left", "right"):  # never starved: answered at least once per max_wait_s (+ one inference)
        assert prio.answered[side] >= 20
        assert prio.longest_gap(side, 1.0, 19.0) <= policy.max_wait_s + 2 * 0.067
        assert prio.shed[side, "priority"] > 0  # their shed frames say why
    assert sum(prio.answered.values()) >= 0.95 * sum(equal.answered.values())  # the worker does not idle


def test_no_camera_starves_even_when_cameras_outnumber_the_batch() -> None:
    rates = {"a": 30.0, "b": 30.0}  # same rate, 3 ms apart: oldest-received-first leaves b out for seconds
    fifo = simulate(rates, max_batch=1, per_frame_s=0.05, fifo=True)
    fair = simulate(rates, max_batch=1, per_frame_s=0.05)
    assert fifo.longest_gap("b", 1.0, 19.0) > 2.0
    assert abs(fair.answered["a"] - fair.answered["b"]) <= 1
    assert fair.longest_gap("b", 1.0, 19.0) <= 0.2
    assert fair.shed["a", "batch_full"] > 0  # left out of a full batch for the other camera's turn


def test_a_camera_that_stops_does_not_stall_the_others() -> None:
    rates = {"front": 10.0, "left": 10.0, "right": 10.0}
    policy = SheddingPolicy(priority={"front": 1}, max_wait_s=1.0)
    sim = simulate(rates, policy, seconds=20.0, stop={"front": 10.0})
    # front stopped at 10 s: from max_wait_s later on, the two sides (20 frames/s, worker 15) share the worker
    for side in ("left", "right"):
        assert sim.longest_gap(side, 10.0, 20.0) <= 0.3
    after = [t for t in sim.answered_at["left"] + sim.answered_at["right"] if t > 11.5]
    assert len(after) >= 0.9 * 15 * 8.5  # the worker's capacity, not held back by the stopped camera


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_wait_s"):
        SheddingPolicy(max_wait_s=0.0)
    with pytest.raises(ValueError, match="max_rate_hz"):
        SheddingPolicy(max_rate_hz={"a": 0.0})
