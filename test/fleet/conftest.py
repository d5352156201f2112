"""Tiny drive bags for the fleet tests (160x96, 3 frames), written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = {"untrained": "stan_tiny", "input_size": (96, 160)}


@pytest.fixture(scope="session")
def fleet_bags(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three drive bags (seeds 21..23) in one folder, ``drives/drive_<seed>``."""
    from perception.sim.config import SimConfig
    from perception.sim.drive import render_drive_bag

    root = tmp_path_factory.mktemp("fleet") / "drives"
    out = []
    for seed in (21, 22, 23):
        render_drive_bag(root / f"drive_{seed}", seed, 3, SimConfig(width=160, height=96))
        out.append(root / f"drive_{seed}")
    return out


@pytest.fixture()
def corrupt_bag(tmp_path: Path, fleet_bags: list[Path]) -> Path:
    """A copy of the first bag with its storage file cut in half (CRC / structure check fails)."""
    import shutil

    bag = tmp_path / "corrupt" / "drive_bad"
    shutil.copytree(fleet_bags[0], bag)
    mcap = next(bag.glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) // 2])
    return bag
