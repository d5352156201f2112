"""Domain randomisation: deterministic, off by default, and the ground truth stays exact under it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from perception.core.classes import DETECTION_TO_SEMANTIC, IGNORE_INDEX, NUM_SEMANTIC, semantic_id
from perception.core.types import CameraIntrinsics, Frame
from perception.sim.config import DomainRandomization, SimConfig, SimError
from perception.sim.drive import frame_at, generate_sequence, get_world
from perception.sim.render import box_corners
from perception.sim.world import agent_states, build_world

SMALL = SimConfig(width=160, height=96)  # as in conftest.py
FULL = SMALL.replace(randomize=dataclasses.replace(DomainRandomization.full(), distractors=25.0))
FRAMES = (0, 9, 18, 27)


@pytest.fixture(scope="module")
def dr_frames() -> dict[int, list[Frame]]:
    """Frames of seeds 0..2 under every randomisation at full strength."""
    return {seed: [frame_at(get_world(seed, FULL), i)[0] for i in FRAMES] for seed in range(3)}


def test_config_roundtrip_and_default_off() -> None:
    assert not SimConfig().randomize.enabled
    assert "randomize" not in SimConfig().to_dict()  # default configs serialise as before
    d = json.loads(json.dumps(FULL.to_dict()))
    assert SimConfig.from_dict(d) == FULL and d["randomize"]["distractors"] == 25.0
    assert SimConfig.from_dict({"randomize": True}).randomize == DomainRandomization.full()
    assert SimConfig.from_dict({"randomize": {"textures": 0.5}}).randomize.textures == 0.5
    with pytest.raises(SimError, match="known keys"):
        SimConfig.from_dict({"randomize": {"texture": 1.0}})
    with pytest.raises(SimError, match=r"0\.\.1"):
        DomainRandomization(lighting=1.5)
    with pytest.raises(SimError, match="min <= max"):
        DomainRandomization(hfov_deg=(100.0, 60.0))


def test_same_seed_same_pixels_and_different_seeds_differ(dr_frames: dict[int, list[Frame]]) -> None:
    again = frame_at(build_world(1, FULL), FRAMES[2])[0]  # a freshly built world, not the cached one
    ref = dr_frames[1][2]
    for k in ("rgb", "semantic", "instance", "depth", "world_T_cam"):
        assert np.array_equal(getattr(again, k), getattr(ref, k)), k
    assert np.array_equal(again.gt.boxes, ref.gt.boxes) and np.array_equal(again.gt.boxes3d, ref.gt.boxes3d)
    assert again.intrinsics == ref.intrinsics
    worlds = [get_world(s, FULL) for s in range(3)]
    assert len({w.camera for w in worlds}) == 3 and len({float(w.light.exposure) for w in worlds}) == 3


def test_appearance_effects_change_pixels_only(small_seq: list[Frame]) -> None:
    """Textures, lighting and sensor effects leave every ground-truth array as without them."""
    cfg = SMALL.replace(randomize=DomainRandomization(textures=1.0, lighting=1.0, sensor=1.0))
    for f in generate_sequence(0, 2, cfg, start_frame=10):
        base = small_seq[f.index]
        assert np.abs(f.rgb.astype(int) - base.rgb.astype(int)).mean() > 10
        for k in ("semantic", "instance", "depth", "world_T_cam"):
            assert np.array_equal(getattr(f, k), getattr(base, k)), k
        for k in ("boxes", "class_ids", "track_ids", "visibility", "ignore", "amodal_boxes", "boxes3d"):
            assert np.array_equal(getattr(f.gt, k), getattr(base.gt, k)), k


def test_each_effect_has_its_own_random_stream() -> None:
    a = get_world(2, SMALL.replace(randomize=DomainRandomization(camera=1.0)))
    b = get_world(2, SMALL.replace(randomize=DomainRandomization(camera=1.0, textures=1.0, lighting=0.5)))
    assert a.camera == b.camera
    c = get_world(2, SMALL.replace(randomize=DomainRandomization(textures=1.0)))
    assert np.array_equal(c.static.color, build_world(2, SMALL.replace(randomize=c.cfg.randomize)).static.color)
    assert np.array_equal(c.static.semantic, get_world(2, SMALL).static.semantic)  # same world, recoloured
    assert not np.array_equal(c.static.color, get_world(2, SMALL).static.color)


def test_boxes_semantic_and_instance_masks_agree(dr_frames: dict[int, list[Frame]]) -> None:
    checked = 0
    distractor_px = 0
    for frames in dr_frames.values():
        for f in frames:
            assert f.instance is not None and f.semantic is not None and f.depth is not None
            assert np.array_equal(f.semantic == semantic_id("sky"), np.isinf(f.depth))
            void = f.semantic == IGNORE_INDEX
            distractor_px += int(void.sum())
            assert not f.instance[void].any()  # distractors are no object
            assert f.semantic[~void].max() < NUM_SEMANTIC
            thing = f.instance > 0
            assert np.isin(f.semantic[thing], list(DETECTION_TO_SEMANTIC.values())).all()
            assert not np.isin(f.semantic[~thing], list(DETECTION_TO_SEMANTIC.values())).any()
            assert set(np.unique(f.instance).tolist()) - {0} == set(f.gt.track_ids.tolist())
            for box, tid, cls in zip(f.gt.boxes, f.gt.track_ids, f.gt.class_ids):
                ys, xs = np.nonzero(f.instance == tid)
                assert np.array_equal(box, np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32))
                assert np.all(f.semantic[ys, xs] == DETECTION_TO_SEMANTIC[int(cls)])
                checked += 1
            a, m = f.gt.amodal_boxes, f.gt.boxes
            assert np.all(a[:, :2] <= m[:, :2] + 1.0) and np.all(a[:, 2:] >= m[:, 2:] - 1.0)
    assert checked > 60
    assert distractor_px > 50  # flying distractors are seen


def test_intrinsics_follow_the_randomised_camera(dr_frames: dict[int, list[Frame]]) -> None:
    for seed, frames in dr_frames.items():
        w = get_world(seed, FULL)
        expect = CameraIntrinsics.from_fov(SMALL.width, SMALL.height, w.camera.hfov_deg)
        assert all(f.intrinsics == expect for f in frames)
        assert expect != SMALL.intrinsics
        pose = frames[0].world_T_cam
        assert pose is not None
        fwd, down = pose[:3, 2], pose[:3, 1]  # optical z and y axes in the world
        assert np.degrees(np.arcsin(-fwd[2])) == pytest.approx(w.camera.pitch_deg, abs=1.0)  # + vibration
        assert down[2] < -0.9
        assert pose[2, 3] == pytest.approx(w.camera.height, abs=0.05)


def _camera_points(f: Frame, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Optical-frame points of pixels (ys, xs) from the depth map and the frame's intrinsics."""
    assert f.depth is not None
    k = f.intrinsics
    z = f.depth[ys, xs].astype(np.float64)
    return np.column_stack([(xs + 0.5 - k.cx) / k.fx * z, (ys + 0.5 - k.cy) / k.fy * z, z])


