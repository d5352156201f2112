from __future__ import annotations

import numpy as np
import pytest

from perception.core.classes import NUM_SEMANTIC, semantic_id
from perception.sim.config import SimConfig, SimError
from perception.sim.world import CROSS, agent_states, build_world, camera_pose

CFG = SimConfig(width=160, height=96, world_length_m=500.0)


def test_world_is_deterministic_and_seed_dependent() -> None:
    a, b, c = build_world(3, CFG), build_world(3, CFG), build_world(4, CFG)
    assert np.array_equal(a.static.vertices, b.static.vertices)
    assert np.array_equal(a.agents.s0, b.agents.s0)
    assert a.ego == b.ego
    assert a.static.vertices.shape != c.static.vertices.shape or not np.array_equal(
        a.static.vertices, c.static.vertices
    )


def test_static_mesh_attributes_are_consistent() -> None:
    w = build_world(1, CFG)
    m = w.static
    assert m.triangles.max() < len(m.vertices)
    assert len(m.semantic) == len(m.color) == len(m.material) == m.num_triangles
    assert m.semantic.max() < NUM_SEMANTIC
    present = set(np.unique(m.semantic).tolist())
    for name in ("road", "lane_marking", "sidewalk", "building", "vegetation", "terrain", "pole"):
        assert semantic_id(name) in present, name
    assert (m.instance == 0).all()  # things are agents, not static geometry


@pytest.mark.parametrize("lanes", [2, 3, 4])
def test_lane_count_is_honoured(lanes: int) -> None:
    w = build_world(0, CFG.replace(num_lanes=lanes))
    assert w.road.num_lanes == lanes
    assert w.road.is_forward(w.ego.lane)  # ego drives with the traffic (right-hand)


def test_crossing_pedestrians_clear_the_ego_lane_before_the_ego_arrives() -> None:
    w = build_world(0, SimConfig())
    cross = np.flatnonzero(w.agents.kind == CROSS)
    assert len(cross) > 0
    for t in np.arange(0.0, min(w.max_time, 60.0), 0.1):
        st = agent_states(w, float(t), cross)
        ego_s = w.ego.s_at(float(t))
        d = w.road.lane_center(w.ego.lane)
        # in road coordinates: a pedestrian inside the ego corridor must not be where the ego is
        frac = np.clip((t - w.agents.t0[cross]) / (w.agents.t1[cross] - w.agents.t0[cross]), 0, 1)
        dd = w.agents.d0[cross] + (w.agents.d1[cross] - w.agents.d0[cross]) * frac
        inside = np.abs(dd - d) < 1.2
        near_ego = np.abs(st.s - ego_s - 1.0) < 3.0
        assert not np.any(inside & near_ego), f"pedestrian in the ego's path at t={t:.1f}"


def test_camera_pose_is_a_rigid_transform_looking_along_the_road() -> None:
    w = build_world(0, CFG)
    T = camera_pose(w, 1.0)
    R = T[:3, :3]
    assert np.allclose(R @ R.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(R) == pytest.approx(1.0)
    heading = w.road.heading_at(w.ego.s_at(1.0))
    fwd = R[:, 2]  # optical z axis in the world
    assert fwd @ np.array([np.cos(heading), np.sin(heading), 0.0]) > 0.99
    assert T[2, 3] == pytest.approx(CFG.cam_height, abs=0.05)


def test_driving_past_the_end_of_the_world_raises() -> None:
    w = build_world(0, CFG)
    with pytest.raises(SimError, match="world_length_m"):
        camera_pose(w, w.max_time + 1.0)
