"""rosbag2 files (mcap or sqlite3) read and written with rosbags, with clear errors for bad bags.

:func:`open_bag` checks a bag before anything uses it -- the directory and its metadata.yaml,
the storage files (truncated or damaged ones), message types this project cannot decode -- and
:func:`read_messages` streams raw CDR messages, checking on the way that every stamped topic's
header stamps never go backwards. Problems raise :class:`~perception.bag.BagError` naming the bag
and what to do; nothing here waits on anything, so a bad bag can never hang a caller.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perception.bag import BagError
from perception.bag.cdr import header_stamp_ns
from perception.bag.typestore import typestore

STORAGES = ("mcap", "sqlite3")
_verify = {"enabled": True}
_verified: dict[tuple[str, int, int], None] = {}  # files found intact: (path, size, mtime ns)


def verify_on_read(enabled: bool) -> None:
    """Check MCAP files before reading them (default on; the CLIs' ``--no-verify`` turns it off:
    rosbags then still checks each chunk's CRC as it reads that chunk)."""
    _verify["enabled"] = enabled


def repair_hint(path: Path) -> str:
    return f"`perception bag repair {path}` rebuilds it from every complete, intact message"


def verify_bag(path: Path, storage: str, files: Iterable[str]) -> None:
    """BagError naming the damaged byte ranges (with topics and log times) of any damaged MCAP file."""
    from perception.bag.mcap_storage import scan_mcap

    if storage != "mcap":
        return
    for name in files:
        f = path / name
        if not f.exists():
            raise BagError(f"bag {path}: storage file {name} (listed in metadata.yaml) is missing")
        st = f.stat()
        key = (str(f.resolve()), st.st_size, st.st_mtime_ns)
        if key in _verified:
            continue
        scan = scan_mcap(f)
        problems = [d.describe(scan.start_ns) for d in scan.damage]
        if not scan.complete and not problems:
            problems.append(f"truncated at byte {scan.size}, no summary (the recording was cut short"
                            + (f"; incomplete record from byte {scan.truncated_at}" if scan.truncated_at else "")
                            + ")")
        if problems:
            shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
            raise BagError(f"bag {path} is damaged: {name} {shown}. Copy or record it again, or {repair_hint(path)} "
                           "(damaged chunks left out); --no-verify skips this check")
        _verified[key] = None


@dataclass(frozen=True)
class BagInfo:
    path: Path
    storage: str
    topics: dict[str, str]  # topic -> message type
    counts: dict[str, int]  # topic -> messages
    start_ns: int
    end_ns: int

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) * 1e-9

    def topics_of_type(self, *msgtypes: str) -> list[str]:
        return [t for t, m in self.topics.items() if m in msgtypes]


def is_stamped(msgtype: str) -> bool:
    """True if the message's first field is a std_msgs/Header (its stamp is at a fixed offset)."""
    defs = typestore().fielddefs.get(msgtype)
    if not defs or not defs[1]:
        return False
    name, (_, sub) = defs[1][0]
    return bool(name == "header" and sub == "std_msgs/msg/Header")


def _reader(path: Path) -> Any:
    from rosbags.rosbag2 import Reader

    if not path.exists():
        raise BagError(f"bag {path} does not exist")
    if path.is_file():
        hint = f"; {path.parent}/metadata.yaml" if (path.parent / "metadata.yaml").exists() else ""
        raise BagError(f"{path} is a file: pass the rosbag2 bag DIRECTORY (the one holding metadata.yaml){hint}")
    if not (path / "metadata.yaml").exists():
        raise BagError(f"bag {path} has no metadata.yaml: not a rosbag2 bag directory (or the recording was cut "
                       f"before it was closed: {repair_hint(path)})")
    return Reader(path)


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[Any]:
    from rosbags.rosbag2 import ReaderError

    reader = _reader(path)
    if _verify["enabled"]:
        meta = _metadata(path)
        if meta.get("compression_mode") != "file":  # whole-file zstd: rosbags checks it while unpacking
            verify_bag(path, str(meta.get("storage_identifier")),
                       [Path(str(p)).name for p in meta.get("relative_file_paths") or []])
    try:
        reader.open()
    except (ReaderError, OSError, ValueError, KeyError, IndexError, EOFError) as e:
        raise BagError(f"bag {path} cannot be opened: {e} (truncated or damaged storage file?)") from e
    except Exception as e:  # storage backends raise their own errors on damaged files
        raise BagError(f"bag {path} cannot be opened: {type(e).__name__}: {e} (truncated or damaged file?)") from e
    try:
        yield reader
    finally:
        with contextlib.suppress(Exception):
            reader.close()


