"""Small drive bags for the bag tests, written once per session (mcap and sqlite3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bag_testing import SMALL


@pytest.fixture(scope="session")
def drive_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 frames of seed 7 at 160x96 with LiDAR, raw and compressed images, mcap."""
    from perception.bag.drive import write_drive_bag
    from perception.sim.drive import generate_sequence

    out = tmp_path_factory.mktemp("bags") / "drive_mcap"
    write_drive_bag(out, generate_sequence(7, 6, SMALL), compressed=True)
    return out
