"""MCAP files of our bags: written with CRCs and crash-safe flushing, verified before use, repaired after a crash.

- :class:`McapStorage` is the MCAP storage of :class:`perception.bag.io.BagWriter`: rosbags' rosbag2
  ``Writer`` (metadata.yaml, message definitions and type hashes) over the MCAP project's own writer
  (``mcap`` package) with chunk CRCs, a data-section CRC and a summary CRC. With ``flush_s`` a chunk
  is closed and handed to the OS at least that often, so a killed recorder loses at most that much.
- :func:`verify_mcap` walks every record of a file, checks every CRC it carries and the record
  structure, and reports damaged byte ranges with the topics and times they hold where known.
- :func:`recover_mcap` stream-reads a crash-truncated (or damaged) file and rewrites every complete,
  intact message into a new valid file; :func:`repair_bag` rebuilds a bag directory from it.
"""

from __future__ import annotations

import struct
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAGIC = b"\x89MCAP0\r\n"
OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
OP_MESSAGE_INDEX, OP_CHUNK_INDEX, OP_DATA_END, OP_METADATA = 0x07, 0x08, 0x0F, 0x0C
MAX_OPCODE = 0x0F
CHUNK_BYTES = 1 << 20


class McapStorage:
    """rosbags storage plugin (``Writer.STORAGE_PLUGINS``): the ``mcap`` package's writer, CRCs on.

    ``flush_s`` (set by :class:`~perception.bag.io.BagWriter`): close the open chunk and flush the file
    once it holds messages older than this many seconds (None: by size only)."""

    def __init__(self, path: Path, compression: Any) -> None:
        from mcap.writer import CompressionType, Writer
        from rosbags.rosbag2.enums import CompressionMode

        self.path = path / f"{path.name}.mcap"
        self._file = self.path.open("xb")
        chunk_compression = CompressionType.ZSTD if compression == CompressionMode.STORAGE else CompressionType.NONE
        self._mcap = Writer(self._file, chunk_size=CHUNK_BYTES, compression=chunk_compression, enable_crcs=True,
                            enable_data_crcs=True)
        self._mcap.start(profile="ros2", library="perception (mcap writer)")
        self._schemas: dict[str, int] = {}
        self._channels: dict[int, int] = {}  # rosbags connection id -> mcap channel id
        self._pending_since: float | None = None
        self.flush_s: float | None = None

    def add_msgtype(self, connection: Any) -> None:
        from rosbags.interfaces import MessageDefinitionFormat

        encoding = "ros2msg" if connection.msgdef.format == MessageDefinitionFormat.MSG else "ros2idl"
        self._schemas[connection.msgtype] = self._mcap.register_schema(
            connection.msgtype, encoding, connection.msgdef.data.encode())

    def add_connection(self, connection: Any, offered_qos_profiles: str) -> None:
        self._channels[connection.id] = self._mcap.register_channel(
            connection.topic, connection.ext.serialization_format, self._schemas[connection.msgtype],
            {"offered_qos_profiles": offered_qos_profiles})

    def write(self, connection: Any, timestamp: int, data: bytes | memoryview) -> None:
        self._mcap.add_message(self._channels[connection.id], timestamp, bytes(data), timestamp)
        now = time.monotonic()
        if self._pending_since is None:
            self._pending_since = now
        self.flush_if_due(now)

    def flush_if_due(self, now: float | None = None) -> None:
        """Close the open chunk and flush the file if it is older than ``flush_s``."""
        if self.flush_s is None or self._pending_since is None:
            return
        if (time.monotonic() if now is None else now) - self._pending_since >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        self._mcap.flush()
        self._pending_since = None

    def close(self, version: int, metadata: str) -> None:
        self._mcap.add_metadata("rosbag2", {"serialized_metadata": metadata})
        self._mcap.finish()
        self._file.close()

    def abort(self) -> None:
        self._file.close()


# -- reading records ---------------------------------------------------------------------------------------
class _DamagedError(Exception):
    pass


def _u64(b: bytes | memoryview, o: int) -> int:
    return int(struct.unpack_from("<Q", b, o)[0])


def _u32(b: bytes | memoryview, o: int) -> int:
    return int(struct.unpack_from("<I", b, o)[0])


def _string(b: bytes | memoryview, o: int) -> tuple[str, int]:
    n = _u32(b, o)
    if o + 4 + n > len(b):
        raise _DamagedError("string runs past its record")
    return bytes(b[o + 4:o + 4 + n]).decode("utf-8"), o + 4 + n