def _metadata(path: Path) -> dict[str, Any]:
    import yaml

    try:
        meta = yaml.safe_load((path / "metadata.yaml").read_text(encoding="utf-8"))
        return dict(meta["rosbag2_bagfile_information"])
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as e:
        raise BagError(f"bag {path}: metadata.yaml is unreadable ({type(e).__name__}: {e}); "
                       f"{repair_hint(path)}") from e


def _storage_of(path: Path) -> str:
    return str(_metadata(path)["storage_identifier"])


def open_bag(path: str | Path, topics: Iterable[str] = ()) -> BagInfo:
    """Check ``path`` and describe it; ``topics`` must all be in it (topic not found -> BagError)."""
    path = Path(path)
    with _opened(path) as reader:
        store = typestore()
        info = BagInfo(
            path=path,
            storage=_storage_of(path),
            topics={c.topic: c.msgtype for c in reader.connections},
            counts={c.topic: int(c.msgcount) for c in reader.connections},
            start_ns=int(reader.start_time) if reader.message_count else 0,
            end_ns=int(reader.end_time) if reader.message_count else 0,
        )
        unknown = sorted({m for m in info.topics.values() if m not in store.fielddefs})
    if unknown:
        raise BagError(f"bag {path} holds message types this project cannot decode: {', '.join(unknown)} "
                       "(register their .msg definitions in perception.bag.typestore, or leave those topics out)")
    missing = [t for t in topics if t not in info.topics]
    if missing:
        raise BagError(f"topic(s) {', '.join(missing)} not found in bag {path}; it has: "
                       + ", ".join(f"{t} ({m})" for t, m in sorted(info.topics.items())))
    return info


def read_messages(
    path: str | Path, topics: Iterable[str] | None = None, check_order: bool = True
) -> Iterator[tuple[str, str, int, bytes]]:
    """(topic, message type, log time ns, raw CDR) in log-time order.

    With ``check_order``, a stamped topic whose header stamp goes backwards raises BagError
    (a loop must be asked of the player, not baked into the recording).
    """
    path = Path(path)
    wanted = None if topics is None else set(topics)
    with _opened(path) as reader:
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if wanted is not None:
            missing = sorted(wanted - {c.topic for c in conns})
            if missing:
                raise BagError(f"topic(s) {', '.join(missing)} not found in bag {path}")
        stamped = {c.topic: is_stamped(c.msgtype) for c in conns}
        last: dict[str, int] = {}
        n = 0
        try:
            for conn, log_ns, raw in reader.messages(connections=conns):
                n += 1
                if check_order and stamped[conn.topic]:
                    s = header_stamp_ns(raw)
                    prev = last.get(conn.topic)
                    if prev is not None and s < prev:
                        raise BagError(
                            f"bag {path}: topic {conn.topic} goes back in time at message {n} (header stamp "
                            f"{s * 1e-9:.6f} s after {prev * 1e-9:.6f} s): timestamps out of order; re-record it "
                            "or replay with ordering checks off (--no-order-check)")
                    last[conn.topic] = s
                yield conn.topic, conn.msgtype, int(log_ns), bytes(raw)
        except BagError:
            raise
        except Exception as e:
            raise BagError(f"bag {path} is damaged after {n} messages: {type(e).__name__}: {e} "
                           f"(truncated or damaged storage file: {repair_hint(path)})") from e


