from __future__ import annotations

import json

import pytest

from perception.sim.config import SimConfig, SimError


def test_roundtrip_through_json() -> None:
    cfg = SimConfig(width=320, height=192, num_lanes=3, lidar=True, ego_speed=(5.0, 7.0))
    d = json.loads(json.dumps(cfg.to_dict()))
    assert SimConfig.from_dict(d) == cfg
    assert isinstance(SimConfig.from_dict(d).ego_speed, tuple)


def test_unknown_key_is_rejected_with_the_known_keys() -> None:
    with pytest.raises(SimError, match="known keys"):
        SimConfig.from_dict({"widht": 10})


@pytest.mark.parametrize(
    "bad", [{"width": 8}, {"num_lanes": 5}, {"hfov_deg": 200.0}, {"ego_speed": (5.0, 1.0)}, {"fps": 0.0}]
)
def test_invalid_values_raise(bad: dict[str, object]) -> None:
    with pytest.raises(SimError):
        SimConfig.from_dict(bad)


def test_intrinsics_follow_fov() -> None:
    intr = SimConfig(width=640, height=384, hfov_deg=90.0).intrinsics
    assert intr.fx == pytest.approx(320.0)
    assert (intr.cx, intr.cy) == (320.0, 192.0)
