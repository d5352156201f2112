"""Which bags a fleet run evaluates, and what identifies a bag's content."""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perception.fleet import FleetError

STORAGE_SUFFIXES = (".mcap", ".db3")


def is_bag(path: Path) -> bool:
    """A rosbag2 directory (metadata.yaml or a storage file inside) or a single storage file."""
    if path.is_dir():
        return (path / "metadata.yaml").is_file() or any(p.suffix in STORAGE_SUFFIXES for p in path.iterdir())
    return path.is_file() and path.suffix in STORAGE_SUFFIXES


def _expand(spec: str) -> list[Path]:
    path = Path(spec)
    if any(c in spec for c in "*?["):
        found = [Path(p) for p in sorted(glob.glob(spec, recursive=True))]
        return [p for p in found if is_bag(p)]
    if path.is_dir() and not is_bag(path):  # a folder of bags: every bag at any depth, not descending into bags
        out: list[Path] = []
        for child in sorted(path.iterdir()):
            if is_bag(child):
                out.append(child)
            elif child.is_dir():
                out.extend(_expand(str(child)))
        return out
    if path.is_file() and path.suffix not in STORAGE_SUFFIXES:  # a list file: one bag (or glob) per line
        lines = [ln.split("#", 1)[0].strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        out = []
        for ln in lines:
            if ln:
                entry = ln if Path(ln).is_absolute() or any(c in ln for c in "*?[") else str(path.parent / ln)
                out.extend(_expand(entry))
        return out
    if is_bag(path):
        return [path]
    raise FleetError(f"{spec}: not a bag, a folder of bags, a glob or a list file (one bag per line)")


def discover_bags(specs: Sequence[str]) -> list[Path]:
    """Every bag named by ``specs`` (bag paths, folders of bags, globs, list files), each once, in order."""
    seen: dict[Path, None] = {}
    for spec in specs:
        for p in _expand(spec):
            seen.setdefault(p.resolve(), None)
    if not seen:
        raise FleetError(f"no rosbag2 bag found in {', '.join(specs)} (a bag is a folder with metadata.yaml or an "
                         f"{'/'.join(STORAGE_SUFFIXES)} file); record drives with `perception sim --bag`")
    return list(seen)


def bag_files(path: Path) -> list[Path]:
    """The files whose bytes make up a bag (metadata.yaml excluded: it is rewritten by tools)."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix in STORAGE_SUFFIXES)


def file_stamp(path: Path) -> list[list[Any]]:
    """(name, size, mtime ns) of each storage file: what a memoised hash is valid for."""
    return [[f.name, (st := f.stat()).st_size, st.st_mtime_ns] for f in bag_files(path)]


class HashMemo:
    """Bag hashes remembered by path and file stamps in one JSON file, so a re-run of a large fleet does not
    read every bag again just to find it in the result cache; a changed file (size or mtime) is hashed again."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.known: dict[str, Any] = {}
        if path is not None:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                self.known = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self.known = {}

    def bag_hash(self, bag: Path) -> str:
        key, stamp = str(bag.resolve()), file_stamp(bag)
        entry = self.known.get(key)
        if isinstance(entry, dict) and entry.get("files") == stamp:
            return str(entry["sha256"])
        sha = bag_hash(bag)
        self.known[key] = {"files": stamp, "sha256": sha}
        return sha

    def save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.known) + "\n", encoding="utf-8")
            tmp.replace(self.path)


def bag_hash(path: Path) -> str:
    """sha256 over the bag's storage files (names and bytes): the same recording gives the same hash."""
    h = hashlib.sha256()
    for f in bag_files(path):
        h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


SYNTHETIC = "synthetic:"


def synthetic_bags(spec: str, root: Path, frames: int, width: int, height: int, progress: bool = False) -> list[Path]:
    """``synthetic:FIRST:LAST``: the built-in synthetic drives of seeds FIRST..LAST-1 as bags under ``root``
    (``drive_<seed>_<frames>f_<W>x<H>``), rendered once (``perception sim --bag`` would write the same bag)."""
    from perception.sim.config import SimConfig
    from perception.sim.drive import render_drive_bag

    try:
        first, last = (int(x) for x in spec.removeprefix(SYNTHETIC).split(":"))
    except ValueError as e:
        raise FleetError(f"{spec!r}: write synthetic:FIRST:LAST (seeds, LAST exclusive), e.g. synthetic:1000:1008") \
            from e
    if last <= first:
        raise FleetError(f"{spec!r}: no seeds (LAST must be greater than FIRST)")
    out = []
    for seed in range(first, last):
        bag = root / f"drive_{seed}_{frames}f_{width}x{height}"
        if not (bag / "metadata.yaml").is_file():  # written last: without it, an interrupted render
            if bag.exists():
                import shutil

                shutil.rmtree(bag)
            render_drive_bag(bag, seed, frames, SimConfig(width=width, height=height), progress=progress)
        out.append(bag)
    return out
