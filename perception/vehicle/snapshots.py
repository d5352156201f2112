"""The incident recorder's disk side: a writer thread, crash-safe snapshots, the disk quota (no rclpy).

Each snapshot is a rosbag2 bag (MCAP through :class:`perception.bag.io.BagWriter`: chunk, data and summary
CRCs) plus ``incident.json`` (window, triggers, topics, sizes), written under ``<directory>/.partial/<name>``.
Once complete every file and the directory are fsynced and the directory is renamed to
``<directory>/<name>`` (atomic on one file system) and the parent fsynced: a snapshot under ``<directory>``
is complete or absent, whatever happens to the recorder (kill -9, power loss after the rename).
What a killed recorder leaves in ``.partial`` is removed when it starts again (:func:`clean_partial`).

Quota (:func:`enforce_quota`): the completed snapshots' total size is kept under ``quota_gb`` and the
file system's free space above ``min_free_gb``, deleting the oldest first (a snapshot is first renamed
into ``.partial`` then removed, so a half-deleted one is never listed). Free space is made when a snapshot
opens (for its before-window); the quota is applied when it is complete, so the directory may exceed the
quota by the one snapshot being written, and a recorder killed mid-write loses that one only. The
snapshot just written is never deleted by its own quota pass: a quota smaller than one snapshot is
logged, not silently emptied.

:class:`SnapshotWriter` is the :class:`~perception.vehicle.recorder.Sink` of the recorder: its methods
only enqueue (the ROS callbacks never wait for the disk); one thread does the writing. Messages already in
the ring are passed by reference; while the writer is behind by more than ``max_pending_bytes`` new
messages for a snapshot are not queued (the snapshot then says ``writer_dropped`` > 0) so a stalled disk
cannot take the recorder's memory with it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perception.vehicle.recorder import Entry, Sink, Snapshot, entry_bytes

log = logging.getLogger(__name__)

PARTIAL = ".partial"
INDEX = "incident.json"
FORMAT = 1


# -- files -------------------------------------------------------------------------------------------------------
def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def completed(directory: Path) -> list[Path]:
    """The completed snapshots under ``directory``, oldest first (names sort by time)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and (p / INDEX).is_file())


def remove_snapshot(path: Path) -> None:
    """Move a snapshot out of the listing atomically, then delete it."""
    trash = path.parent / PARTIAL / f"{path.name}.deleting"
    trash.parent.mkdir(parents=True, exist_ok=True)
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def clean_partial(directory: Path) -> list[str]:
    """Remove what a killed recorder left in ``<directory>/.partial``; returns the names removed."""
    partial = directory / PARTIAL
    if not partial.is_dir():
        return []
    names = sorted(p.name for p in partial.iterdir())
    for p in partial.iterdir():
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return names


def enforce_quota(directory: Path, quota_bytes: int, min_free_bytes: int, reserve: int = 0,
                  keep: Sequence[str] = ()) -> list[str]:
    """Delete the oldest completed snapshots until they fit ``quota_bytes - reserve`` and the disk keeps
    ``min_free_bytes + reserve`` free; never those named in ``keep``. Returns the names deleted."""
    snaps = [(p, dir_bytes(p)) for p in completed(directory)]
    total = sum(b for _, b in snaps)
    deleted = []
    for p, size in snaps:
        free = shutil.disk_usage(directory).free
        if total + reserve <= quota_bytes and free >= min_free_bytes + reserve:
            break
        if p.name in keep:
            continue
        remove_snapshot(p)
        total -= size
        deleted.append(p.name)
    return deleted


# -- the writer thread -----------------------------------------------------------------------------------------
@dataclass
class SnapshotResult:
    name: str
    path: str  # where it is now ("" if it failed)
    ok: bool
    error: str = ""
    messages: int = 0
    bytes: int = 0
    write_s: float = 0.0  # from the end of its window to the rename
    deleted: list[str] = field(default_factory=list)  # older snapshots deleted by the quota afterwards


