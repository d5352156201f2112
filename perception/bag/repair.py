"""``perception bag repair DIR`` / ``perception bag verify DIR``: rosbag2 MCAP bags after a crash or damage.

A recorder killed mid-write (SIGKILL, power loss) leaves an MCAP file with no summary and no
metadata.yaml: rosbags and ``perception eval`` cannot open it. ``repair`` stream-reads the file,
keeps every complete message of every intact chunk (CRC checked), and rewrites a valid file plus
metadata.yaml in place; the original is kept next to it as ``<file>.orig`` (``--no-backup``: not
kept). A damaged but complete bag is repaired the same way, its damaged chunks left out.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perception.bag import BagError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True)
class RepairReport:
    path: Path
    messages: int
    topics: dict[str, int]
    damaged: tuple[str, ...]
    was_complete: bool
    dropped_bytes: int  # an incomplete record at the end (the write the crash interrupted)
    backup: Path | None

    def summary(self) -> str:
        text = (f"repaired {self.path}: {self.messages} messages on {len(self.topics)} topics kept ("
                + ", ".join(f"{t} {n}" for t, n in sorted(self.topics.items())) + ")")
        if not self.was_complete:
            text += "; the file had no summary (recording cut short)" + (
                f", {self.dropped_bytes} B incomplete at its end" if self.dropped_bytes else "")
        if self.damaged:
            text += "; left out damaged: " + "; ".join(self.damaged)
        return text + (f"; original kept as {self.backup}" if self.backup else "")


def _mcap_file(path: Path) -> Path:
    if not path.is_dir():
        raise BagError(f"{path} is not a bag directory")
    files = sorted(path.glob("*.mcap"))
    if not files:
        extra = " (sqlite3 bags are repaired by sqlite3 itself: `.recover`)" if any(path.glob("*.db3")) else ""
        raise BagError(f"bag {path} holds no .mcap file{extra}")
    if len(files) > 1:
        raise BagError(f"bag {path} holds {len(files)} .mcap files: repair one bag file at a time")
    return files[0]


def _store_for(msgtype: str, schema: Any) -> Any:
    """Our typestore if it knows ``msgtype``, else one built from the file's own message definition."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    from perception.bag.typestore import typestore

    if msgtype in typestore().fielddefs:
        return typestore()
    if schema is None or schema.encoding != "ros2msg":
        raise BagError(f"message type {msgtype} is unknown and the file holds no ros2msg definition for it")
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg(schema.data.decode("utf-8"), msgtype))
    return store


def repair_bag(path: str | Path, backup: bool = True) -> RepairReport:
    """Rewrite the bag at ``path`` from every complete, intact message of its MCAP file (see module doc)."""
    from perception.bag.io import BagWriter
    from perception.bag.mcap_storage import scan_mcap, zstd_decompress

    path = Path(path)
    src = _mcap_file(path)
    tmp = Path(tempfile.mkdtemp(prefix=".repair_", dir=path.parent))
    try:
        out_dir = tmp / src.stem  # BagWriter names its file <dir>/<dir name>.mcap: the original's name
        writer: BagWriter | None = None
        stores: dict[str, Any] = {}
        compressed = {"yes": False}

        def on_message(channel: Any, schema: Any, log_ns: int, _pub_ns: int, data: bytes) -> None:
            nonlocal writer
            if writer is None:  # per-message zstd (rosbag2 compression_mode message): keep it
                compressed["yes"] = data[:4] == ZSTD_MAGIC
                writer = BagWriter(out_dir, compress=compressed["yes"])
            msgtype = schema.name if schema is not None else ""
            if channel.topic not in stores:
                stores[channel.topic] = _store_for(msgtype, schema)
                writer.add_topic(channel.topic, msgtype, stores[channel.topic])
            if compressed["yes"] and data[:4] == ZSTD_MAGIC:
                data = zstd_decompress(data)
            writer.write_raw(channel.topic, msgtype, log_ns, data)

        scan = scan_mcap(src, on_message)
        if writer is None:
            raise BagError(f"bag {path}: no complete message in {src.name} to recover")
        writer.close()
        counts = dict(writer.counts)
        kept = None
        if backup:
            kept = src.with_name(src.name + ".orig")
            if kept.exists():
                raise BagError(f"{kept} exists (an earlier repair's backup): move it away or use --no-backup")
            src.rename(kept)
        shutil.move(str(out_dir / src.name), str(src))
        shutil.move(str(out_dir / "metadata.yaml"), str(path / "metadata.yaml"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    damaged = tuple(d.describe(scan.start_ns) for d in scan.damage)
    return RepairReport(path, sum(counts.values()), counts, damaged, scan.complete,
                        scan.size - scan.truncated_at if scan.truncated_at else 0, kept)


# -- CLI: perception bag repair|verify -------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    r = sub.add_parser("repair", help="rebuild a crash-truncated or damaged MCAP bag's summary and metadata.yaml")
    r.add_argument("bag", type=Path, help="rosbag2 bag directory")
    r.add_argument("--no-backup", action="store_true", help="do not keep the original file as <file>.orig")
    v = sub.add_parser("verify", help="check every CRC and record of a bag's MCAP file; exit 1 if damaged")
    v.add_argument("bag", type=Path, help="rosbag2 bag directory")


def main(args: argparse.Namespace) -> int:
    from perception.bag.io import open_bag

    try:
        if args.action == "repair":
            print(repair_bag(args.bag, backup=not args.no_backup).summary())
            return 0
        info = open_bag(args.bag)
        print(f"bag {args.bag} is intact: {sum(info.counts.values())} messages on {len(info.topics)} topics")
        return 0
    except BagError as e:
        print(f"perception bag: error: {e}", file=sys.stderr)
        return 1 if args.action == "verify" else 2
