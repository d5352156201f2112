"""Shared fixtures for deploy tests (export, quantisation, engines): one thread, fixed seed."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _torch_setup() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