def test_object_pixels_lie_in_their_3d_boxes(dr_frames: dict[int, list[Frame]]) -> None:
    """Every object pixel, back-projected with the frame's intrinsics and depth, lies inside the 3D box
    given by boxes3d (centre, size, yaw about the world vertical, which the pose gives): intrinsics,
    camera pose (height, pitch) and 3D ground truth agree under a randomised camera."""
    checked = 0
    for frames in dr_frames.values():
        for f in frames:
            assert f.instance is not None and f.world_T_cam is not None
            up = f.world_T_cam[:3, :3].T @ np.array([0.0, 0.0, 1.0])  # world up in the optical frame
            for b, tid in zip(f.gt.boxes3d.astype(np.float64), f.gt.track_ids):
                ys, xs = np.nonzero(f.instance == tid)
                p = _camera_points(f, ys, xs) - b[:3]
                ry = b[6]
                fwd = np.array([np.cos(ry), 0.0, -np.sin(ry)])
                fwd[1] = -(up[0] * fwd[0] + up[2] * fwd[2]) / up[1]
                fwd /= np.linalg.norm(fwd)
                left = np.cross(up, fwd)
                tol = 0.03 + 0.002 * b[2]
                assert np.all(np.abs(p @ fwd) <= b[3] / 2 + tol)
                assert np.all(np.abs(p @ left) <= b[4] / 2 + tol)
                assert np.all(np.abs(p @ up) <= b[5] / 2 + tol)
                checked += 1
    assert checked > 60


