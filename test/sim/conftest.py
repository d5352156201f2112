"""Shared small renders for the sim tests (rendered once per session)."""

from __future__ import annotations

import pytest

from perception.core.types import Frame
from perception.sim.config import SimConfig
from perception.sim.drive import generate_sequence

SMALL = SimConfig(width=160, height=96)
MEDIUM = SimConfig(width=320, height=192)


@pytest.fixture(scope="session")
def small_seq() -> list[Frame]:
    """40 frames of seed 0 at 160x96."""
    return list(generate_sequence(0, 40, SMALL))


@pytest.fixture(scope="session")
def medium_seq() -> list[Frame]:
    """The default 60-frame sequence of seed 0 at 320x192."""
    return list(generate_sequence(0, 60, MEDIUM))
