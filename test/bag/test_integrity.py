"""Bag integrity: MCAP files carry CRCs, a damaged bag is refused naming the damaged range, and a
recorder killed with SIGKILL leaves a file that ``perception bag repair`` makes readable again."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perception.bag import BagError
from perception.bag.io import open_bag, read_messages
from perception.bag.mcap_storage import scan_mcap
from perception.bag.repair import repair_bag
from perception.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_damaged_bag_is_refused_naming_the_damaged_range(tmp_path: Path, drive_bag: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    scan = scan_mcap(next(drive_bag.glob("*.mcap")))
    assert scan.chunks and scan.unchecked_chunks == 0 and not scan.damage  # every chunk written with its CRC
    assert main(["bag", "verify", str(drive_bag)]) == 0
    bag = tmp_path / "damaged"
    shutil.copytree(drive_bag, bag)
    f = next(bag.glob("*.mcap"))
    data = bytearray(f.read_bytes())
    mid, n = len(data) // 2, len(data) // 8
    data[mid:mid + n] = random.Random(0).randbytes(n)  # overwritten in the middle, the size unchanged
    f.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["replay", str(bag), "--no-node"]) == 2
    assert main(["eval", "--bag", str(bag), "--gt", str(bag), "--out", str(tmp_path / "eval")]) == 2
    assert main(["bag", "verify", str(bag)]) == 1
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 3
    for line in errors:
        assert "is damaged" in line and "CRC mismatch" in line and "/camera/image_raw" in line, line
        start, end = (int(x) for x in line.split(" bytes ")[1].split(" ")[0].split("-"))
        assert start <= mid and end >= mid + n, line  # the range named covers the damage
    with pytest.raises(BagError, match="CRC mismatch"):
        list(read_messages(bag))
    assert len(list(read_messages(drive_bag))) == sum(open_bag(drive_bag).counts.values())  # intact: read


WRITER = """
import sys, time
from perception.bag import messages as m
from perception.bag.io import BagWriter
from perception.ros.tools.replay import RECORD_FLUSH_S
w = BagWriter(sys.argv[1], flush_s=RECORD_FLUSH_S)  # as perception replay records
for i in range(100_000):
    w.write("/camera/events", m.header(i, "x" * 2000), 1_000_000_000 + i)
    print(i + 1, flush=True)
    time.sleep(0.01)
"""


def test_bag_killed_mid_write_is_repaired_with_its_messages(tmp_path: Path) -> None:
    """SIGKILL a recorder writing ~100 messages/s: repair keeps >= 95 % of what it had written, in order."""
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if int(line) >= 250:
                break
        time.sleep(random.Random(1).uniform(0.0, 0.3))  # a point in a flush period
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
    written = int(rest.split()[-1]) if rest.split() else int(line)  # the writer prints after each write
    with pytest.raises(BagError, match=r"bag repair"):
        open_bag(out)
    report = repair_bag(out)
    got = [log_ns - 1_000_000_000 for _, _, log_ns, _ in read_messages(out)]
    print(f"killed after {written} messages; repaired bag holds {len(got)} ({100 * len(got) / written:.1f} %)")
    assert got == list(range(len(got))) and report.messages == len(got)  # the first ones, in order, none twice
    assert len(got) >= 0.95 * written, (len(got), written)
    assert main(["bag", "verify", str(out)]) == 0


def test_repair_keeps_per_message_compression(tmp_path: Path) -> None:
    """A cut zstd-per-message bag: the complete messages come back, decompressed as before the crash."""
    from perception.bag import messages as m
    from perception.bag.io import BagWriter

    bag = tmp_path / "zstd"
    with BagWriter(bag, compress=True, flush_s=0.0) as w:  # flush_s 0: a chunk per message
        for i in range(20):
            w.write("/x", m.header(i, f"frame {i} " * 200), 1_000 + i)
    whole = list(read_messages(bag))
    f = next(bag.glob("*.mcap"))
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    (bag / "metadata.yaml").unlink()
    assert repair_bag(bag, backup=False).messages > 0
    got = list(read_messages(bag))
    assert got and got == whole[: len(got)]