def test_3d_boxes_are_the_agents_boxes_in_the_world(dr_frames: dict[int, list[Frame]]) -> None:
    seed = 0
    w = get_world(seed, FULL)
    f = dr_frames[seed][1]
    assert f.world_T_cam is not None
    st = agent_states(w, f.stamp, f.gt.track_ids - 1)
    sizes = np.array([w.agents.templates[t - 1].size for t in f.gt.track_ids])
    centre_world = box_corners(st, sizes).mean(1)
    got = f.gt.boxes3d[:, :3].astype(np.float64) @ f.world_T_cam[:3, :3].T + f.world_T_cam[:3, 3]
    assert got == pytest.approx(centre_world, abs=1e-3)
    assert f.gt.boxes3d[:, 3:6] == pytest.approx(sizes, abs=1e-5)


def test_distractors_are_void_for_the_lidar_too() -> None:
    cfg = FULL.replace(lidar=True, lidar_beams=16, lidar_az_step_deg=1.0)
    f = frame_at(get_world(1, cfg), 5)[0]
    assert f.lidar is not None and f.lidar_labels is not None and len(f.lidar) > 1000
    assert np.all((f.lidar_labels < NUM_SEMANTIC) | (f.lidar_labels == IGNORE_INDEX))
    assert np.all((f.lidar[:, 3] >= 0) & (f.lidar[:, 3] <= 1))


def test_sim_cli_writes_the_drives_camera(tmp_path: object) -> None:
    from pathlib import Path

    from perception.sim.cli import write_sequence

    out = Path(str(tmp_path))
    write_sequence(FULL, 2, 1, out, progress=False)
    cam = json.loads((out / "camera.json").read_text())
    w = get_world(2, FULL)
    assert cam["fx"] == pytest.approx(w.intrinsics.fx) and cam["rig"]["pitch_deg"] == pytest.approx(w.camera.pitch_deg)
    assert SimConfig.from_dict(cam["config"]) == FULL


def test_sim_cli_randomize_flag() -> None:
    import argparse

    from perception.sim.cli import add_arguments, config_from_args

    p = argparse.ArgumentParser()
    add_arguments(p)
    assert config_from_args(p.parse_args(["--out", "x", "--randomize"])).randomize == DomainRandomization.full()
    assert not config_from_args(p.parse_args(["--out", "x"])).randomize.enabled


def test_camera_info_in_a_bag_carries_the_randomised_intrinsics(tmp_path: object) -> None:
    from pathlib import Path

    from perception.bag.io import deserialize, read_messages
    from perception.sim.drive import render_drive_bag

    out = Path(str(tmp_path)) / "bag"
    render_drive_bag(out, 2, 2, FULL, progress=False)
    w = get_world(2, FULL)
    infos = [deserialize(raw, t) for _, t, _, raw in read_messages(out, ["/camera/camera_info"])]
    assert len(infos) == 2
    for info in infos:
        assert np.asarray(info.k).reshape(3, 3) == pytest.approx(w.intrinsics.K)
        assert info.k[0] == pytest.approx(0.5 * SMALL.width / np.tan(np.deg2rad(w.camera.hfov_deg) / 2))
        assert abs(info.k[0] - SMALL.intrinsics.fx) > 1.0
