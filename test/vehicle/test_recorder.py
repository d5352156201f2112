"""The incident recorder's logic and disk side without ROS: ring under a byte budget, windows, merged
triggers, settings validated key by key, real MCAP snapshots (CRCs checked on read), atomic completion,
the quota deleting the oldest first."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from perception.bag.io import open_bag, read_messages
from perception.bag.typestore import typestore
from perception.vehicle.recorder import (
    ENTRY_OVERHEAD,
    Entry,
    Recorder,
    RecorderConfig,
    RecorderConfigError,
    RingBuffer,
    Sink,
    Snapshot,
    recorder_config,
)
from perception.vehicle.snapshots import PARTIAL, SnapshotWriter, clean_partial, completed, enforce_quota

S = 1_000_000_000


def string_msg(text: str) -> bytes:
    store = typestore()
    return bytes(store.serialize_cdr(store.types["std_msgs/msg/String"](data=text), "std_msgs/msg/String"))


class ListSink(Sink):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def open(self, snap: Snapshot, entries: list[Entry]) -> None:
        self.events.append(("open", snap.id, [e.log_ns for e in entries]))

    def write(self, entry: Entry, snaps: list[Snapshot]) -> None:
        self.events.append(("write", entry.log_ns, tuple(s.id for s in snaps)))

    def close(self, snap: Snapshot) -> None:
        self.events.append(("close", snap.id, snap.start_ns, snap.end_ns, [t.kind for t in snap.triggers]))


def test_ring_keeps_its_byte_budget_and_drops_huge_messages() -> None:
    ring = RingBuffer(keep_ns=100 * S, budget_bytes=10_000, max_message_bytes=3_000)
    for i in range(100):
        ring.append(Entry(ring.stamp(i * S // 10), 0, bytes(1000)))
        assert ring.bytes <= 10_000
    assert len(ring) == 10_000 // (1000 + ENTRY_OVERHEAD)
    assert ring.evicted_young > 0  # the budget, not the time, bounded it
    assert not ring.append(Entry(ring.stamp(11 * S), 0, bytes(5000)))  # beyond max_message: dropped, counted
    assert ring.dropped_too_large == 1 and len(ring) == 10_000 // (1000 + ENTRY_OVERHEAD)


def test_ring_keeps_time_and_selects_a_window() -> None:
    ring = RingBuffer(keep_ns=2 * S, budget_bytes=1 << 30, max_message_bytes=1 << 20)
    for i in range(50):  # 10 Hz for 5 s
        ring.append(Entry(ring.stamp(i * S // 10), i % 2, b"x"))
    assert ring.oldest_ns == 29 * S // 10 and ring.evicted_young == 0  # 4.9 s - 2 s
    assert [e.log_ns for e in ring.since(4 * S)] == [i * S // 10 for i in range(40, 50)]
    assert ring.stamp(3 * S) == 49 * S // 10  # a clock stepping back does not reorder the ring


def cfg(**kw: Any) -> RecorderConfig:
    return recorder_config({"directory": "/tmp/x", "before_s": 2.0, "after_s": 1.0, "max_snapshot_s": 5.0,
                            "budget_mb": 1.0, "max_message_mb": 0.25, **kw})


def feed(rec: Recorder, t0: float, t1: float) -> None:
    """10 Hz from t0 (included) to t1 (excluded), on whole tenths of a second."""
    for tenth in range(round(t0 * 10), round(t1 * 10)):
        rec.on_message(0, b"m", tenth * S // 10)


def test_window_before_and_after_and_merging() -> None:
    sink = ListSink()
    rec = Recorder(cfg(), sink)
    feed(rec, 0.0, 5.0)
    snap = rec.trigger("service", "test", 5 * S)
    assert sink.events[0][0] == "open" and sink.events[0][2][0] == 3 * S  # 2 s before, the first one inside
    assert snap.before_held_s == pytest.approx(2.0)
    feed(rec, 5.0, 5.5)
    assert rec.trigger("topic", "again", round(5.5 * S)) is snap  # merged: end moves to 6.5 s
    feed(rec, 5.5, 8.0)
    close = [e for e in sink.events if e[0] == "close"]
    assert close == [("close", snap.id, 3 * S, round(6.5 * S), ["service", "topic"])]
    written = [e[1] for e in sink.events if e[0] == "write"]
    assert written[0] == 5 * S and written[-1] == round(6.5 * S)  # everything up to the end, nothing after
    assert rec.stats.merged == 1


def test_merging_stops_at_max_snapshot_s_and_max_open() -> None:
    sink = ListSink()
    rec = Recorder(cfg(max_open=2), sink)
    feed(rec, 0.0, 3.0)
    a = rec.trigger("service", "", 3 * S)  # [1, 4]
    feed(rec, 3.0, 3.9)
    assert rec.trigger("service", "", round(3.9 * S)) is a  # end 4.9: span 3.9 <= 5
    feed(rec, 3.9, 4.8)
    b = rec.trigger("diagnostics", "", round(4.8 * S))  # end 5.8: span 4.8 <= 5 -> still merged
    assert b is a
    feed(rec, 4.8, 5.7)
    c = rec.trigger("diagnostics", "", round(5.7 * S))  # end 6.7: span 5.7 > 5 -> a new snapshot
    assert c is not a and c.start_ns == round(3.7 * S)
    d = rec.trigger("topic", "", round(5.75 * S))  # merges into c
    assert d is c and rec.stats.opened == 2
    # a third one while two collect and neither can take it: capped into the newest
    rec2 = Recorder(cfg(max_open=1, max_snapshot_s=3.0), ListSink())
    feed(rec2, 0.0, 3.0)
    first = rec2.trigger("service", "", 3 * S)
    assert rec2.trigger("service", "", round(3.5 * S)) is first and rec2.stats.triggers_capped == 1


def test_settings_are_validated_key_by_key() -> None:
    with pytest.raises(RecorderConfigError) as e:
        recorder_config({"directory": "relative/dir", "before_s": -1, "after_s": "ten", "budget_mb": 8,
                         "max_message_mb": 6, "topics": ["/ok", "not absolute", "/ok"], "bogus": 1,
                         "max_snapshot_s": 1.0, "trigger_on_error": "yes", "quota_gb": 0.001})
    text = "\n".join(e.value.problems)
    for part in ("directory: 'relative/dir' must be an absolute path", "before_s: -1.0 is out of range",
                 "after_s: must be float", "max_message_mb: 6 is more than half the budget",
                 "topics[1]: 'not absolute' is not an absolute ROS topic", "topics[2]: /ok is listed twice",
                 "bogus: unknown key", "trigger_on_error: must be bool", "quota_gb: 0.001 GB cannot hold"):
        assert part in text, (part, text)
    assert recorder_config({}).before_s == 20.0  # the defaults are valid


# -- the disk side ---------------------------------------------------------------------------------------------
TOPICS = [("/a", "std_msgs/msg/String"), ("/b", "std_msgs/msg/String")]


def writer(directory: Path, **kw: Any) -> SnapshotWriter:
    args: dict[str, Any] = {"before_s": 2.0, "after_s": 1.0, "quota_bytes": 1 << 30, "min_free_bytes": 0,
                            "max_pending_bytes": 1 << 30, **kw}
    return SnapshotWriter(directory, TOPICS.__getitem__, **args)


def wait_results(w: SnapshotWriter, n: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while len(w.results) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(w.results) >= n, w.results


def test_snapshot_is_a_checked_mcap_bag_renamed_when_complete(tmp_path: Path) -> None:
    (tmp_path / PARTIAL / "leftover_from_a_kill").mkdir(parents=True)
    w = writer(tmp_path)
    assert w.start() == ["leftover_from_a_kill"]
    rec = Recorder(cfg(directory=str(tmp_path)), w)
    for i in range(30):  # 10 Hz on /a and /b for 3 s
        rec.on_message(i % 2, string_msg(f"m{i}"), i * S // 10)
    snap = rec.trigger("service", "why", 3 * S)
    assert not completed(tmp_path)  # nothing listed before it is complete
    for i in range(30, 45):
        rec.on_message(i % 2, string_msg(f"m{i}"), i * S // 10)
    wait_results(w, 1)
    assert w.stop()
    res = w.results[0]
    assert res.ok and Path(res.path) == tmp_path / snap.name and completed(tmp_path) == [Path(res.path)]
    assert not any((tmp_path / PARTIAL).iterdir())
    index = json.loads((Path(res.path) / "incident.json").read_text())
    assert index["trigger"] == "service" and index["triggers"][0]["reason"] == "why"
    assert index["start_ns"] == S and index["end_ns"] == 4 * S and index["before_held_s"] == pytest.approx(2.0)
    info = open_bag(res.path)  # verifies every CRC first
    assert info.topics == dict(TOPICS)
    times = [t for _, _, t, _ in read_messages(res.path)]
    assert times == [i * S // 10 for i in range(10, 41)]  # exactly [1 s, 4 s], every message


def test_quota_deletes_oldest_first_and_keeps_free_space(tmp_path: Path) -> None:
    for name in ("20260101T000000.000Z_service", "20260101T000100.000Z_topic", "20260101T000200.000Z_service"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "incident.json").write_text("{}")
        (tmp_path / name / "data").write_bytes(bytes(1000))
    assert enforce_quota(tmp_path, quota_bytes=2500, min_free_bytes=0) == ["20260101T000000.000Z_service"]
    newest = "20260101T000200.000Z_service"
    # a quota smaller than one snapshot keeps the one just written
    assert enforce_quota(tmp_path, quota_bytes=10, min_free_bytes=0, keep=(newest,)) == \
        ["20260101T000100.000Z_topic"]
    assert [p.name for p in completed(tmp_path)] == [newest]
    huge = 1 << 62  # more free space than any disk: everything but the kept one goes
    assert enforce_quota(tmp_path, quota_bytes=huge, min_free_bytes=huge, keep=(newest,)) == []
    assert enforce_quota(tmp_path, quota_bytes=huge, min_free_bytes=huge) == [newest]
    assert clean_partial(tmp_path) == [] and not completed(tmp_path)


def test_writer_quota_in_use(tmp_path: Path) -> None:
    w = writer(tmp_path, quota_bytes=17_000)
    w.start()
    rec = Recorder(cfg(directory=str(tmp_path), quota_gb=0.001), w)
    t = 0
    for k in range(4):  # four snapshots of ~8 kB each: the quota keeps the newest two
        for _ in range(30):
            rec.on_message(0, string_msg("x" * 100), t)
            t += S // 10
        rec.trigger("topic", f"#{k}", t)
        for _ in range(11):
            rec.on_message(0, string_msg("x" * 100), t)
            t += S // 10
    rec.tick(t)  # nothing more arrives: the timer closes the last one
    wait_results(w, 4)
    assert w.stop()
    names = [r.name for r in w.results]
    assert all(r.ok for r in w.results) and [p.name for p in completed(tmp_path)] == names[-2:]
    assert sum(len(r.deleted) for r in w.results) == 2
    assert sum(r.bytes for r in w.results[-2:]) <= 17_000 < sum(r.bytes for r in w.results[-3:])


def test_a_failing_snapshot_is_removed_and_the_next_one_works(tmp_path: Path) -> None:
    topics = [("/a", "std_msgs/msg/String"), ("/bad", "nope_msgs/msg/Unknown")]  # no definition: cannot be written
    w = SnapshotWriter(tmp_path, topics.__getitem__, before_s=2.0, after_s=1.0, quota_bytes=1 << 30,
                       min_free_bytes=0, max_pending_bytes=1 << 30)
    w.start()
    rec = Recorder(cfg(directory=str(tmp_path)), w)
    for i in range(30):
        rec.on_message(i % 2, string_msg("x"), i * S // 10)
    rec.trigger("service", "", 3 * S)
    rec.tick(5 * S)
    for i in range(50, 80):  # /a only
        rec.on_message(0, string_msg("y"), i * S // 10)
    rec.trigger("topic", "", 8 * S)
    rec.tick(10 * S)
    wait_results(w, 2)
    assert w.stop()
    bad, good = w.results
    assert not bad.ok and "nope_msgs/msg/Unknown" in bad.error and not bad.path
    assert good.ok and completed(tmp_path) == [Path(good.path)]
    assert not any((tmp_path / PARTIAL).iterdir())  # the failed one's partial directory is gone
