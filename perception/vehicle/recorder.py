"""The incident recorder's logic (issue 20 part 4), pure Python: no rclpy, no files.

* :class:`RingBuffer`: the last ``before_s`` seconds of every recorded topic as the serialized bytes that
  came off the wire, under a byte budget (payload + a fixed per-message overhead, so the budget is close to
  what the buffer really costs in memory). A message larger than ``max_message_mb`` is dropped and counted,
  never allowed to flush the buffer. Latched topics (transient local: ``/tf_static``, ``label_info``) also
  keep their last distinct messages outside the ring: every snapshot starts with them.
* :class:`Recorder`: triggers -> snapshots. A trigger at ``t`` asks for ``[t - before_s, t + after_s]``
  (receive times). The ring's part is handed to the writer at once (references, no copy); messages that
  arrive until ``t + after_s`` follow one by one; the snapshot is closed by the first message or
  :meth:`Recorder.tick` after its end. Nothing here waits on a disk: the writer is a thread
  (:mod:`perception.vehicle.snapshots`) fed through a queue.

Overlapping triggers: a trigger that comes while a snapshot is still collecting its after-window is MERGED
into it (its end moves to the new ``t + after_s``, the trigger is listed in the snapshot) as long as the
snapshot stays within ``max_snapshot_s``; past that a new snapshot is opened with its own full
before-window (the two then share messages on disk, each file is complete on its own). At most
``max_open`` snapshots collect at once; a trigger beyond that is merged into the newest one without
extending it, and counted as ``triggers_capped``.

Configuration: :data:`RECORDER_KEYS` (default, type, range, help) is the one table behind the node's
parameters (``perception/ros/nodes/recorder.py``) and the rig file's ``recording:`` section
(:mod:`perception.vehicle.config`), so both validate every key the same way.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from perception.vehicle.errors import VehicleError

ENTRY_OVERHEAD = 160  # bytes of Python objects per buffered message (tuple, int, bytes header, deque slot)
TRIGGER_KINDS = ("service", "topic", "diagnostics")
_TOPIC = re.compile(r"^(~/|/)?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")


class RecorderConfigError(VehicleError):
    """Invalid recorder settings; ``problems`` lists each as ``key: what is wrong; the fix``."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid recorder settings:\n  " + "\n  ".join(self.problems))


class Key(NamedTuple):
    default: Any
    kind: type
    lo: float | None
    hi: float | None
    help: str


# key -> (default, type, min, max, help): the node's parameters and the rig's recording: keys
RECORDER_KEYS: dict[str, Key] = {
    "directory": Key("/var/lib/perception/incidents", str, None, None,
                     "where snapshots go (absolute path); <directory>/.partial holds the one being written"),
    "topics": Key([], list, None, None, "absolute topic names to buffer (empty in a rig file: the rig's cameras' "
                  "compressed images and outputs, /diagnostics, /tf, /tf_static, /odom)"),
    "before_s": Key(20.0, float, 1.0, 600.0, "seconds kept before a trigger"),
    "after_s": Key(10.0, float, 0.0, 600.0, "seconds recorded after a trigger"),
    "budget_mb": Key(512.0, float, 1.0, 1 << 20, "byte budget of the ring buffer (payload + per-message overhead)"),
    "max_message_mb": Key(16.0, float, 0.01, 4096.0, "a message larger than this is dropped (counted); at most "
                          "budget_mb / 2"),
    "quota_gb": Key(10.0, float, 0.001, 1 << 20, "total size of the snapshots kept: oldest deleted first"),
    "min_free_gb": Key(2.0, float, 0.0, 1 << 20, "free disk to leave: oldest snapshots deleted first to keep it"),
    "max_snapshot_s": Key(120.0, float, 1.0, 3600.0, "merged triggers extend a snapshot up to this long; "
                          "at least before_s + after_s"),
    "max_open": Key(3, int, 1, 16, "snapshots collecting their after-window at once"),
    "trigger_topic": Key("~/trigger", str, None, None, "std_msgs/String topic whose messages trigger a snapshot "
                         "(the text is the reason); empty: none"),
    "trigger_on_error": Key(True, bool, None, None, "a /diagnostics status turning ERROR triggers a snapshot"),
    "latched_keep": Key(16, int, 1, 1024, "distinct messages kept per latched topic (/tf_static) for every snapshot"),
}


