"""Bag discovery, content hashes, cache keys, aggregation and the regression check (no workers)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from perception.fleet import FleetError
from perception.fleet.aggregate import bag_row, fleet_summary, regressions, worst_first
from perception.fleet.bags import bag_hash, discover_bags, synthetic_bags
from perception.fleet.config import FleetConfig, cache_key


def test_bags_are_found_by_folder_glob_and_list_file_each_once(fleet_bags: list[Path], tmp_path: Path) -> None:
    root = fleet_bags[0].parent
    assert discover_bags([str(root)]) == [b.resolve() for b in fleet_bags]
    assert discover_bags([str(root / "drive_2[23]")]) == [b.resolve() for b in fleet_bags[1:]]
    listing = tmp_path / "bags.txt"
    listing.write_text(f"# two bags\n{fleet_bags[2]}\n{fleet_bags[0]}\n\n{fleet_bags[0]}\n", encoding="utf-8")
    assert discover_bags([str(listing), str(fleet_bags[2])]) == [fleet_bags[2].resolve(), fleet_bags[0].resolve()]
    with pytest.raises(FleetError, match="no rosbag2 bag"):
        discover_bags([str(tmp_path / "*.nothing")])


def test_cache_key_follows_bag_content_model_and_scoring_not_threads(fleet_bags: list[Path]) -> None:
    cfg = FleetConfig(untrained="stan_tiny")
    a, b = bag_hash(fleet_bags[0]), bag_hash(fleet_bags[1])
    assert a == bag_hash(fleet_bags[0]) and a != b
    key = cache_key(a, cfg.model_sha(), cfg)
    assert key != cache_key(b, cfg.model_sha(), cfg)
    assert key != cache_key(a, replace(cfg, model_seed=1).model_sha(), cfg)
    assert key != cache_key(a, cfg.model_sha(), replace(cfg, score_thresh=0.5))
    assert key == cache_key(a, cfg.model_sha(), replace(cfg, threads=2, retries=3))


def _row(name: str, map50: float | None, miou: float | None, frames: int = 10, flicker: float = 0.1) -> dict:
    result = {"metrics": {"summary": {"mAP50": map50, "mIoU": miou, "flicker": flicker},
                          "latency_ms": {"p50": 5.0, "p95": 9.0, "frames": frames},
                          "coverage": {"scored": frames}}, "seconds": 1.0}
    return bag_row(name, result)


def test_worst_bags_first_failed_before_all_and_frame_weighted_fleet_means() -> None:
    rows = [_row("good", 0.9, 0.8, frames=30), _row("bad", 0.2, 0.4, frames=10), bag_row("dead", None, "boom")]
    ordered = worst_first(rows)
    assert [r["bag"] for r in ordered] == ["dead", "bad", "good"]
    fleet = fleet_summary(ordered)
    assert (fleet["bags"], fleet["ok"], fleet["failed"], fleet["frames"]) == (3, 2, 1, 40)
    assert math.isclose(fleet["mAP50"], (0.9 * 30 + 0.2 * 10) / 40)
    assert fleet["mAP50_worst"] == 0.2 and fleet["flicker_worst"] == 0.1


def test_regressions_name_the_bags_that_got_worse_or_failed() -> None:
    base_rows = [_row("a", 0.8, 0.8), _row("b", 0.8, 0.8), _row("c", 0.8, 0.8)]
    baseline = {"bags": base_rows, "fleet": fleet_summary(base_rows)}
    now = [_row("a", 0.79, 0.8), _row("b", 0.7, 0.8, flicker=0.3), bag_row("c", None, "crash")]
    found = regressions(now, fleet_summary(now), baseline, tolerance=0.02)
    named = {(r["bag"], r["metric"]) for r in found}
    assert ("a", "mAP50") not in named  # inside the tolerance
    assert {("b", "mAP50"), ("b", "flicker"), ("c", "status"), ("*fleet*", "mAP50")} <= named
    assert not regressions(base_rows, fleet_summary(base_rows), baseline, tolerance=0.02)


def test_synthetic_spec_renders_the_built_in_drives_once(tmp_path: Path) -> None:
    bags = synthetic_bags("synthetic:3:5", tmp_path, 2, 160, 96)
    assert [b.name for b in bags] == ["drive_3_2f_160x96", "drive_4_2f_160x96"]
    assert discover_bags([str(tmp_path)]) == [b.resolve() for b in bags]
    stamp = (bags[0] / "metadata.yaml").stat().st_mtime_ns
    (bags[1] / "metadata.yaml").unlink()  # an interrupted render: done again
    again = synthetic_bags("synthetic:3:5", tmp_path, 2, 160, 96)
    assert again == bags and (bags[0] / "metadata.yaml").stat().st_mtime_ns == stamp
    assert (bags[1] / "metadata.yaml").is_file()
    with pytest.raises(FleetError, match="FIRST:LAST"):
        synthetic_bags("synthetic:3", tmp_path, 2, 160, 96)


def test_hash_memo_skips_unchanged_bags_and_rehashes_changed_ones(fleet_bags: list[Path], tmp_path: Path) -> None:
    import shutil

    from perception.fleet.bags import HashMemo

    bag = tmp_path / "bag"
    shutil.copytree(fleet_bags[0], bag)
    memo = HashMemo(tmp_path / "hashes.json")
    first = memo.bag_hash(bag)
    memo.save()
    again = HashMemo(tmp_path / "hashes.json")
    assert again.known[str(bag.resolve())]["sha256"] == first == again.bag_hash(bag)
    mcap = next(bag.glob("*.mcap"))
    data = bytearray(mcap.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, new content (and mtime)
    mcap.write_bytes(bytes(data))
    assert again.bag_hash(bag) == bag_hash(bag) != first
