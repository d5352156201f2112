"""Session-wide test settings shared by every test package."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def perception_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """On-demand ONNX exports and engines go to a session temp dir (inherited by node subprocesses),
    never into the user's ~/.cache/perception."""
    path = tmp_path_factory.mktemp("perception_cache")
    old = os.environ.get("PERCEPTION_CACHE")
    os.environ["PERCEPTION_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("PERCEPTION_CACHE", None)
    else:
        os.environ["PERCEPTION_CACHE"] = old