@dataclass
class _Open:
    snap: Snapshot
    bag: Any  # BagWriter
    path: Path
    topics: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> type, count, first_ns, last_ns
    error: str = ""
    deleted: list[str] = field(default_factory=list)  # by the quota, to make room for it


def _incident(snap: Snapshot, o: _Open, before_s: float, after_s: float) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "name": snap.name,
        "trigger": snap.trigger.kind,
        "triggers": [{"time_ns": t.time_ns, "kind": t.kind, "reason": t.reason,
                      "utc": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t.time_ns // 1_000_000_000))
                      + f".{t.time_ns // 1_000_000 % 1000:03d}Z"} for t in snap.triggers],
        "start_ns": snap.start_ns,
        "end_ns": snap.end_ns,
        "duration_s": round((snap.end_ns - snap.start_ns) * 1e-9, 3),
        "before_s": before_s,
        "after_s": after_s,
        "before_held_s": round(snap.before_held_s, 3),
        "cut_short": snap.cut_short,
        "writer_dropped": snap.writer_dropped,
        "messages": sum(t["count"] for t in o.topics.values()),
        "topics": o.topics,
    }


class SnapshotWriter(Sink):
    """See the module doc. ``topic_info(i)`` gives (name, message type) of topic index ``i``."""

    def __init__(self, directory: str | Path, topic_info: Callable[[int], tuple[str, str]], *, before_s: float,
                 after_s: float, quota_bytes: int, min_free_bytes: int, max_pending_bytes: int,
                 on_done: Callable[[SnapshotResult], None] | None = None) -> None:
        self.directory = Path(directory)
        self.partial = self.directory / PARTIAL
        self.topic_info = topic_info
        self.before_s, self.after_s = before_s, after_s
        self.quota_bytes, self.min_free_bytes = quota_bytes, min_free_bytes
        self.max_pending_bytes = max_pending_bytes
        self.on_done = on_done
        self.results: list[SnapshotResult] = []
        self.heartbeat = time.monotonic()
        self.failure = ""
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._queued_bytes = 0  # written by the producer only
        self._written_bytes = 0  # written by the writer thread only
        self._open: dict[int, _Open] = {}
        self._thread = threading.Thread(target=self._run, name="snapshot-writer", daemon=True)

    # producer side (the node's executor thread): enqueue only
    def start(self) -> list[str]:
        """Create the directories, remove a killed recorder's leftovers (returned), start the thread."""
        self.partial.mkdir(parents=True, exist_ok=True)
        leftovers = clean_partial(self.directory)
        self._thread.start()
        return leftovers

    @property
    def pending_bytes(self) -> int:
        return max(0, self._queued_bytes - self._written_bytes)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def open(self, snap: Snapshot, entries: list[Entry]) -> None:
        self._queue.put(("open", snap, entries))

    def write(self, entry: Entry, snaps: list[Snapshot]) -> None:
        if self.pending_bytes > self.max_pending_bytes:
            for s in snaps:
                s.writer_dropped += 1
            return
        self._queued_bytes += entry_bytes(entry.raw)
        self._queue.put(("write", entry, tuple(s.id for s in snaps)))

    def close(self, snap: Snapshot) -> None:
        self._queue.put(("close", snap, time.monotonic()))

    def stop(self, timeout: float = 30.0) -> bool:
        """Finish what is queued, then end the thread; False if it did not end within ``timeout``."""
        if self._thread.is_alive():
            self._queue.put(("stop",))
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # the writer thread
    def _run(self) -> None:
        while True:
            try:
                cmd = self._queue.get(timeout=0.1)
            except queue.Empty:
                self.heartbeat = time.monotonic()
                continue
            self.heartbeat = time.monotonic()
            try:
                if cmd[0] == "write":
                    self._write(cmd[1], cmd[2])
                elif cmd[0] == "open":
                    self._do_open(cmd[1], cmd[2])
                elif cmd[0] == "close":
                    self._do_close(cmd[1], cmd[2])
                else:
                    for o in list(self._open.values()):  # stop with snapshots open: should not happen
                        self._fail(o, "the writer stopped before the snapshot closed")
                    return
            except Exception as e:  # never let one bad snapshot end the thread
                log.exception("snapshot writer: %s", e)
                self.failure = f"{type(e).__name__}: {e}"

    def _write_entry(self, o: _Open, entry: Entry) -> None:
        if o.error:
            return
        name, msgtype = self.topic_info(entry.topic)
        try:
            o.bag.write_raw(name, msgtype, entry.log_ns, entry.raw)
        except Exception as e:  # disk full, a type the bag typestore does not know ...
            o.error = f"{type(e).__name__}: {e} (topic {name}, {msgtype})"
            return
        t = o.topics.get(name)
        if t is None:
            o.topics[name] = {"type": msgtype, "count": 1, "first_ns": entry.log_ns, "last_ns": entry.log_ns}
        else:
            t["count"] += 1
            t["last_ns"] = entry.log_ns

    def _write(self, entry: Entry, ids: tuple[int, ...]) -> None:
        for i in ids:
            o = self._open.get(i)
            if o is not None:
                self._write_entry(o, entry)
        self._written_bytes += entry_bytes(entry.raw)

    def _do_open(self, snap: Snapshot, entries: list[Entry]) -> None:
        from perception.bag.io import BagWriter

        # free disk for what is already known of it; the quota itself is applied once it is complete, so a
        # recorder killed while writing loses that snapshot only, never one the quota would have kept
        reserve = sum(entry_bytes(e.raw) for e in entries)
        deleted = enforce_quota(self.directory, 1 << 62, self.min_free_bytes, reserve)
        if deleted:
            log.info("low disk: deleted %s to make room for %s", ", ".join(deleted), snap.name)
        path = self.partial / snap.name
        if path.exists():
            shutil.rmtree(path)
        try:
            bag = BagWriter(path)
        except Exception as e:
            self._open[snap.id] = _Open(snap, None, path, error=f"{type(e).__name__}: {e}")
            return
        o = self._open[snap.id] = _Open(snap, bag, path, deleted=deleted)
        for entry in entries:
            self._write_entry(o, entry)

    def _fail(self, o: _Open, error: str) -> SnapshotResult:
        self._open.pop(o.snap.id, None)
        if o.bag is not None:
            with contextlib.suppress(Exception):
                o.bag.close()
        shutil.rmtree(o.path, ignore_errors=True)
        res = SnapshotResult(o.snap.name, "", False, error)
        log.error("snapshot %s failed: %s", o.snap.name, error)
        self._finish(res)
        return res

    def _finish(self, res: SnapshotResult) -> None:
        self.results.append(res)
        if self.on_done is not None:
            self.on_done(res)

    def _do_close(self, snap: Snapshot, closed_at: float) -> None:
        o = self._open.get(snap.id)
        if o is None:
            return
        if o.error:
            self._fail(o, o.error)
            return
        try:
            o.bag.close()
            index = _incident(snap, o, self.before_s, self.after_s)
            (o.path / INDEX).write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
            for f in sorted(o.path.rglob("*")):
                if f.is_file():
                    fsync_path(f)
            fsync_path(o.path)
            final = self.directory / snap.name
            os.rename(o.path, final)
            fsync_path(self.directory)
            fsync_path(self.partial)
        except Exception as e:  # disk full, I/O error: this snapshot fails, the recorder goes on
            self._fail(o, f"{type(e).__name__}: {e}")
            return
        self._open.pop(snap.id, None)
        deleted = o.deleted + enforce_quota(self.directory, self.quota_bytes, self.min_free_bytes, keep=(snap.name,))
        total = dir_bytes(final)
        if total > self.quota_bytes:
            log.warning("snapshot %s (%.1f MB) alone is larger than the quota (%.1f MB): raise quota_gb",
                        snap.name, total / 1e6, self.quota_bytes / 1e6)
        self._finish(SnapshotResult(snap.name, str(final), True, messages=int(index["messages"]), bytes=total,
                                    write_s=time.monotonic() - closed_at, deleted=deleted))