@dataclass(frozen=True)
class ChunkHeader:
    start_ns: int
    end_ns: int
    uncompressed_size: int
    crc: int
    compression: str
    data_offset: int  # inside the record body
    data_len: int


def _chunk_header(body: bytes | memoryview) -> ChunkHeader:
    start, end, size, crc = struct.unpack_from("<QQQI", body, 0)
    compression, o = _string(body, 28)
    n = _u64(body, o)
    if o + 8 + n != len(body):
        raise _DamagedError("chunk length fields disagree")
    return ChunkHeader(start, end, size, crc, compression, o + 8, n)


def zstd_decompress(data: bytes) -> bytes:
    """zstd as rosbags does it (``compression.zstd``, Python 3.14, or its ``backports.zstd``)."""
    if sys.version_info >= (3, 14):
        from compression import zstd
    else:
        from backports import zstd
    return bytes(zstd.decompress(data))


def _decompress(h: ChunkHeader, body: bytes | memoryview) -> bytes:
    data = bytes(body[h.data_offset:h.data_offset + h.data_len])
    if h.compression == "":
        out = data
    elif h.compression == "zstd":
        out = zstd_decompress(data)
    elif h.compression == "lz4":
        import lz4.frame

        out = lz4.frame.decompress(data)
    else:
        raise _DamagedError(f"unknown chunk compression {h.compression!r}")
    if len(out) != h.uncompressed_size:
        raise _DamagedError(f"chunk decompresses to {len(out)} bytes, its header says {h.uncompressed_size}")
    return out