@dataclass(frozen=True)
class RecorderConfig:
    directory: str = RECORDER_KEYS["directory"].default
    topics: tuple[str, ...] = ()
    before_s: float = 20.0
    after_s: float = 10.0
    budget_mb: float = 512.0
    max_message_mb: float = 16.0
    quota_gb: float = 10.0
    min_free_gb: float = 2.0
    max_snapshot_s: float = 120.0
    max_open: int = 3
    trigger_topic: str = "~/trigger"
    trigger_on_error: bool = True
    latched_keep: int = 16

    @property
    def budget_bytes(self) -> int:
        return int(self.budget_mb * (1 << 20))

    @property
    def max_message_bytes(self) -> int:
        return int(self.max_message_mb * (1 << 20))


def check_value(key: str, value: Any, where: str = "") -> tuple[Any, str]:
    """(value, "") or (the default, "name: problem; fix") for one :data:`RECORDER_KEYS` entry."""
    spec = RECORDER_KEYS[key]
    name = f"{where}.{key}" if where else key
    if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if spec.kind is list and isinstance(value, tuple):
        value = list(value)
    if (isinstance(value, bool) and spec.kind is not bool) or not isinstance(value, spec.kind):
        return spec.default, (f"{name}: must be {spec.kind.__name__}, not {value!r}; e.g. {key}: {spec.default!r}")
    if spec.lo is not None and spec.hi is not None and isinstance(value, int | float) \
            and not spec.lo <= float(value) <= spec.hi:
        return spec.default, f"{name}: {value!r} is out of range; use a value in [{spec.lo:g}, {spec.hi:g}]"
    return value, ""


def recorder_config(values: Mapping[str, Any], where: str = "") -> RecorderConfig:
    """A :class:`RecorderConfig` from ``values`` (missing keys: defaults); :class:`RecorderConfigError` lists
    every problem, each with its fix."""
    errors: list[str] = []
    prefix = f"{where}." if where else ""
    for k in values:
        if k not in RECORDER_KEYS and k not in ("enabled",):
            errors.append(f"{prefix}{k}: unknown key; the keys are {', '.join(RECORDER_KEYS)}")
    got: dict[str, Any] = {}
    for key, spec in RECORDER_KEYS.items():
        value, problem = check_value(key, values.get(key, spec.default), where)
        if problem:
            errors.append(problem)
        got[key] = value
    topics = []
    for i, t in enumerate(got["topics"]):
        if not isinstance(t, str) or not t.startswith("/") or not _TOPIC.match(t):
            errors.append(f"{prefix}topics[{i}]: {t!r} is not an absolute ROS topic name; e.g. /front/detections")
        elif t in topics:
            errors.append(f"{prefix}topics[{i}]: {t} is listed twice; list each topic once")
        else:
            topics.append(t)
    if got["trigger_topic"] and not _TOPIC.match(got["trigger_topic"]):
        errors.append(f"{prefix}trigger_topic: {got['trigger_topic']!r} is not a topic name; e.g. ~/trigger "
                      "(or empty: no trigger topic)")
    if not got["directory"].startswith("/"):
        errors.append(f"{prefix}directory: {got['directory']!r} must be an absolute path, e.g. "
                      "/var/lib/perception/incidents")
    if got["max_message_mb"] > got["budget_mb"] / 2:
        errors.append(f"{prefix}max_message_mb: {got['max_message_mb']:g} is more than half the budget "
                      f"({got['budget_mb']:g} MB): one message could empty the ring; use at most "
                      f"{got['budget_mb'] / 2:g} (or raise budget_mb)")
    if got["max_snapshot_s"] < got["before_s"] + got["after_s"]:
        errors.append(f"{prefix}max_snapshot_s: {got['max_snapshot_s']:g} is shorter than before_s + after_s "
                      f"({got['before_s'] + got['after_s']:g}); use at least that")
    if got["quota_gb"] * 1024 < got["budget_mb"] / 4:
        errors.append(f"{prefix}quota_gb: {got['quota_gb']:g} GB cannot hold even a quarter of one full ring "
                      f"({got['budget_mb']:g} MB); raise quota_gb to at least {got['budget_mb'] / 1024:g}")
    if errors:
        raise RecorderConfigError(errors)
    got["topics"] = tuple(topics)
    return RecorderConfig(**got)


# -- the ring --------------------------------------------------------------------------------------------------
class Entry(NamedTuple):
    log_ns: int  # receive time (the recorder's clock), never decreasing
    topic: int  # index into the recorder's topic table
    raw: bytes  # the serialized message as it came off the wire


def entry_bytes(raw: bytes) -> int:
    return len(raw) + ENTRY_OVERHEAD