def deserialize(raw: bytes, msgtype: str) -> Any:
    return typestore().deserialize_cdr(raw, msgtype)


def _rosbag2_writer() -> Any:
    """rosbags' rosbag2 Writer with our MCAP storage (CRCs, crash-safe flushing) instead of its own."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from perception.bag.mcap_storage import McapStorage

    class _Writer(Writer):
        STORAGE_PLUGINS = {**Writer.STORAGE_PLUGINS, StoragePlugin.MCAP: McapStorage}  # noqa: RUF012

    return _Writer


class BagWriter:
    """A rosbag2 writer (mcap by default) for topics added on first use; ``compress``: zstd per message.

    MCAP files carry chunk, data-section and summary CRCs. ``flush_s`` (recordings of live data): the
    open chunk is written out at least that often, so a killed recorder loses at most that much and
    ``perception bag repair`` recovers the rest."""

    def __init__(self, path: str | Path, storage: str = "mcap", compress: bool = False,
                 flush_s: float | None = None) -> None:
        from rosbags.rosbag2 import StoragePlugin
        from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

        if storage not in STORAGES:
            raise BagError(f"storage {storage!r} unknown; use one of {', '.join(STORAGES)}")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} already exists; remove it or choose another output path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = _rosbag2_writer()(self.path, version=9, storage_plugin=plugin)
        if compress:
            self._writer.set_compression(CompressionMode.MESSAGE, CompressionFormat.ZSTD)
        self._writer.open()
        if storage == "mcap":
            self._writer.storage.flush_s = flush_s
        self._conns: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.closed = False

    def flush_if_due(self) -> None:
        """Write out the open chunk if it is older than ``flush_s`` (call it while idle)."""
        if not self.closed and hasattr(self._writer.storage, "flush_if_due"):
            self._writer.storage.flush_if_due()

    def add_topic(self, topic: str, msgtype: str, store: Any = None) -> None:
        """Add ``topic`` on first use; ``store``: a typestore knowing ``msgtype`` (default: ours)."""
        if topic not in self._conns:
            self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=store or typestore())
            self.counts[topic] = 0

    def write_raw(self, topic: str, msgtype: str, log_ns: int, raw: bytes | bytearray | memoryview) -> None:
        self.add_topic(topic, msgtype)
        self._writer.write(self._conns[topic], int(log_ns), bytes(raw))
        self.counts[topic] += 1

    def write(self, topic: str, msg: Any, log_ns: int) -> None:
        typename = msg.__msgtype__
        self.write_raw(topic, typename, log_ns, typestore().serialize_cdr(msg, typename))

    def close(self) -> None:
        """Finish the file (summary, metadata.yaml); a second call does nothing."""
        if not self.closed:
            self.closed = True
            self._writer.close()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


def rgb_frames(path: str | Path, topic: str = "", max_frames: int = 0) -> Iterator[np.ndarray]:
    """RGB frames of one camera topic of a bag, in order (``topic`` empty: the bag's only image topic;
    ``max_frames`` 0: all). For calibration and offline tools; replay goes over DDS instead."""
    from perception.bag.messages import rgb_of

    info = open_bag(path, [topic] if topic else [])
    if not topic:
        candidates = [t for t in info.topics_of_type(*IMAGE_TYPES) if "semantic" not in t and "segmentation" not in t]
        if len(candidates) != 1:
            raise BagError(f"bag {path}: name the camera topic, it has image topics {candidates or 'none'}")
        topic = candidates[0]
    elif info.topics[topic] not in IMAGE_TYPES:
        raise BagError(f"bag {path}: topic {topic} is {info.topics[topic]}, not an image")
    for n, (_, msgtype, _, raw) in enumerate(read_messages(path, [topic])):
        if max_frames and n >= max_frames:
            return
        yield rgb_of(deserialize(raw, msgtype), msgtype)