def _records(buf: bytes | memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(offset, opcode, body start, body end) of the records in ``buf[start:end]``; _DamagedError on a bad one."""
    o = start
    while o < end:
        if o + 9 > end:
            raise _DamagedError(f"record header at byte {o} cut short")
        op, n = buf[o], _u64(buf, o + 1)
        if op == 0 or op > MAX_OPCODE or o + 9 + n > end:
            raise _DamagedError(f"unreadable record at byte {o}")
        yield o, op, o + 9, o + 9 + n
        o += 9 + n


@dataclass(frozen=True)
class Schema:
    id: int
    name: str
    encoding: str
    data: bytes


@dataclass(frozen=True)
class Channel:
    id: int
    schema_id: int
    topic: str
    encoding: str
    metadata: dict[str, str]


def _schema(body: bytes | memoryview) -> Schema:
    sid = struct.unpack_from("<H", body, 0)[0]
    name, o = _string(body, 2)
    enc, o = _string(body, o)
    n = _u32(body, o)
    return Schema(sid, name, enc, bytes(body[o + 4:o + 4 + n]))


def _channel(body: bytes | memoryview) -> Channel:
    cid, sid = struct.unpack_from("<HH", body, 0)
    topic, o = _string(body, 4)
    enc, o = _string(body, o)
    return Channel(cid, sid, topic, enc, _string_map(body, o))


@dataclass
class Damage:
    start: int  # byte range of the file
    end: int
    what: str
    topics: tuple[str, ...] = ()
    start_ns: int = 0
    end_ns: int = 0

    def describe(self, bag_start_ns: int = 0) -> str:
        where = f"bytes {self.start}-{self.end} ({self.end - self.start} B): {self.what}"
        if self.topics:
            where += f"; messages on {', '.join(self.topics)}"
        if self.start_ns:
            where += f" logged at {self.start_ns * 1e-9:.3f}-{self.end_ns * 1e-9:.3f} s"
            if bag_start_ns:
                where += (f" ({(self.start_ns - bag_start_ns) * 1e-9:.2f}-{(self.end_ns - bag_start_ns) * 1e-9:.2f} s "
                          "into the bag)")
        return where


@dataclass
class Scan:
    """What a pass over an MCAP file found."""

    size: int
    schemas: dict[int, Schema] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    damage: list[Damage] = field(default_factory=list)
    messages: int = 0  # intact messages seen
    chunks: int = 0
    unchecked_chunks: int = 0  # chunks written without a CRC
    complete: bool = False  # has a valid footer (closed cleanly)
    truncated_at: int = 0  # crash-truncated: where the incomplete last record starts
    start_ns: int = 0  # earliest log time seen (chunk headers, summary)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class ChunkIndex:
    start: int  # byte offset of the chunk record
    length: int
    start_ns: int
    end_ns: int
    channel_ids: tuple[int, ...]


def _summary(buf: Any) -> tuple[list[ChunkIndex], dict[int, Channel]]:
    """The chunk indexes and channels of the summary section (empty when there is none, or it is damaged)."""
    if not _has_footer(buf):
        return [], {}
    summary_start = _u64(buf, len(buf) - 28)
    chunks, channels = [], {}
    try:
        for _, op, b, e in _records(buf, summary_start, len(buf) - 37):
            if op == OP_CHUNK_INDEX:
                start_ns, end_ns, start, length = struct.unpack_from("<QQQQ", buf, b)
                n = _u32(buf, b + 32)
                ids = tuple(struct.unpack_from("<H", buf, b + 36 + 10 * i)[0] for i in range(n // 10))
                chunks.append(ChunkIndex(start, length, start_ns, end_ns, ids))
            elif op == OP_CHANNEL:
                c = _channel(memoryview(buf)[b:e])
                channels[c.id] = c
    except (_DamagedError, struct.error, UnicodeDecodeError):
        return [], {}
    return sorted(chunks, key=lambda c: c.start), channels


def _name_damage(scan: Scan, index: list[ChunkIndex], channels: dict[int, Channel]) -> None:
    """Merge touching damaged ranges; name the topics and log times of the chunks they hit (from the summary)."""
    merged: list[Damage] = []
    for d in sorted(scan.damage, key=lambda d: d.start):
        if merged and d.start <= merged[-1].end and d.start > 8:
            last = merged[-1]
            last.end = max(last.end, d.end)
            if d.what not in last.what:
                last.what += f"; {d.what}"
            last.topics = tuple(sorted({*last.topics, *d.topics}))
            last.start_ns = min(x for x in (last.start_ns, d.start_ns) if x) if last.start_ns or d.start_ns else 0
            last.end_ns = max(last.end_ns, d.end_ns)
        else:
            merged.append(d)
    every = {**scan.channels, **channels}
    for d in merged:
        hit = [c for c in index if c.start < d.end and c.start + c.length > d.start]
        if hit and d.start > 8:  # (a data-section CRC mismatch spans everything: nothing specific to name)
            d.topics = tuple(sorted({*d.topics, *(every[i].topic for c in hit for i in c.channel_ids if i in every)}))
            d.start_ns = min(c.start_ns for c in hit)
            d.end_ns = max(c.end_ns for c in hit)
    scan.damage = merged
    starts = [c.start_ns for c in index] + [d.start_ns for d in merged if d.start_ns] + [scan.start_ns or 2**63]
    scan.start_ns = min(starts) if min(starts) < 2**63 else 0


def _chunk_topics(buf: Any, after: int, channels: dict[int, Channel]) -> tuple[str, ...]:
    """Topics of a chunk, from the message index records that follow it (when they are intact)."""
    ids = []
    try:
        for _, op, b, _ in _records(buf, after, len(buf)):
            if op != OP_MESSAGE_INDEX:
                break
            ids.append(struct.unpack_from("<H", buf, b)[0])
    except _DamagedError:
        pass
    return tuple(sorted({channels[i].topic if i in channels else f"channel {i}" for i in ids}))


def _map(path: Path) -> Any:
    """The file's bytes, memory-mapped (bags can be larger than memory)."""
    import mmap

    with path.open("rb") as f:
        if path.stat().st_size == 0:
            return b""
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def _has_footer(buf: Any) -> bool:
    return len(buf) >= 8 + 37 + 8 and buf[-8:] == MAGIC and buf[-37] == OP_FOOTER


def scan_mcap(path: Path, on_message: Any = None) -> Scan:
    """Walk ``path``: every record's framing, every chunk's CRC, the data-section and summary CRCs.

    ``on_message(channel, schema, log_ns, publish_ns, data)`` gets every message of every intact chunk (and
    unchunked message), in file order. A file cut short by a crash (no footer, last record incomplete)
    is not damage: ``complete`` is False and ``truncated_at`` says where its last complete record ends."""
    buf = _map(path)
    scan = Scan(len(buf))
    if buf[:8] != MAGIC:
        scan.damage.append(Damage(0, min(8, len(buf)), "not an MCAP file (bad magic)"))
        return scan
    footer = _has_footer(buf)
    index, summary_channels = _summary(buf)
    resync = [c.start for c in index]
    view = memoryview(buf)
    o = 8
    while o < len(buf):
        op, n = (buf[o], _u64(buf, o + 1)) if o + 9 <= len(buf) else (0, 0)
        if not footer and (o + 9 > len(buf) or o + 9 + n > len(buf)):
            scan.truncated_at = o  # the recorder died while writing this record
            break
        try:
            if op == 0 or op > MAX_OPCODE or o + 9 + n > len(buf):
                raise _DamagedError("unreadable records")
            body = view[o + 9:o + 9 + n]
            if op == OP_CHUNK:
                scan.chunks += 1
                bad = _chunk(scan, buf, o, body, on_message)
                if bad is not None:
                    scan.damage.append(bad)
            elif op in (OP_MESSAGE, OP_SCHEMA, OP_CHANNEL):
                _emit(scan, view[o:o + 9 + n], on_message)
            elif op == OP_METADATA:
                name, p = _string(body, 0)
                scan.metadata[name] = _string_map(body, p)
            elif op == OP_DATA_END:
                stored = _u32(body, 0)
                if stored and not scan.damage and zlib.crc32(view[:o]) != stored:
                    scan.damage.append(Damage(8, o, f"data section CRC mismatch (stored 0x{stored:08x}, "
                                              f"data 0x{zlib.crc32(view[:o]):08x})"))
            elif op == OP_FOOTER:
                summary_start, _, stored = struct.unpack_from("<QQI", body, 0)
                got = zlib.crc32(view[summary_start:o + 9 + 16]) if summary_start else 0
                if stored and got != stored:
                    scan.damage.append(Damage(summary_start, o + 9 + n,
                                              f"summary CRC mismatch (stored 0x{stored:08x}, data 0x{got:08x})"))
                scan.complete = buf[o + 9 + n:] == MAGIC
                break
            o += 9 + n
        except (_DamagedError, struct.error, UnicodeDecodeError) as e:
            nxt = next((s for s in resync if s > o), len(buf))
            scan.damage.append(Damage(o, nxt, str(e) if isinstance(e, _DamagedError) else f"unreadable record ({e})"))
            o = nxt
    _name_damage(scan, index, summary_channels)
    return scan


def _string_map(body: bytes | memoryview, o: int) -> dict[str, str]:
    end = o + 4 + _u32(body, o)
    o += 4
    out = {}
    while o < end:
        k, o = _string(body, o)
        v, o = _string(body, o)
        out[k] = v
    return out


def _emit(scan: Scan, records: bytes | memoryview, on_message: Any) -> None:
    """Schemas and channels of ``records`` into ``scan``; then, if all are intact, its messages."""
    msgs = []
    for _, op, b, e in _records(records, 0, len(records)):
        if op == OP_SCHEMA:
            s = _schema(records[b:e])
            scan.schemas.setdefault(s.id, s)
        elif op == OP_CHANNEL:
            c = _channel(records[b:e])
            scan.channels.setdefault(c.id, c)
        elif op == OP_MESSAGE:
            cid, _, log_ns, pub_ns = struct.unpack_from("<HIQQ", records, b)
            if cid not in scan.channels:
                raise _DamagedError(f"message on unknown channel {cid}")
            channel = scan.channels[cid]
            msgs.append((channel, scan.schemas.get(channel.schema_id), log_ns, pub_ns, bytes(records[b + 22:e])))
    scan.messages += len(msgs)
    if on_message is not None:
        for m in msgs:
            on_message(*m)


def _chunk(scan: Scan, buf: Any, o: int, body: memoryview, on_message: Any) -> Damage | None:
    """Check one chunk record at ``o``; its messages go to ``on_message`` only if it is intact."""
    h = _chunk_header(body)
    end = o + 9 + len(body)
    if h.start_ns and (not scan.start_ns or h.start_ns < scan.start_ns):
        scan.start_ns = h.start_ns
    try:
        data = _decompress(h, body)
    except _DamagedError:
        raise
    except Exception as e:  # the compressor's own errors on damaged data
        raise _DamagedError(f"chunk does not decompress ({type(e).__name__}: {e})") from e
    if h.crc == 0:
        scan.unchecked_chunks += 1
    elif zlib.crc32(data) != h.crc:
        return Damage(o, end, f"chunk CRC mismatch (stored 0x{h.crc:08x}, data 0x{zlib.crc32(data):08x})",
                      _chunk_topics(buf, end, scan.channels), h.start_ns, h.end_ns)
    try:
        _emit(scan, data, on_message)
    except (_DamagedError, struct.error, UnicodeDecodeError) as e:
        return Damage(o, end, f"chunk records unreadable ({e})", _chunk_topics(buf, end, scan.channels),
                      h.start_ns, h.end_ns)
    return None