class RingBuffer:
    """The last ``keep_ns`` of messages, at most ``budget_bytes`` (see the module doc)."""

    def __init__(self, keep_ns: int, budget_bytes: int, max_message_bytes: int) -> None:
        self.keep_ns, self.budget, self.max_message = keep_ns, budget_bytes, max_message_bytes
        self._entries: deque[Entry] = deque()
        self._times: deque[int] = deque()  # log_ns of _entries (bisect without building a list)
        self.bytes = 0
        self.appended = 0
        self.dropped_too_large = 0
        self.evicted_young = 0  # evicted for the budget while still inside keep_ns: the budget is too small
        self.last_ns = 0

    def __len__(self) -> int:
        return len(self._entries)

    def stamp(self, now_ns: int) -> int:
        """``now_ns`` made non-decreasing (a wall clock stepping back must not reorder the ring)."""
        self.last_ns = max(self.last_ns, now_ns)
        return self.last_ns

    def append(self, entry: Entry) -> bool:
        """Buffer ``entry`` (its ``log_ns`` from :meth:`stamp`); False when it is too large (dropped)."""
        size = entry_bytes(entry.raw)
        if len(entry.raw) > self.max_message:
            self.dropped_too_large += 1
            return False
        self._entries.append(entry)
        self._times.append(entry.log_ns)
        self.bytes += size
        self.appended += 1
        self.evict(entry.log_ns)
        return True

    def evict(self, now_ns: int) -> None:
        """Drop what is older than ``keep_ns``, then the oldest while over the budget."""
        cutoff = now_ns - self.keep_ns
        entries, times = self._entries, self._times
        while entries and (entries[0].log_ns < cutoff or self.bytes > self.budget):
            old = entries.popleft()
            times.popleft()
            self.bytes -= entry_bytes(old.raw)
            if old.log_ns >= cutoff:
                self.evicted_young += 1

    @property
    def oldest_ns(self) -> int | None:
        return self._entries[0].log_ns if self._entries else None

    def span_s(self, now_ns: int) -> float:
        return 0.0 if not self._entries else (now_ns - self._entries[0].log_ns) * 1e-9

    def since(self, start_ns: int) -> list[Entry]:
        """Every buffered entry with ``log_ns >= start_ns``, oldest first (references, not copies)."""
        i = bisect.bisect_left(self._times, start_ns)
        return list(itertools.islice(self._entries, i, None))


