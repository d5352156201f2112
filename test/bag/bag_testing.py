"""Shared constants of the bag tests."""

from __future__ import annotations

from pathlib import Path

from perception.sim.config import SimConfig

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
SMALL = SimConfig(width=160, height=96, lidar=True)