class LatchedStore:
    """The last ``keep`` distinct messages of each latched topic (every snapshot starts with them)."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._by_topic: dict[int, list[Entry]] = {}

    def add(self, entry: Entry) -> None:
        items = [e for e in self._by_topic.get(entry.topic, []) if e.raw != entry.raw]
        items.append(entry)
        self._by_topic[entry.topic] = items[-self.keep:]

    def entries(self) -> list[Entry]:
        return sorted((e for items in self._by_topic.values() for e in items), key=lambda e: e.log_ns)


# -- triggers and snapshots ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trigger:
    time_ns: int
    kind: str  # one of TRIGGER_KINDS
    reason: str = ""


@dataclass
class Snapshot:
    """One snapshot being collected: its window, the triggers merged into it, what went to the writer."""

    id: int
    name: str
    start_ns: int
    end_ns: int
    triggers: list[Trigger]
    before_held_s: float = 0.0  # how much before-window the ring really had
    messages: int = 0
    cut_short: str = ""  # why it closed before its end (shutdown), empty when it did not
    writer_dropped: int = 0  # messages not handed to a writer that had fallen behind (a gap: said in the file)

    @property
    def trigger(self) -> Trigger:
        return self.triggers[0]


def snapshot_name(trigger: Trigger) -> str:
    """``20261205T120102.345Z_service``: sorts by time; UTC."""
    import time

    secs, ns = divmod(trigger.time_ns, 1_000_000_000)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(secs))
    return f"{stamp}.{ns // 1_000_000:03d}Z_{trigger.kind}"


class Sink:
    """What :class:`Recorder` hands its work to (the writer thread; a list in tests)."""

    def open(self, snap: Snapshot, entries: list[Entry]) -> None:
        raise NotImplementedError

    def write(self, entry: Entry, snaps: list[Snapshot]) -> None:
        raise NotImplementedError

    def close(self, snap: Snapshot) -> None:
        raise NotImplementedError


@dataclass
class RecorderStats:
    triggers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TRIGGER_KINDS, 0))
    merged: int = 0
    triggers_capped: int = 0
    opened: int = 0
    closed: int = 0


class Recorder:
    """Ring + latched store + the snapshots being collected (see the module doc). Call from one thread."""

    def __init__(self, cfg: RecorderConfig, sink: Sink, latched: Callable[[int], bool] = lambda i: False) -> None:
        self.cfg = cfg
        self.sink = sink
        self.is_latched = latched
        # a little more than before_s: a trigger's window starts before_s before it, at the latest message
        self.ring = RingBuffer(int((cfg.before_s + 1.0) * 1e9), cfg.budget_bytes, cfg.max_message_bytes)
        self.latched = LatchedStore(cfg.latched_keep)
        self.open: list[Snapshot] = []
        self.stats = RecorderStats()
        self._next_id = 1

    def on_message(self, topic: int, raw: bytes, now_ns: int) -> None:
        """A message received at ``now_ns``: buffered, and written to every snapshot whose window holds it."""
        log_ns = self.ring.stamp(now_ns)
        if self.open:
            self.tick(log_ns)
        entry = Entry(log_ns, topic, raw)
        if not self.ring.append(entry):
            return
        if self.is_latched(topic):
            self.latched.add(entry)
        if self.open:
            self.sink.write(entry, self.open)
            for s in self.open:
                s.messages += 1

    def tick(self, now_ns: int) -> None:
        """Close the snapshots whose after-window has passed (also called by a timer when nothing arrives)."""
        done = [s for s in self.open if now_ns > s.end_ns]
        for s in done:
            self.open.remove(s)
            self.stats.closed += 1
            self.sink.close(s)

    def trigger(self, kind: str, reason: str, now_ns: int) -> Snapshot:
        """Record ``[now - before_s, now + after_s]`` (merged into a collecting snapshot where it can be)."""
        if kind not in TRIGGER_KINDS:
            raise ValueError(f"trigger kind {kind!r} is not one of {TRIGGER_KINDS}")
        now_ns = self.ring.stamp(now_ns)
        self.tick(now_ns)
        self.stats.triggers[kind] += 1
        trig = Trigger(now_ns, kind, reason)
        end = now_ns + int(self.cfg.after_s * 1e9)
        max_ns = int(self.cfg.max_snapshot_s * 1e9)
        for s in reversed(self.open):  # newest first
            if end - s.start_ns <= max_ns:
                s.end_ns = max(s.end_ns, end)
                s.triggers.append(trig)
                self.stats.merged += 1
                return s
        if len(self.open) >= self.cfg.max_open:
            newest = self.open[-1]
            newest.triggers.append(trig)
            self.stats.triggers_capped += 1
            return newest
        start = now_ns - int(self.cfg.before_s * 1e9)
        entries = self.ring.since(start)
        snap = Snapshot(self._next_id, snapshot_name(trig), start, end, [trig])
        self._next_id += 1
        snap.before_held_s = max(0.0, (now_ns - entries[0].log_ns) * 1e-9) if entries else 0.0
        latched = [e for e in self.latched.entries() if not entries or e.log_ns < entries[0].log_ns]
        snap.messages = len(entries) + len(latched)
        self.open.append(snap)
        self.stats.opened += 1
        self.sink.open(snap, latched + entries)
        return snap

    def close_all(self, why: str, now_ns: int) -> None:
        """Close every collecting snapshot now (shutdown): each says it was cut short."""
        for s in list(self.open):
            s.cut_short = why
            s.end_ns = min(s.end_ns, self.ring.stamp(now_ns))
            self.open.remove(s)
            self.stats.closed += 1
            self.sink.close(s)


ERROR_LEVEL = 2  # diagnostic_msgs/DiagnosticStatus.ERROR


class ErrorEdges:
    """Which /diagnostics statuses just turned ERROR (a status first seen in ERROR counts: it was not known to
    be ERROR before). ``ignore``: status names never to trigger on (the recorder's own)."""

    def __init__(self, ignore: Sequence[str] = ()) -> None:
        self.ignore = set(ignore)
        self.levels: dict[str, int] = {}

    def update(self, statuses: Sequence[tuple[str, int]]) -> list[str]:
        turned = []
        for name, level in statuses:
            if name in self.ignore:
                continue
            if level == ERROR_LEVEL and self.levels.get(name) != ERROR_LEVEL:
                turned.append(name)
            self.levels[name] = level
        return turned


def subscription_qos(publishers: Sequence[tuple[bool, bool]]) -> tuple[bool, bool]:
    """(reliable, transient local) for a subscription that matches every publisher, given each publisher's
    (reliable, transient local): reliable / transient local only if ALL offer it (rosbag2's rule)."""
    return (bool(publishers) and all(r for r, _ in publishers),
            bool(publishers) and all(t for _, t in publishers))
